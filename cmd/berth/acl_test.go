package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/scheduler"
)

// startACLServer starts a real single server (not dev: ACLs can be
// bootstrapped) and returns its address.
func startACLServer(t *testing.T) (addr, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	s, err := scheduler.New(scheduler.Config{NodeName: "s1", DataDir: dataDir, BindAddr: "127.0.0.1", BootstrapExpect: 1,
		HeartbeatTTL: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	c, _ := api.NewClient(s.HTTPAddr())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if h, err := c.Health(); err == nil && h.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not elect itself")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + s.HTTPAddr(), dataDir
}

var secretRe = regexp.MustCompile(`Secret ID\s+=\s+([0-9a-f]{64})`)

func secretOf(t *testing.T, out string) string {
	t.Helper()
	m := secretRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no secret in %q", out)
	}
	return m[1]
}

// TestCLIACLToken drives ACLs through the CLI against a real server: the
// token from BERTH_TOKEN, from --token and from berth login --cluster.
func TestCLIACLToken(t *testing.T) {
	addr, dataDir := startACLServer(t)
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	t.Setenv("BERTH_CONFIG", cfgPath)
	t.Setenv(api.EnvToken, "")

	out, err := runCLI(t, addr, "acl", "bootstrap")
	if err != nil {
		t.Fatalf("bootstrap: %v %s", err, out)
	}
	mgmt := secretOf(t, out)
	if !strings.Contains(out, "shown only this once") {
		t.Fatalf("bootstrap output: %s", out)
	}
	if out, err := runCLI(t, addr, "acl", "bootstrap"); err == nil || !strings.Contains(err.Error(), "already bootstrapped") {
		t.Fatalf("second bootstrap: %v %s", err, out)
	}

	// Without a token the CLI is refused, and the refusal names nothing.
	out, err = runCLI(t, addr, "operator", "raft", "list-peers")
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("list-peers without a token: %v %s", err, out)
	}

	t.Setenv(api.EnvToken, mgmt)
	if out, err := runCLI(t, addr, "operator", "raft", "list-peers"); err != nil || !strings.Contains(out, "leader") {
		t.Fatalf("list-peers with BERTH_TOKEN: %v %s", err, out)
	}
	pol := filepath.Join(t.TempDir(), "readers.yaml")
	if err := os.WriteFile(pol, []byte("rules:\n  - namespace: \"*\"\n    capabilities: [read]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, addr, "acl", "policy", "apply", "readers", pol); err != nil {
		t.Fatalf("policy apply: %v %s", err, out)
	}
	out, err = runCLI(t, addr, "acl", "token", "create", "--name", "ro", "--policy", "readers")
	if err != nil {
		t.Fatalf("token create: %v %s", err, out)
	}
	ro := secretOf(t, out)
	out, err = runCLI(t, addr, "acl", "token", "list")
	if err != nil || !strings.Contains(out, "ro") || strings.Contains(out, ro) || strings.Contains(out, mgmt) {
		t.Fatalf("token list: %v %s", err, out)
	}

	// --token beats BERTH_TOKEN: the read-only token may not list tokens.
	if out, err := runCLI(t, addr, "acl", "token", "list", "--token", ro); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("token list with a read token: %v %s", err, out)
	}

	// berth login --cluster stores the token, mode 0600, for that server.
	t.Setenv(api.EnvToken, "")
	root := newRootCmd()
	var buf strings.Builder
	root.SetOut(&buf)
	root.SetErr(&buf)
	root.SetIn(strings.NewReader(ro + "\n"))
	root.SetArgs([]string{"login", "--cluster", "--password-stdin", addr})
	if err := root.Execute(); err != nil || !strings.Contains(buf.String(), "Logged in") {
		t.Fatalf("login --cluster: %v %s", err, buf.String())
	}
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi.Mode(), err)
	}
	if out, err := runCLI(t, addr, "acl", "token", "info", "self"); err != nil || !strings.Contains(out, "ro") {
		t.Fatalf("token info self after login: %v %s", err, out)
	}
	if out, err := runCLI(t, addr, "job", "ls"); err != nil {
		t.Fatalf("job ls after login: %v %s", err, out)
	}
	if out, err := runCLI(t, addr, "logout", "--cluster", addr); err != nil {
		t.Fatalf("logout --cluster: %v %s", err, out)
	}
	if out, err := runCLI(t, addr, "job", "ls"); err == nil {
		t.Fatalf("job ls after logout succeeded: %s", out)
	}

	// Secrets: the server has no key until one is made.
	t.Setenv(api.EnvToken, mgmt)
	root = newRootCmd()
	root.SetOut(&buf)
	root.SetErr(&buf)
	root.SetIn(strings.NewReader("hunter2"))
	root.SetArgs([]string{"secret", "create", "pw"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "secrets key") {
		t.Fatalf("secret create without a key: %v", err)
	}
	if out, err := runCLI(t, addr, "secret", "keygen", filepath.Join(dataDir, "server", "secrets.key")); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	valFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(valFile, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, addr, "secret", "create", "pw", "--from-file", valFile); err != nil {
		t.Fatalf("secret create: %v %s", err, out)
	}
	if out, err := runCLI(t, addr, "secret", "ls"); err != nil || !strings.Contains(out, "pw") || strings.Contains(out, "hunter2") {
		t.Fatalf("secret ls: %v %s", err, out)
	}
	if out, err := runCLI(t, addr, "secret", "rm", "pw"); err != nil {
		t.Fatalf("secret rm: %v %s", err, out)
	}
}
