package testutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is the Debian package docker-registry's server
// (distribution 2.8).
const RegistryBinary = "docker-registry"

// Registry is a real registry server (docker-registry) on loopback,
// stopped when the test ends.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host string
	// Dir is the storage root: blobs live under
	// Dir/docker/registry/v2/blobs/sha256/XX/HEX/data.
	Dir string
	// Username and Password are set for a registry with basic auth.
	Username, Password string
	// CAs trusts the test CA that signed a TLS registry's certificate.
	CAs *x509.CertPool
	// CAFile is the CA certificate in PEM, for tools (skopeo, podman).
	CAFile string
}

// RegistryOptions configure StartRegistry.
type RegistryOptions struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost,
	// signed by a CA made for the test.
	TLS bool
	// Username and Password turn on htpasswd basic auth (which the
	// registry only allows over TLS).
	Username, Password string
}

// BlobPath is where the registry stores the blob with digest "sha256:HEX".
func (r *Registry) BlobPath(digest string) string {
	hex := digest[len("sha256:"):]
	return filepath.Join(r.Dir, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// Transport returns an HTTP transport that trusts the registry's CA.
func (r *Registry) Transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAs != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: r.CAs}
	}
	return t
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.CAs != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// RequireRegistry skips the test unless docker-registry is installed.
func RequireRegistry(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath(RegistryBinary)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install docker-registry); CI installs it", RegistryBinary)
	}
	return p
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartRegistry starts docker-registry on a free loopback port with its
// storage in a temporary directory, and waits until /v2/ answers.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	bin := RequireRegistry(t)
	base := t.TempDir()
	r := &Registry{Dir: filepath.Join(base, "storage"), Username: opts.Username, Password: opts.Password}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var extra bytes.Buffer
	if opts.TLS || opts.Username != "" {
		certFile, keyFile, caFile, pool := writeTestCerts(t, base)
		r.CAs, r.CAFile = pool, caFile
		fmt.Fprintf(&extra, "  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	auth := ""
	if opts.Username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(base, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", htpasswd)
	}
	var proc *exec.Cmd
	var logBuf bytes.Buffer
	for attempt := 0; attempt < 3; attempt++ {
		r.Host = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
%s%s`, r.Dir, r.Host, extra.String(), auth)
		cfgPath := filepath.Join(base, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logBuf.Reset()
		proc = exec.Command(bin, "serve", cfgPath)
		proc.Stdout, proc.Stderr = &logBuf, &logBuf
		if err := proc.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() { proc.Wait(); close(exited) }()
		if r.waitReady(exited) {
			t.Cleanup(func() {
				proc.Process.Kill()
				<-exited
			})
			return r
		}
		proc.Process.Kill()
		<-exited
	}
	t.Fatalf("%s did not come up on %s:\n%s", bin, r.Host, logBuf.String())
	return nil
}

// waitReady polls GET /v2/ until the registry answers (200, or 401 when
// it wants auth), the process exits, or 15 seconds pass.
func (r *Registry) waitReady(exited <-chan struct{}) bool {
	c := &http.Client{Transport: r.Transport(), Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		resp, err := c.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// writeTestCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it, and returns the files and a pool with the CA.
func writeTestCerts(t testing.TB, dir string) (certFile, keyFile, caFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "server.crt")
	keyFile = filepath.Join(dir, "server.key")
	caFile = filepath.Join(dir, "ca.crt")
	write := func(p, typ string, der []byte) {
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, "CERTIFICATE", srvDER)
	write(keyFile, "EC PRIVATE KEY", keyDER)
	write(caFile, "CERTIFICATE", caDER)
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return certFile, keyFile, caFile, pool
}
