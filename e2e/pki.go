package e2e

// A PKI for tests, made with the binary's own `berth tls` commands so they
// are exercised as a user runs them. No build tag: the scheduling
// benchmark uses it too.

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// PKI is a CA and one certificate per role, as files.
type PKI struct {
	Dir   string
	CA    string
	files map[string][2]string // role → cert, key
	// clientTLS is ClientTLS, made once for the harness's clients.
	clientTLS *tls.Config
}

// NewPKI runs `berth tls ca create` and `berth tls cert create` for each
// role in a temporary directory.
func NewPKI(t testing.TB, bin string) *PKI {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		cmd := exec.Command(bin, append([]string{"tls"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("berth tls %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ca", "create")
	p := &PKI{Dir: dir, CA: filepath.Join(dir, "berth-agent-ca.pem"), files: map[string][2]string{}}
	for _, role := range []string{"server", "agent", "cli"} {
		run("cert", "create", "--"+role)
		base := filepath.Join(dir, "global-"+role+"-berth-0")
		p.files[role] = [2]string{base + ".pem", base + "-key.pem"}
	}
	return p
}

// Issue makes one more certificate of role with extra `berth tls cert
// create` flags and returns its certificate and key paths.
func (p *PKI) Issue(t testing.TB, bin, role string, extra ...string) (cert, key string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"tls", "cert", "create", "--" + role}, extra...)...)
	cmd.Dir = p.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("berth tls cert create --%s: %v\n%s", role, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, role+" certificate: "); i >= 0 {
			cert = strings.TrimSpace(line[i+len(role+" certificate: "):])
		}
	}
	if cert == "" {
		t.Fatalf("berth tls cert create printed no certificate path:\n%s", out)
	}
	cert = filepath.Join(p.Dir, cert)
	return cert, strings.TrimSuffix(cert, ".pem") + "-key.pem"
}

// Cert and Key are the files of role's certificate.
func (p *PKI) Cert(role string) string { return p.files[role][0] }

// Key is the key file of role's certificate.
func (p *PKI) Key(role string) string { return p.files[role][1] }

// Args are the TLS flags of a server or agent.
func (p *PKI) Args(role string) []string {
	return []string{"--ca-file", p.CA, "--cert-file", p.Cert(role), "--key-file", p.Key(role)}
}

// CLIEnv is the environment of a CLI that uses the CLI certificate; nil
// for a nil PKI.
func (p *PKI) CLIEnv() []string {
	if p == nil {
		return nil
	}
	return []string{api.EnvCACert + "=" + p.CA, api.EnvClientCert + "=" + p.Cert("cli"), api.EnvClientKey + "=" + p.Key("cli")}
}

// ClientTLS is the tls.Config of an API client with the CLI certificate.
func (p *PKI) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	cfg, err := api.TLSConfig{CACert: p.CA, ClientCert: p.Cert("cli"), ClientKey: p.Key("cli")}.Build()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// copyFile replaces dst with src's content through a rename, so a reader
// never sees half a file.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".new", dst); err != nil {
		t.Fatal(err)
	}
}
