package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/tlsutil"
)

func runBerth(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	err := root.Execute()
	return out.String(), err
}

func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	if out, err := runBerth(t, dir, "tls", "ca", "create", "--days", "30"); err != nil {
		t.Fatalf("ca create: %v\n%s", err, out)
	}
	if _, err := runBerth(t, dir, "tls", "ca", "create"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a second ca create overwrote the CA: %v", err)
	}
	if info, err := os.Stat(filepath.Join(dir, tlsCAKeyFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", info, err)
	}
	tests := []struct {
		name    string
		args    []string
		file    string
		role    tlsutil.Role
		wantErr string
	}{
		{name: "server with extra names", args: []string{"--server", "--additional-ipaddress", "10.0.0.1", "--additional-dnsname", "s1.example"},
			file: "global-server-berth-0.pem", role: tlsutil.RoleServer},
		{name: "second server", args: []string{"--server"}, file: "global-server-berth-1.pem", role: tlsutil.RoleServer},
		{name: "agent", args: []string{"--agent", "--days", "7"}, file: "global-agent-berth-0.pem", role: tlsutil.RoleAgent},
		{name: "cli", args: []string{"--cli"}, file: "global-cli-berth-0.pem", role: tlsutil.RoleCLI},
		{name: "no role", args: nil, wantErr: "exactly one"},
		{name: "two roles", args: []string{"--cli", "--server"}, wantErr: "exactly one"},
		{name: "bad ip", args: []string{"--agent", "--additional-ipaddress", "nope"}, wantErr: "not an IP"},
		{name: "role name smuggled", args: []string{"--agent", "--additional-dnsname", "server.global.berth"}, wantErr: ".berth"},
		{name: "no CA", args: []string{"--cli", "--ca", "missing.pem"}, wantErr: "berth tls ca create"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runBerth(t, dir, append([]string{"tls", "cert", "create"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatalf("%v (output %s)", err, out)
			}
			cert, err := tlsutil.ParseCert(b)
			if err != nil {
				t.Fatal(err)
			}
			if role, err := tlsutil.RoleOf(cert, ""); err != nil || role != tt.role {
				t.Fatalf("role = %s, %v; want %s", role, err, tt.role)
			}
			keyFile := strings.TrimSuffix(tt.file, ".pem") + "-key.pem"
			cfg := tlsutil.Config{CAFile: filepath.Join(dir, tlsCAFile), CertFile: filepath.Join(dir, tt.file),
				KeyFile: filepath.Join(dir, keyFile), Role: tt.role}
			if _, err := tlsutil.NewSource(cfg); err != nil {
				t.Fatalf("the files do not load: %v", err)
			}
		})
	}
}

func TestSafeDefault(t *testing.T) {
	tests := []struct {
		name     string
		bind     string
		insecure bool
		tls      bool
		wantErr  string
		warn     bool
	}{
		{name: "loopback needs nothing", bind: "127.0.0.1"},
		{name: "any address refused", bind: "0.0.0.0", wantErr: "refusing to listen on 0.0.0.0 without TLS"},
		{name: "host address refused", bind: "10.1.2.3", wantErr: "without TLS"},
		{name: "insecure warns", bind: "10.1.2.3", insecure: true, warn: true},
		{name: "insecure with TLS is a mistake", bind: "10.1.2.3", insecure: true, tls: true, wantErr: "drop --insecure"},
		{name: "missing files", bind: "10.1.2.3", tls: true, wantErr: "TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := securityFlags{insecure: tt.insecure}
			if tt.tls {
				f.caFile, f.certFile, f.keyFile = "/nonexistent/ca.pem", "/nonexistent/c.pem", "/nonexistent/k.pem"
			}
			var stderr bytes.Buffer
			src, err := f.source(tlsutil.RoleServer, tt.bind, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || src != nil {
				t.Fatalf("source = %v, %v", src, err)
			}
			if got := strings.Contains(stderr.String(), "WARNING"); got != tt.warn {
				t.Fatalf("warning printed = %v, want %v: %q", got, tt.warn, stderr.String())
			}
		})
	}
}
