//go:build linux

package container

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// testRange is a user namespace range far from any real user's IDs.
var testRange = &IDMap{HostID: 1 << 30, Size: 65536}

func TestUserNamespace(t *testing.T) {
	m := newManager(t)
	host := t.TempDir() // owned by the host's root, mode 0755
	if err := os.Chmod(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "f"), []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testSpec(t, `id -u; id -g; awk '{print $1, $2, $3}' /proc/self/uid_map
		stat -c '%u:%g' /etc/passwd /bin/busybox /
		touch /rootfile && echo rootfs=writable
		chown 1000:1000 /rootfile && stat -c '%u' /rootfile
		cat /data/f
		touch /data/new 2>/dev/null && echo data=written || echo data=refused
		echo x >> /data/f 2>/dev/null && echo append=written || echo append=refused
		stat -c '%u' /data/f
		unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=refused`)
	s.UserNS = testRange
	s.Mounts = []Mount{{Type: "bind", Source: host, Destination: "/data"}}
	out := runOK(t, m, s)
	want := "0\n0\n0 1073741824 65536\n0:0\n0:0\n0:0\nrootfs=writable\n1000\nhost file\ndata=refused\nappend=refused\n65534\nunshare=refused\n"
	if out != want {
		t.Errorf("in a user namespace:\n%s\nwant\n%s", out, want)
	}
	// On the host, what the container's root wrote belongs to the
	// range, and the bind mount is untouched.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(m.dir(s.ID), upperDir, "rootfile"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != testRange.HostID+1000 {
		t.Errorf("the container's file is host uid %d, want %d", st.Uid, testRange.HostID+1000)
	}
	if _, err := os.Stat(filepath.Join(host, "new")); err == nil {
		t.Error("the container wrote into a host-owned bind mount")
	}
	if data, _ := os.ReadFile(filepath.Join(host, "f")); string(data) != "host file\n" {
		t.Errorf("host file now %q", data)
	}
}

func TestUserNamespaceExec(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "sleep 30")
	s.UserNS = testRange
	start(t, m, s)
	var out, errOut strings.Builder
	code, err := m.Exec(context.Background(), s.ID, &Process{Args: []string{"sh", "-c", "id -u; awk '{print $2}' /proc/self/uid_map; touch /x && echo ok; touch /proc/sys/x 2>/dev/null || echo sys=refused"}}, nil, &out, &errOut)
	if err != nil || code != 0 {
		t.Fatalf("exec: %d %v %s", code, err, errOut.String())
	}
	if want := "0\n1073741824\nok\nsys=refused\n"; out.String() != want {
		t.Errorf("exec in a user namespace: %q, want %q", out.String(), want)
	}
}

func TestUserNamespaceValidation(t *testing.T) {
	for _, u := range []*IDMap{{HostID: 0, Size: 65536}, {HostID: 1000, Size: 0}, {HostID: 1<<32 - 10, Size: 65536}} {
		s := testSpec(t, "true")
		s.UserNS = u
		if err := s.Validate(); err == nil {
			t.Errorf("range %+v accepted", u)
		}
	}
	s := testSpec(t, "true")
	s.UserNS = testRange
	s.Privileged = true
	if err := s.Validate(); err == nil {
		t.Error("privileged container in a user namespace accepted")
	}
}
