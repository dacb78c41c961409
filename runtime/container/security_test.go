//go:build linux

package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	helperOnce sync.Once
	helperPath string
	helperErr  error
)

// syscallHelper builds testdata/syscalls.c as a static binary, to be bound
// into busybox containers (which have no C library).
func syscallHelper(t *testing.T) string {
	t.Helper()
	helperOnce.Do(func() {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			helperErr = err
			return
		}
		dir, err := os.MkdirTemp("", "berth-syscalls-")
		if err != nil {
			helperErr = err
			return
		}
		helperPath = filepath.Join(dir, "syscalls")
		if out, err := exec.Command(gcc, "-static", "-O2", "-o", helperPath, "testdata/syscalls.c").CombinedOutput(); err != nil {
			helperErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if helperErr != nil {
		t.Skipf("cannot build the static syscall helper (needs gcc and libc.a): %v", helperErr)
	}
	return helperPath
}

// withHelper makes s run the syscall helper on the given calls.
func withHelper(t *testing.T, s *Spec, calls ...string) *Spec {
	s.Mounts = append(s.Mounts, Mount{Type: "bind", Source: syscallHelper(t), Destination: "/syscalls", ReadOnly: true})
	s.Args = append([]string{"/syscalls"}, calls...)
	return s
}

func TestSeccompProfiles(t *testing.T) {
	m := newManager(t)
	calls := []string{"keyctl", "unshare-user", "unshare-mount", "mount", "personality-4", "clone3", "getpid"}
	eperm, enosys := "errno=1", "errno=38"
	tests := []struct {
		name   string
		modify func(*Spec)
		want   map[string]string // call → result
	}{
		{"default profile", nil, map[string]string{
			"keyctl": eperm, "unshare-user": eperm, "unshare-mount": eperm, "mount": eperm,
			"personality-4": eperm, "clone3": enosys, "getpid": "ok",
		}},
		{"default profile with no_new_privs", func(s *Spec) { s.NoNewPrivileges = true }, map[string]string{
			"keyctl": eperm, "unshare-user": eperm, "personality-4": eperm, "getpid": "ok",
		}},
		{"unconfined", func(s *Spec) { s.Seccomp = SeccompUnconfined }, map[string]string{
			// No filter: the kernel decides. A user namespace needs no
			// capability, and inside it the mount namespace and the
			// mount that follow are allowed.
			"unshare-user": "ok", "unshare-mount": "ok", "mount": "ok", "keyctl": "ok", "personality-4": "ok", "clone3": "errno=22", "getpid": "ok",
		}},
		{"CAP_SYS_ADMIN opens the rules that need it", func(s *Spec) { s.CapAdd = []string{"SYS_ADMIN"} }, map[string]string{
			"unshare-mount": "ok", "mount": "ok", "keyctl": eperm, "clone3": "errno=22",
		}},
		{"custom profile", func(s *Spec) {
			s.Seccomp = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}`
		}, map[string]string{"getpid": "errno=13", "unshare-user": "ok"}},
		{"privileged has no filter", func(s *Spec) { s.Privileged = true }, map[string]string{
			"unshare-user": "ok", "unshare-mount": "ok", "keyctl": "ok",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := withHelper(t, testSpec(t, ""), calls...)
			if tc.modify != nil {
				tc.modify(s)
			}
			out := runOK(t, m, s)
			got := map[string]string{}
			for _, l := range lines(out) {
				if k, v, ok := strings.Cut(l, " "); ok {
					got[k] = v
				}
			}
			for call, want := range tc.want {
				if got[call] != want {
					t.Errorf("%s: %q, want %q (all: %v)", call, got[call], want, got)
				}
			}
		})
	}
}

func TestSeccompBusyboxUnshare(t *testing.T) {
	m := newManager(t)
	r := run(t, m, testSpec(t, "unshare -U true"))
	if r.exit.Code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("unshare -U in a default container: exit %d, stderr %q; want EPERM", r.exit.Code, r.stderr)
	}
	s := testSpec(t, "unshare -U true && echo unshared")
	s.Seccomp = SeccompUnconfined
	if out := runOK(t, m, s); strings.TrimSpace(out) != "unshared" {
		t.Errorf("unconfined: %q", out)
	}
}

func TestSeccompAppliesToExec(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "sleep 30")
	s.Mounts = []Mount{{Type: "bind", Source: syscallHelper(t), Destination: "/syscalls", ReadOnly: true}}
	start(t, m, s)
	var out, errOut strings.Builder
	code, err := m.Exec(context.Background(), s.ID, &Process{Args: []string{"/syscalls", "keyctl", "unshare-user", "getpid"}}, nil, &out, &errOut)
	if err != nil || code != 0 {
		t.Fatalf("exec: %d %v %s", code, err, errOut.String())
	}
	if want := "keyctl errno=1\nunshare-user errno=1\ngetpid ok\n"; out.String() != want {
		t.Errorf("exec output %q, want %q", out.String(), want)
	}
	// Seccomp mode 2 (filter) shows in /proc/self/status.
	out.Reset()
	if _, err := m.Exec(context.Background(), s.ID, &Process{Args: []string{"grep", "^Seccomp:", "/proc/self/status"}}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(out.String()), " "); got != "Seccomp: 2" {
		t.Errorf("exec'd process: %q, want Seccomp: 2", got)
	}
}

func TestCapDropAllStopsChown(t *testing.T) {
	m := newManager(t)
	script := "touch /tmp/f && chown 1:1 /tmp/f 2>&1 && echo chowned; grep CapEff /proc/self/status"
	s := testSpec(t, script)
	s.CapDrop = []string{"ALL"}
	out := runOK(t, m, s)
	if strings.Contains(out, "chowned") || !strings.Contains(out, "Operation not permitted") || !strings.Contains(out, "0000000000000000") {
		t.Errorf("--cap-drop ALL: %q, want chown refused and no capabilities", out)
	}
	if out := runOK(t, m, testSpec(t, script)); !strings.Contains(out, "chowned") {
		t.Errorf("default capabilities: %q, want chown to work", out)
	}
}

func TestMaskedPaths(t *testing.T) {
	m := newManager(t)
	// An image that plants /dev/null as a symlink to a file the mask
	// would otherwise expose (the CVE-2025-31133 class).
	evil := t.TempDir()
	if err := os.MkdirAll(filepath.Join(evil, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/sys/kernel/core_pattern", filepath.Join(evil, "dev", "null")); err != nil {
		t.Fatal(err)
	}
	// Check every masked path this kernel has (some, like /proc/kcore,
	// exist only with some kernel options).
	var script, want strings.Builder
	for _, p := range maskedPaths {
		st, err := os.Stat(p)
		switch {
		case err != nil:
			t.Logf("%s: not on this kernel", p)
			continue
		case st.IsDir():
			fmt.Fprintf(&script, "echo %s $(ls -A %s | wc -l) $(stat -f -c %%T %s)\n", p, p, p)
			fmt.Fprintf(&want, "%s 0 tmpfs\n", p)
		default:
			fmt.Fprintf(&script, "echo %s $(stat -c '%%F %%t:%%T' %s) $(head -c 16 %s | wc -c)\n", p, p, p)
			fmt.Fprintf(&want, "%s character special file 1:3 0\n", p)
		}
	}
	script.WriteString(`echo 1 > /proc/sys/kernel/core_pattern 2>/dev/null && echo core_pattern=written || echo core_pattern=refused
		grep -E ' /proc/sys ' /proc/self/mountinfo | awk '{print $5, $6}'`)
	want.WriteString("core_pattern=refused\n")
	s := testSpec(t, script.String())
	s.Layers = append(s.Layers, evil)
	out := runOK(t, m, s)
	if !strings.HasPrefix(out, want.String()) {
		t.Errorf("masked paths:\n%s\nwant a start of\n%s", out, want.String())
	}
	if l := lines(out); !strings.HasPrefix(l[len(l)-1], "/proc/sys ro,") {
		t.Errorf("/proc/sys mount %q, want read-only", l[len(l)-1])
	}
	// Privileged: nothing masked, /sys writable, the host's devices.
	p := testSpec(t, `stat -c '%F' /proc/keys; grep ' /sys ' /proc/self/mountinfo | awk '{print $6}' | cut -d, -f1; ls /dev/loop-control`)
	p.Privileged = true
	out = runOK(t, m, p)
	if l := lines(out); len(l) != 3 || l[0] == "character special file" || l[1] != "rw" || l[2] != "/dev/loop-control" {
		t.Errorf("privileged: %q, want an unmasked /proc/keys, rw /sys and host devices", out)
	}
}

// TestNoHostFDsAndWorkdirThroughFD leaks a directory descriptor of the
// host into the shim (no close-on-exec) and asks for it as the working
// directory, which is how CVE-2024-21626 escaped runc.
func TestNoHostFDsAndWorkdirThroughFD(t *testing.T) {
	m := newManager(t)
	fd, err := syscall.Open(t.TempDir(), syscall.O_RDONLY|syscall.O_DIRECTORY, 0) // inherited on purpose
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if fd < 7 {
		t.Skipf("the leaked descriptor is %d; the shim overwrites 0-6", fd)
	}
	out := runOK(t, m, testSpec(t, "ls /proc/self/fd | tr '\\n' ' '"))
	if got := strings.TrimSpace(out); got != "0 1 2 3" {
		t.Errorf("descriptors in the container: %q, want 0 1 2 and ls's own", got)
	}
	s := testSpec(t, "pwd; ls")
	s.Cwd = "/proc/self/fd/" + strconv.Itoa(fd)
	if _, err := m.Create(s); err != nil {
		t.Fatal(err)
	}
	defer m.Remove(s.ID, true)
	err = m.Start(s.ID)
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("start with the working directory %s: %v, want a start error", s.Cwd, err)
	}
	// Exec: the same through a running container.
	c := testSpec(t, "sleep 30")
	start(t, m, c)
	var o, e strings.Builder
	code, err := m.Exec(context.Background(), c.ID, &Process{Args: []string{"sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"}}, nil, &o, &e)
	if err != nil || code != 0 || strings.TrimSpace(o.String()) != "0 1 2 3" {
		t.Errorf("exec: %d %v %q %q, want only 0 1 2 and ls's own", code, err, o.String(), e.String())
	}
	_, err = m.Exec(context.Background(), c.ID, &Process{Args: []string{"pwd"}, Cwd: "/proc/self/fd/" + strconv.Itoa(fd)}, nil, &o, &e)
	if err == nil {
		t.Errorf("exec with a working directory through a descriptor: no error")
	}
}

func TestShimRunsFromSealedCopy(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "sleep 30")
	start(t, m, s)
	c, err := m.Get(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(c.State.ShimPid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(exe, "/memfd:berth") {
		t.Errorf("the shim runs %q, want the sealed memfd copy", exe)
	}
	// While it runs the kernel refuses writers anyway (ETXTBSY); the
	// seals refuse them for good.
	f, err := os.OpenFile("/proc/"+strconv.Itoa(c.State.ShimPid)+"/exe", os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write([]byte("#!/bin/sh\n"))
		f.Close()
	}
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ETXTBSY) {
		t.Errorf("writing through the shim's /proc/PID/exe: %v, want it refused", err)
	}
	copy, err := sealBinary("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer copy.Close()
	seals, err := unix.FcntlInt(copy.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals&(unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL) != unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL {
		t.Errorf("seals %#x %v, want write, shrink, grow and seal", seals, err)
	}
	path := "/proc/self/fd/" + strconv.Itoa(int(copy.Fd()))
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		_, err = w.Write([]byte("#!/bin/sh\n"))
		w.Close()
	}
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("writing the sealed copy: %v, want EPERM", err)
	}
	if err := os.Truncate(path, 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("truncating the sealed copy: %v, want EPERM", err)
	}
}

func TestReadOnlyRootfsKeepsKernelMounts(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, `touch /x 2>/dev/null && echo root=rw || echo root=ro
		touch /dev/shm/x && echo shm=rw; echo hi > /dev/null && echo null=ok; test -r /proc/self/status && echo proc=ok
		touch /tmp/x 2>/dev/null && echo tmp=rw || echo tmp=ro`)
	s.ReadonlyRootfs = true
	if got, want := runOK(t, m, s), "root=ro\nshm=rw\nnull=ok\nproc=ok\ntmp=ro\n"; got != want {
		t.Errorf("read-only rootfs: %q, want %q", got, want)
	}
	s = testSpec(t, `touch /x 2>/dev/null && echo root=rw || echo root=ro; touch /tmp/x && echo tmp=rw`)
	s.ReadonlyRootfs = true
	s.Mounts = []Mount{{Type: "tmpfs", Destination: "/tmp"}}
	if got, want := runOK(t, m, s), "root=ro\ntmp=rw\n"; got != want {
		t.Errorf("read-only rootfs with a tmpfs /tmp: %q, want %q", got, want)
	}
}

func TestValidateSecurity(t *testing.T) {
	s := testSpec(t, "true")
	s.Seccomp = `{"defaultAction":"SCMP_ACT_NOPE"}`
	if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("bad profile: %v, want ErrInvalidSpec", err)
	}
	s = testSpec(t, "true")
	s.Privileged = true
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(s.Resources.Devices) != 1 || s.Resources.Devices[0].Type != 'a' || !s.Resources.Devices[0].Allow {
		t.Errorf("privileged device rules %+v, want allow all", s.Resources.Devices)
	}
}

// TestMaskRefusesASymlinkedDevNull gives the container a /dev whose null
// is a symlink to a file a mask would then expose read-write (the
// CVE-2025-31133 attack): the start must fail rather than bind the
// symlink's target over a masked path.
func TestMaskRefusesASymlinkedDevNull(t *testing.T) {
	m := newManager(t)
	dev := t.TempDir()
	if err := os.Symlink("/proc/sys/kernel/core_pattern", filepath.Join(dev, "null")); err != nil {
		t.Fatal(err)
	}
	s := testSpec(t, "cat /proc/keys")
	s.Mounts = []Mount{{Type: "bind", Source: dev, Destination: "/dev"}}
	if _, err := m.Create(s); err != nil {
		t.Fatal(err)
	}
	defer m.Remove(s.ID, true)
	err := m.Start(s.ID)
	if err == nil || !strings.Contains(err.Error(), "not the null device") {
		t.Fatalf("start with /dev/null a symlink: %v, want a refusal", err)
	}
}
