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
