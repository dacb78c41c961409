package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/image"
)

// TestTaskPullsMissingImage runs a task whose image is only in a
// registry: the engine pulls it.
func TestTaskPullsMissingImage(t *testing.T) {
	src := newEngine(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	t.Setenv(image.EnvConfig, filepath.Join(t.TempDir(), "config.json"))
	t.Setenv(image.EnvInsecureRegistries, reg.Host)
	ref := reg.Host + "/lib/busybox:1"
	if err := src.Images.Tag("busybox", ref); err != nil {
		t.Fatal(err)
	}
	if err := src.Images.Push(context.Background(), ref, image.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	e, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	code, out := runTask(t, e, strings.Repeat("e5", 32), &api.Task{Name: "p", Image: ref, Command: []string{"echo", "pulled"}})
	if code != 0 || !strings.Contains(out, "pulled") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	_, err = e.Create(context.Background(), &TaskRequest{ID: strings.Repeat("f6", 32), Task: &api.Task{Name: "x", Image: reg.Host + "/lib/busybox:nope"}})
	if !errors.Is(err, ErrImageNotFound) || !errors.Is(err, image.ErrUnknownManifest) {
		t.Fatalf("missing tag: %v", err)
	}
}

// TestTaskPullsWithItsAuth runs a task whose image is only in a registry
// that wants a login (TLS and htpasswd): the task's own credentials pull
// it; without them, or with wrong ones, the task fails clearly.
func TestTaskPullsWithItsAuth(t *testing.T) {
	src := newEngine(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true, Username: "berth", Password: "task-pass"})
	// The node has no login of its own: empty berth and docker configs.
	t.Setenv(image.EnvConfig, filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv(image.EnvInsecureRegistries, reg.Host) // the test CA is not trusted
	ref := reg.Host + "/private/busybox:1"
	if err := src.Images.Tag("busybox", ref); err != nil {
		t.Fatal(err)
	}
	push := image.PushOptions{RemoteOptions: image.RemoteOptions{Insecure: true, Auth: &image.Auth{Username: reg.Username, Password: reg.Password}}}
	if err := src.Images.Push(context.Background(), ref, push); err != nil {
		t.Fatal(err)
	}
	e, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		auth *api.RegistryAuth
	}{
		{"no auth", nil},
		{"wrong password", &api.RegistryAuth{Username: reg.Username, Password: "not-it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Create(context.Background(), &TaskRequest{ID: strings.Repeat("a7", 32), Task: &api.Task{Name: "x", Image: ref, Auth: tc.auth}})
			if !errors.Is(err, ErrImageNotFound) || !errors.Is(err, image.ErrUnauthorized) {
				t.Fatalf("pull without valid credentials: %v, want ErrImageNotFound and ErrUnauthorized", err)
			}
			if tc.auth != nil && strings.Contains(err.Error(), tc.auth.Password) {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}

	code, out := runTask(t, e, strings.Repeat("b8", 32), &api.Task{Name: "p", Image: ref, Command: []string{"echo", "pulled with auth"},
		Auth: &api.RegistryAuth{Username: reg.Username, Password: reg.Password}})
	if code != 0 || !strings.Contains(out, "pulled with auth") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}
