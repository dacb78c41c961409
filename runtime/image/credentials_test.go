//go:build linux

package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

func TestClientConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// Keys berth does not know survive a rewrite.
	if err := os.WriteFile(path, []byte(`{"addr": "http://10.0.0.1:9470"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogin("https://index.docker.io/v1/", Auth{Username: "hub", Password: "pw:with:colons"})
	c.SetLogin("reg.example:5000", Auth{Username: "u", Password: "p"})
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v %v, want 0600", fi.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"addr"`) || strings.Contains(string(b), "pw:with:colons") {
		t.Fatalf("config: %s", b)
	}
	c, err = LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, registry, user, pass string
		found                      bool
	}{
		{name: "hub by short name", registry: "docker.io", user: "hub", pass: "pw:with:colons", found: true},
		{name: "hub by index host", registry: "index.docker.io", user: "hub", pass: "pw:with:colons", found: true},
		{name: "host and port", registry: "reg.example:5000", user: "u", pass: "p", found: true},
		{name: "other", registry: "ghcr.io"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, ok := c.Login(tc.registry)
			if ok != tc.found || (ok && (a.Username != tc.user || a.Password != tc.pass)) {
				t.Fatalf("Login(%s) = %v %v", tc.registry, a, ok)
			}
		})
	}
	// The docker config is the fallback keychain.
	dockerDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dockerDir)
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"),
		[]byte(`{"auths":{"ghcr.io":{"auth":"ZG9jazpzZWNyZXQ="}}}`), 0o600); err != nil { // dock:secret
		t.Fatal(err)
	}
	a, err := ResolveAuth(c.Keychain(), "ghcr.io/org/app:v1")
	if err != nil || a == nil || a.Username != "dock" || a.Password != "secret" {
		t.Fatalf("docker config fallback: %v %v", a, err)
	}
	a, err = ResolveAuth(c.Keychain(), "reg.example:5000/app")
	if err != nil || a == nil || a.Username != "u" {
		t.Fatalf("berth config first: %v %v", a, err)
	}
	if a, err := ResolveAuth(c.Keychain(), "quay.io/x/y"); err != nil || a != nil {
		t.Fatalf("no credential: %v %v", a, err)
	}
	if !c.RemoveLogin("registry-1.docker.io") {
		t.Fatal("logout of Docker Hub found nothing")
	}
	if s := (&Auth{Username: "u", Password: "topsecret"}).String(); strings.Contains(s, "topsecret") {
		t.Fatalf("Auth.String shows the password: %s", s)
	}
}

func TestCheckLoginAndKeychainPull(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true, Username: "berth", Password: "s3cret"})
	ctx := context.Background()
	opts := RemoteOptions{Transport: reg.Transport()}
	if err := CheckLogin(ctx, reg.Host, Auth{Username: "berth", Password: "wrong"}, opts); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("bad login: %v", err)
	}
	if err := CheckLogin(ctx, reg.Host, Auth{Username: "berth", Password: "s3cret"}, opts); err != nil {
		t.Fatalf("good login: %v", err)
	}
	c, err := LoadClientConfig(filepath.Join(t.TempDir(), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogin(reg.Host, Auth{Username: "berth", Password: "s3cret"})
	s := newStore(t)
	ref := reg.Host + "/kc/app:v1"
	if _, err := s.Add(ctx, multiLayerImage(t, "kc"), ref); err != nil {
		t.Fatal(err)
	}
	opts.Keychain = c.Keychain()
	if err := s.Push(ctx, ref, PushOptions{RemoteOptions: opts}); err != nil {
		t.Fatal(err)
	}
	if _, err := newStore(t).Pull(ctx, ref, PullOptions{RemoteOptions: opts}); err != nil {
		t.Fatal(err)
	}
}
