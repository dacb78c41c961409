package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
)

func runCLIStdin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestLoginLogout logs in to a real registry with htpasswd over TLS.
func TestLoginLogout(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true, Username: "dev", Password: "letmein"})
	cfg := filepath.Join(t.TempDir(), "berth", "config.json")
	t.Setenv("BERTH_CONFIG", cfg)
	t.Setenv("DOCKER_CONFIG", t.TempDir())

	out, err := runCLIStdin(t, "wrong\n", "login", "--insecure", "-u", "dev", "--password-stdin", reg.Host)
	if err == nil || !strings.Contains(err.Error(), "unauthorized: check the user name and password") {
		t.Fatalf("wrong password: %v\n%s", err, out)
	}
	if _, err := os.Stat(cfg); !os.IsNotExist(err) {
		t.Fatalf("a failed login wrote the config: %v", err)
	}
	if _, err := runCLIStdin(t, "", "login", "-u", "dev", reg.Host); err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Fatalf("login without a password: %v", err)
	}
	out, err = runCLIStdin(t, "letmein\n", "login", "--insecure", "-u", "dev", "--password-stdin", reg.Host)
	if err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	fi, err := os.Stat(cfg)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config after login: %v %v", fi, err)
	}
	b, _ := os.ReadFile(cfg)
	if !strings.Contains(string(b), reg.Host) || strings.Contains(string(b), "letmein") {
		t.Fatalf("config: %s", b)
	}
	auth, _, err := registryAccess(reg.Host+"/app:v1", false)
	if err != nil || auth == nil || auth.Username != "dev" || auth.Password != "letmein" {
		t.Fatalf("credential sent with a pull: %v %v", auth, err)
	}
	if s := auth.String(); strings.Contains(s, "letmein") {
		t.Fatalf("RegistryAuth.String shows the password: %s", s)
	}
	out, err = runCLIStdin(t, "", "logout", reg.Host)
	if err != nil || !strings.Contains(out, "Removing login credentials for "+reg.Host) {
		t.Fatalf("logout: %v\n%s", err, out)
	}
	if auth, _, _ := registryAccess(reg.Host+"/app:v1", false); auth != nil {
		t.Fatalf("credential left after logout: %v", auth)
	}
}

func TestProgressViewPlain(t *testing.T) {
	var buf bytes.Buffer
	v := newProgressView(&buf, false, "n1: ")
	for _, p := range []api.ImageProgress{
		{Layer: "sha256:aaaaaaaaaaaaaaaa", Status: "Pulling fs layer", Total: 10},
		{Layer: "sha256:aaaaaaaaaaaaaaaa", Status: "Downloading", Current: 3, Total: 10},
		{Layer: "sha256:aaaaaaaaaaaaaaaa", Status: "Downloading", Current: 6, Total: 10},
		{Layer: "sha256:bbbbbbbbbbbbbbbb", Status: "Already exists"},
		{Layer: "sha256:aaaaaaaaaaaaaaaa", Status: "Done", Current: 10, Total: 10},
	} {
		v.update(p)
	}
	v.finish()
	want := "n1: aaaaaaaaaaaa: Pulling fs layer\nn1: aaaaaaaaaaaa: Downloading\nn1: bbbbbbbbbbbb: Already exists\nn1: aaaaaaaaaaaa: Pull complete\n"
	if buf.String() != want {
		t.Fatalf("plain progress:\n%s\nwant:\n%s", buf.String(), want)
	}
	if v.upToDate() {
		t.Fatal("a pull that downloaded a layer is reported up to date")
	}
	if got := progressBar(5, 10); !strings.Contains(got, "[====================>") || !strings.Contains(got, "5B/10B") {
		t.Fatalf("progress bar: %q", got)
	}
}
