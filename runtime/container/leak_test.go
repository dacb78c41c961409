//go:build linux

package container

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// snapshot is what a container could leak on the host.
type snapshot struct {
	mounts   int // mounts of this test's containers
	cgroups  []string
	children []string
}

func takeSnapshot(t *testing.T, m *Manager) snapshot {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var s snapshot
	// Others share this host; count the mounts that name this test's
	// containers or layer (mount point, source or options).
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, m.root) || strings.Contains(l, layerDir) {
			s.mounts++
		}
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth/*")
	more, _ := filepath.Glob("/sys/fs/cgroup/berth/*")
	for _, d := range append(dirs, more...) {
		if st, err := os.Stat(d); err == nil && st.IsDir() && strings.HasPrefix(filepath.Base(d), "t"+strconv.Itoa(os.Getpid())+"-") {
			s.cgroups = append(s.cgroups, d)
		}
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		s.children = append(s.children, strings.Fields(string(b))...)
	}
	return s
}

func TestNoLeaksOver200Cycles(t *testing.T) {
	if testing.Short() {
		t.Skip("200 container cycles; skipped with -short")
	}
	m := newManager(t)
	layer := busyboxLayer(t)
	before := takeSnapshot(t, m)
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		id := testID(t)
		spec := &Spec{ID: id, Layers: []string{layer}, Args: []string{"/bin/true"}}
		if i%10 == 0 {
			// Some with a bind mount and a tmpfs, some killed while running.
			spec.Args = []string{"sleep", "10"}
			spec.Mounts = []Mount{{Source: t.TempDir(), Destination: "/data"}, {Destination: "/scratch", Type: "tmpfs"}}
		}
		if _, err := m.Create(spec); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(id); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if i == 0 && len(takeSnapshot(t, m).cgroups) == 0 {
				t.Fatal("a running container's cgroup is not where this test looks")
			}
			if err := m.Remove(id, true); err != nil {
				t.Fatal(err)
			}
			continue
		}
		ex, err := m.Wait(ctx, id)
		if err != nil || ex.Code != 0 {
			t.Fatalf("cycle %d: %+v %v", i, ex, err)
		}
		if err := m.Remove(id, false); err != nil {
			t.Fatal(err)
		}
	}
	after := takeSnapshot(t, m)
	if after.mounts != before.mounts {
		t.Errorf("host mounts: %d before, %d after", before.mounts, after.mounts)
	}
	if len(after.cgroups) > 0 {
		t.Errorf("cgroups left: %v", after.cgroups)
	}
	if len(after.children) > len(before.children) {
		t.Errorf("child processes left: %v (before %v)", after.children, before.children)
	}
	ents, err := os.ReadDir(m.root)
	if err != nil || len(ents) != 1 || ents[0].Name() != rootfsDir {
		t.Errorf("container directories left: %v %v (want only the shared mount point %s)", ents, err, rootfsDir)
	}
	if ents, _ := os.ReadDir(filepath.Join(m.root, rootfsDir)); len(ents) != 0 {
		t.Errorf("the shared mount point %s is not empty on the host: %v", rootfsDir, ents)
	}
	if list, _ := m.List(); len(list) != 0 {
		t.Errorf("List after removing everything: %d containers", len(list))
	}
}
