package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/jobspec"
	"github.com/berth-dev/berth/runtime/image"
)

// loginConfig points BERTH_CONFIG at a fresh config with one login, and
// DOCKER_CONFIG at an empty directory so the host's logins do not count.
func loginConfig(t *testing.T, registry string, a image.Auth) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	t.Setenv(image.EnvConfig, path)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	cfg, err := image.LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetLogin(registry, a)
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
}

func TestBuildRunJobAttachesLogin(t *testing.T) {
	loginConfig(t, "registry.example:5000", image.Auth{Username: "alice", Password: "pa55"})
	never := func(string) bool { return false }
	for _, tt := range []struct {
		name   string
		image  string
		noAuth bool
		want   *api.RegistryAuth
	}{
		{"logged-in registry", "registry.example:5000/team/app:1", false, &api.RegistryAuth{Username: "alice", Password: "pa55"}},
		{"--no-auth", "registry.example:5000/team/app:1", true, nil},
		{"other registry", "other.example/team/app:1", false, nil},
		{"docker hub", "busybox", false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j, err := buildRunJob(&runFlags{restart: "no", noAuth: tt.noAuth}, tt.image, nil, never)
			if err != nil {
				t.Fatal(err)
			}
			got := j.Groups[0].Tasks[0].Auth
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("auth = %v (%+v), want %v", got, deref(got), tt.want)
			}
		})
	}
}

func deref(a *api.RegistryAuth) api.RegistryAuth {
	if a == nil {
		return api.RegistryAuth{}
	}
	return *a
}

// TestJobSpecAuth: a job file's own auth (password or identity token) is
// kept; a task without one gets the user's login for its registry.
func TestJobSpecAuth(t *testing.T) {
	loginConfig(t, "registry.example:5000", image.Auth{Username: "alice", Password: "pa55"})
	spec := `
name: web
groups:
  - name: g
    tasks:
      - name: own
        image: registry.example:5000/team/app:1
        auth: {username: bob, password: b0b}
      - name: token
        image: registry.example:5000/team/app:1
        auth: {identity_token: tok}
      - name: login
        image: registry.example:5000/team/other:2
      - name: public
        image: busybox
`
	job, err := jobspec.Parse([]byte(spec), ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := attachLoginAuth(job); err != nil {
		t.Fatal(err)
	}
	want := map[string]api.RegistryAuth{
		"own":    {Username: "bob", Password: "b0b"},
		"token":  {IdentityToken: "tok"},
		"login":  {Username: "alice", Password: "pa55"},
		"public": {},
	}
	for _, task := range job.Groups[0].Tasks {
		if got := deref(task.Auth); got != want[task.Name] {
			t.Errorf("task %s: auth %+v, want %+v", task.Name, got, want[task.Name])
		}
	}
	if s := job.Groups[0].Tasks[0].Auth.String(); strings.Contains(s, "b0b") {
		t.Errorf("String shows the password: %s", s)
	}
}
