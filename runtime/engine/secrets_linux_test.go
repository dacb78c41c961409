package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

func isTmpfsMount(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 8 && f[4] == dir && strings.Contains(line, " - tmpfs ") {
			return true
		}
	}
	return false
}

// TestSecretMounts writes secrets to a real tmpfs, mode 0400, and removes
// it with the container.
func TestSecretMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	e := &Engine{metaDir: filepath.Join(dir, "engine")}
	mounts, err := e.secretMounts("c1", []api.TaskSecret{
		{Name: "pw", Value: []byte("hunter2")},
		{Name: "tls", Target: "/etc/tls/key", Value: []byte("KEY")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.removeSecrets("c1") })
	sdir := e.secretDir("c1")
	if !isTmpfsMount(t, sdir) {
		t.Fatalf("%s is not a tmpfs mount", sdir)
	}
	want := map[string]string{"/run/secrets/pw": "hunter2", "/etc/tls/key": "KEY"}
	if len(mounts) != 2 {
		t.Fatalf("mounts = %+v", mounts)
	}
	for _, m := range mounts {
		if m.Type != "bind" || !m.ReadOnly || filepath.Dir(m.Source) != sdir {
			t.Fatalf("mount %+v", m)
		}
		b, err := os.ReadFile(m.Source)
		if err != nil || string(b) != want[m.Destination] {
			t.Fatalf("%s holds %q, %v", m.Destination, b, err)
		}
		fi, _ := os.Stat(m.Source)
		if fi.Mode().Perm() != 0o400 {
			t.Fatalf("%s mode %v, want 0400", m.Source, fi.Mode())
		}
	}
	e.removeSecrets("c1")
	if isTmpfsMount(t, sdir) {
		t.Fatal("the tmpfs outlived removeSecrets")
	}
	if _, err := os.Stat(sdir); !os.IsNotExist(err) {
		t.Fatalf("secret dir left: %v", err)
	}

	for _, tc := range []struct {
		name string
		s    api.TaskSecret
		err  error
	}{
		{"no value", api.TaskSecret{Name: "gone"}, ErrSecretValue},
		{"relative target", api.TaskSecret{Name: "x", Target: "etc/x", Value: []byte("v")}, nil},
		{"unclean target", api.TaskSecret{Name: "x", Target: "/run/../etc/shadow", Value: []byte("v")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.secretMounts("c2", []api.TaskSecret{tc.s})
			if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("err = %v", err)
			}
			if isTmpfsMount(t, e.secretDir("c2")) {
				t.Fatal("a refused secret left a tmpfs")
			}
		})
	}
}
