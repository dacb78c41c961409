//go:build linux

package container

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestSpecOptions(t *testing.T) {
	m := newManager(t)
	// The host's interfaces change while other packages' tests run, so
	// host networking is checked by namespace identity, not by listing.
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	nsName := fmt.Sprintf("berth-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", nsName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsName).Run() })
	if out, err := exec.Command("ip", "-n", nsName, "link", "add", "berthv0", "type", "veth", "peer", "name", "berthv1").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v %s", err, out)
	}

	tests := []struct {
		name   string
		script string
		modify func(*Spec)
		want   string
	}{
		{"read-only rootfs", "touch /x 2>/dev/null && echo rw || echo ro", func(s *Spec) { s.ReadonlyRootfs = true }, "ro"},
		{"writable rootfs by default", "touch /x && echo rw", nil, "rw"},
		{"no_new_privs opt-in", "grep NoNewPrivs /proc/self/status | tr -d '\\t '", func(s *Spec) { s.NoNewPrivileges = true }, "NoNewPrivs:1"},
		{"no_new_privs off by default", "grep NoNewPrivs /proc/self/status | tr -d '\\t '", nil, "NoNewPrivs:0"},
		{"extra device", "ls -l /dev/mynull | cut -c1; echo x > /dev/mynull && echo written", func(s *Spec) {
			s.Devices = []Device{{Path: "/dev/mynull", Type: 'c', Major: 1, Minor: 3}}
		}, "c\nwritten"},
		{"extra device outside docker's allowlist", ": < /dev/loop-control && echo opened", func(s *Spec) {
			s.Devices = []Device{{Path: "/dev/loop-control", Type: 'c', Major: 10, Minor: 237, FileMode: 0o600}}
		}, "opened"},
		{"device cgroup denies what is not listed", "mknod /dev/lc c 10 237 && (: < /dev/lc) 2>/dev/null && echo opened || echo denied", nil, "denied"},
		{"network none has only lo, up", "ls /sys/class/net | tr '\\n' ' '; cat /sys/class/net/lo/flags", nil, "lo 0x9"},
		{"host network", "readlink /proc/self/ns/net", func(s *Spec) { s.Network = "host" }, hostNS},
		{"own network namespace by default", "test \"$(readlink /proc/self/ns/net)\" != '" + hostNS + "' && echo own", nil, "own"},
		{"network namespace path", "ls /sys/class/net | tr '\\n' ' '", func(s *Spec) { s.Network = "/run/netns/" + nsName }, "berthv0 berthv1 lo"},
		{"no signal ignored", "grep SigIgn /proc/self/status | tr -d '\t '", nil, "SigIgn:0000000000000000"},
		{"tmpfs /dev has only the standard nodes", "ls /dev | tr '\\n' ' '", nil, "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec(t, tc.script)
			if tc.modify != nil {
				tc.modify(s)
			}
			if got := strings.TrimSpace(runOK(t, m, s)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
