package engine

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
)

func TestParseTmpfs(t *testing.T) {
	tests := []struct {
		name, in string
		want     container.Mount
		err      bool
	}{
		{"bare", "/run", container.Mount{Type: "tmpfs", Destination: "/run"}, false},
		{"options", "/tmp:size=64m,mode=1777,noexec", container.Mount{Type: "tmpfs", Destination: "/tmp", Options: []string{"size=64m", "mode=1777"}}, false},
		{"read-only", "/x:ro", container.Mount{Type: "tmpfs", Destination: "/x", ReadOnly: true}, false},
		{"relative", "run", container.Mount{}, true},
		{"root", "/", container.Mount{}, true},
		{"dotdot", "/a/../b", container.Mount{}, true},
		{"unknown option", "/run:bogus", container.Mount{}, true},
		{"size without value", "/run:size", container.Mount{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTmpfs(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err != nil {
				if !errors.Is(err, ErrBadTmpfs) {
					t.Errorf("error %v is not ErrBadTmpfs", err)
				}
				return
			}
			if got.Type != tc.want.Type || got.Destination != tc.want.Destination || got.ReadOnly != tc.want.ReadOnly || strings.Join(got.Options, ",") != strings.Join(tc.want.Options, ",") {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCheckTaskSecurity(t *testing.T) {
	tests := []struct {
		name string
		task api.Task
		ok   bool
	}{
		{"defaults", api.Task{}, true},
		{"unconfined", api.Task{Seccomp: "unconfined"}, true},
		{"profile", api.Task{Seccomp: `{"defaultAction":"SCMP_ACT_ALLOW"}`}, true},
		{"bad profile", api.Task{Seccomp: `{"defaultAction":"SCMP_ACT_MAYBE"}`}, false},
		{"not json", api.Task{Seccomp: `/etc/profile.json`}, false},
		{"userns private", api.Task{Userns: "private"}, true},
		{"userns other", api.Task{Userns: "keep-id"}, false},
		{"bad tmpfs", api.Task{Tmpfs: []string{"tmp"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckTaskSecurity(&tc.task); (err == nil) != tc.ok {
				t.Errorf("CheckTaskSecurity: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestApplySecurity(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	req := &TaskRequest{ID: "c1", AllocID: "a1", Task: &api.Task{
		Name: "web", Image: "busybox", Privileged: true, ReadOnly: true, NoNewPrivileges: true,
		Seccomp: "unconfined", Tmpfs: []string{"/run:size=1m"},
	}}
	var spec container.Spec
	if err := applySecurity(req, &spec); err != nil {
		t.Fatal(err)
	}
	if !spec.Privileged || !spec.ReadonlyRootfs || !spec.NoNewPrivileges || spec.Seccomp != "unconfined" || len(spec.Mounts) != 1 || spec.Mounts[0].Destination != "/run" {
		t.Errorf("spec %+v does not carry the task's options", spec)
	}
	if log := buf.String(); !strings.Contains(log, "privileged") || !strings.Contains(log, "alloc=a1") || !strings.Contains(log, "level=WARN") {
		t.Errorf("privileged start not logged: %q", log)
	}
	buf.Reset()
	req.Task.Privileged = false
	if err := applySecurity(req, &container.Spec{}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("unprivileged start logged %q", buf.String())
	}
}

func TestUserNSRange(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, uid, gid string
		want           *container.IDMap
	}{
		{"none", "", "", &DefaultUserNSRange},
		{"both", "alice:100000:65536\nberth:231072:65536\n", "berth:231072:65536\n", &container.IDMap{HostID: 231072, Size: 65536}},
		{"differ", "berth:231072:65536\n", "berth:300000:65536\n", nil},
		{"only one", "berth:231072:65536\n", "alice:1:2\n", nil},
		{"bad", "berth:x:65536\n", "berth:x:65536\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, g := dir+"/missing-uid", dir+"/missing-gid"
			if tc.uid != "" {
				u = write(tc.name+".uid", tc.uid)
			}
			if tc.gid != "" {
				g = write(tc.name+".gid", tc.gid)
			}
			got, err := UserNSRange(u, g)
			if tc.want == nil {
				if err == nil {
					t.Errorf("got %+v, want an error", got)
				}
				return
			}
			if err != nil || *got != *tc.want {
				t.Errorf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestApplySecurityUserns(t *testing.T) {
	var spec container.Spec
	if err := applySecurity(&TaskRequest{ID: "c", Task: &api.Task{Userns: "private"}}, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.UserNS == nil || spec.UserNS.Size == 0 {
		t.Errorf("userns private: spec.UserNS %+v", spec.UserNS)
	}
	spec = container.Spec{}
	if err := applySecurity(&TaskRequest{ID: "c", Task: &api.Task{Userns: "host"}}, &spec); err != nil || spec.UserNS != nil {
		t.Errorf("userns host: %+v %v", spec.UserNS, err)
	}
}
