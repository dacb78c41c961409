package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

// These tests use the real cgroupfs of this machine: cgroup v1 with an
// empty cgroup2 mount at /sys/fs/cgroup/unified. They skip when not root.

const unifiedRoot = "/sys/fs/cgroup/unified"

func requireV1(t *testing.T) Manager {
	t.Helper()
	testutil.RequireRoot(t)
	if v, err := detect(DefaultRoot); err != nil || v != 1 {
		t.Skipf("needs a cgroup v1 host (detect: %d, %v)", v, err)
	}
	m, err := NewV1(DefaultRoot)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testName gives each test its own cgroup so parallel packages never meet.
func testName(t *testing.T) string {
	return fmt.Sprintf("test-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
}

// gated is a child process blocked on its stdin until release is called,
// so that it can be moved into a cgroup before it does anything.
type gated struct {
	cmd    *exec.Cmd
	gate   io.WriteCloser
	out    syncBuffer
	waited chan error
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startGated(t *testing.T, script string) *gated {
	t.Helper()
	g := &gated{waited: make(chan error, 1)}
	g.cmd = exec.Command("/bin/sh", "-c", "read _ && "+script)
	g.cmd.Stdout = &g.out
	g.cmd.Stderr = &g.out
	var err error
	if g.gate, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.waited <- g.cmd.Wait() }()
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		<-g.waited
		g.waited <- nil
	})
	return g
}

func (g *gated) release(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(g.gate, "go\n"); err != nil {
		t.Fatal(err)
	}
}

func (g *gated) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-g.waited:
		g.waited <- err
		return err
	case <-time.After(d):
		t.Fatalf("child %d did not exit within %v; output: %s", g.cmd.Process.Pid, d, g.out.String())
		return nil
	}
}

func cleanupCgroup(t *testing.T, cg Cgroup) {
	t.Cleanup(func() {
		_ = cg.Kill()
		_ = cg.Delete()
	})
}

func mustRead(t *testing.T, dir, file string) string {
	t.Helper()
	s, err := readFile(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewDetectsHost(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	want := 1
	var st unix.Statfs_t
	if err := unix.Statfs(DefaultRoot, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		want = 2
	}
	if m.Version() != want {
		t.Fatalf("New() gave version %d, want %d", m.Version(), want)
	}
	// This development machine and CI are v1 with an empty v2 mount at
	// /sys/fs/cgroup/unified, which must not turn detection to v2.
	if _, err := os.Stat(filepath.Join(DefaultRoot, "memory")); err == nil && want != 1 {
		t.Fatalf("v1 memory hierarchy present, yet %s is cgroup2", DefaultRoot)
	}
}

func TestDetect(t *testing.T) {
	if v, err := detect(t.TempDir()); err != nil || v != 1 {
		t.Fatalf("detect(tempdir) = %d, %v; want 1", v, err)
	}
	if _, err := os.Stat(filepath.Join(unifiedRoot, "cgroup.controllers")); err == nil {
		if v, err := detect(unifiedRoot); err != nil || v != 2 {
			t.Fatalf("detect(%s) = %d, %v; want 2", unifiedRoot, v, err)
		}
	}
	if _, err := detect(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("detect of a missing dir succeeded")
	}
}

func TestV1RealLifecycle(t *testing.T) {
	m := requireV1(t)
	name := testName(t)
	r := &Resources{
		MemoryLimit: 64 << 20,
		CPUQuota:    50000,
		CPUPeriod:   100000,
		CPUShares:   512,
		PidsLimit:   50,
		CpusetCpus:  "0",
	}
	cg, err := m.Create(name, r)
	if err != nil {
		t.Fatal(err)
	}
	cleanupCgroup(t, cg)
	p := cg.(Pather)
	checks := []struct{ ctl, file, want string }{
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.shares", "512"},
		{"pids", "pids.max", "50"},
		{"cpuset", "cpuset.cpus", "0"},
	}
	for _, c := range checks {
		if got := mustRead(t, p.Path(c.ctl), c.file); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
	if got := mustRead(t, p.Path("cpuset"), "cpuset.mems"); got == "" {
		t.Error("cpuset.mems is empty: the parent's value was not copied")
	}
	list := mustRead(t, p.Path("devices"), "devices.list")
	for _, want := range []string{"c 1:3 rwm", "c 1:5 rwm", "c 136:* rwm", "c *:* m", "b *:* m"} {
		if !strings.Contains(list, want) {
			t.Errorf("devices.list lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, "a *:* rwm") {
		t.Errorf("devices.list still allows everything:\n%s", list)
	}

	g := startGated(t, "exec sleep 100")
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for _, ctl := range v1Controllers {
		procs := mustRead(t, p.Path(ctl), "cgroup.procs")
		if procs != fmt.Sprint(g.cmd.Process.Pid) {
			t.Errorf("%s cgroup.procs = %q, want the child's pid", ctl, procs)
		}
	}
	g.release(t)
	waitExec(t, g.cmd.Process.Pid, "sleep")
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if !strings.Contains(string(status), "Cpus_allowed_list:\t0\n") {
		t.Errorf("cpuset.cpus 0 not in force:\n%s", status)
	}
	pids, err := cg.Pids()
	if err != nil || !slices.Equal(pids, []int{g.cmd.Process.Pid}) {
		t.Fatalf("Pids() = %v, %v; want [%d]", pids, err, g.cmd.Process.Pid)
	}
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids != 1 || st.PidsLimit != 50 || st.MemoryLimit != 64<<20 || st.MemoryUsage == 0 || st.CPUUsageNanos == 0 || st.OOMKills != 0 {
		t.Errorf("Stats() = %+v", st)
	}

	// Update replaces the limits; zero lifts one.
	if err := cg.Update(&Resources{MemoryLimit: 128 << 20, PidsLimit: 0}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, p.Path("memory"), "memory.limit_in_bytes"); got != "134217728" {
		t.Errorf("after Update memory.limit_in_bytes = %q", got)
	}
	if got := mustRead(t, p.Path("pids"), "pids.max"); got != "max" {
		t.Errorf("after Update pids.max = %q", got)
	}
	if got := mustRead(t, p.Path("cpu"), "cpu.cfs_quota_us"); got != "-1" {
		t.Errorf("after Update cpu.cfs_quota_us = %q", got)
	}
	if got := mustRead(t, p.Path("devices"), "devices.list"); got != list {
		t.Errorf("Update without Devices changed devices.list:\n%s", got)
	}

	loaded, err := m.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Delete(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Delete with a live process = %v, want ErrBusy", err)
	}
	if err := loaded.Kill(); err != nil {
		t.Fatal(err)
	}
	werr := g.wait(t, 5*time.Second)
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", werr)
	}
	if got := mustRead(t, p.Path("freezer"), "freezer.state"); got != "THAWED" {
		t.Errorf("freezer.state after Kill = %q", got)
	}
	if err := loaded.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, ctl := range v1Controllers {
		if _, err := os.Stat(p.Path(ctl)); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Delete (%v)", p.Path(ctl), err)
		}
	}
	if err := cg.Delete(); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if _, err := m.Load(name); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Delete = %v, want ErrNotFound", err)
	}
	if _, err := cg.Stats(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stats after Delete = %v, want ErrNotFound", err)
	}
}

// TestV1RealCPUQuota runs a busy loop under --cpus 0.5 and checks that
// the CPU time it gets stays near half the wall time. Only the upper bound
// is asserted: on a loaded machine the loop may get less.
func TestV1RealCPUQuota(t *testing.T) {
	m := requireV1(t)
	quota, period := CPUQuota(0.5)
	cg, err := m.Create(testName(t), &Resources{CPUQuota: quota, CPUPeriod: period})
	if err != nil {
		t.Fatal(err)
	}
	cleanupCgroup(t, cg)
	g := startGated(t, "while :; do :; done")
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	before, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	g.release(t)
	time.Sleep(time.Second)
	after, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	ratio := float64(after.CPUUsageNanos-before.CPUUsageNanos) / float64(wall.Nanoseconds())
	t.Logf("busy loop under --cpus 0.5: %.2f CPUs over %v", ratio, wall)
	if ratio > 0.62 || ratio <= 0 {
		t.Errorf("CPU time / wall time = %.2f, want about 0.5 and at most 0.62", ratio)
	}
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	g.wait(t, 5*time.Second)
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
}

func TestV1RealKillForkingTree(t *testing.T) {
	m := requireV1(t)
	cg, err := m.Create(testName(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	cleanupCgroup(t, cg)
	// A tree that keeps forking: the freezer stops it while pids are read.
	g := startGated(t, "while :; do sleep 100 & done")
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	g.release(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, _ := cg.Pids()
		if len(pids) > 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tree did not grow: %v", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if pids, err := cg.Pids(); err != nil || len(pids) != 0 {
		t.Fatalf("after Kill Pids() = %v, %v", pids, err)
	}
	g.wait(t, 5*time.Second)
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
}

func TestV1RealOOMKill(t *testing.T) {
	m := requireV1(t)
	cg, err := m.Create(testName(t), &Resources{MemoryLimit: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cleanupCgroup(t, cg)
	if n, err := cg.OOMKills(); err != nil || n != 0 {
		t.Fatalf("OOMKills of a new cgroup = %d, %v", n, err)
	}
	// tail keeps the last line of /dev/zero, which never ends: memory
	// grows without bound until the kernel kills it.
	g := startGated(t, "exec tail /dev/zero")
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	g.release(t)
	werr := g.wait(t, 30*time.Second)
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("memory hog ended with %v (%s), want SIGKILL", werr, g.out.String())
	}
	n, err := cg.OOMKills()
	if err != nil || n < 1 {
		t.Fatalf("OOMKills() = %d, %v; want >= 1", n, err)
	}
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMKills != n || st.MemoryMaxUsage < 15<<20 || st.MemoryLimit != 16<<20 {
		t.Errorf("Stats() = %+v", st)
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
}

func TestV1RealPidsLimit(t *testing.T) {
	m := requireV1(t)
	cg, err := m.Create(testName(t), &Resources{PidsLimit: 4})
	if err != nil {
		t.Fatal(err)
	}
	cleanupCgroup(t, cg)
	// sh plus 3 sleeps reach the limit; the next fork fails, and sh
	// says so.
	g := startGated(t, "for i in 1 2 3 4 5 6 7 8; do sleep 30 & done; echo all-forked")
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	g.release(t)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.ToLower(g.out.String()), "fork") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := g.out.String()
	if !strings.Contains(strings.ToLower(out), "fork") || strings.Contains(out, "all-forked") {
		t.Errorf("no fork failure reported; output: %q", out)
	}
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids > 4 || st.PidsLimit != 4 {
		t.Errorf("Stats() = %+v; want at most 4 pids", st)
	}
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
}

func TestV1RealDevices(t *testing.T) {
	m := requireV1(t)
	cg, err := m.Create(testName(t), nil) // Docker's default allowlist
	if err != nil {
		t.Fatal(err)
	}
	cleanupCgroup(t, cg)
	g := startGated(t, `head -c 4 /dev/zero | wc -c; echo hi > /dev/null && echo null-ok; head -c 1 /dev/kmsg || echo kmsg-denied`)
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	g.release(t)
	g.wait(t, 5*time.Second)
	out := g.out.String()
	for _, want := range []string{"4\n", "null-ok", "Operation not permitted", "kmsg-denied"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
}

// TestV2RealDeviceFilter loads and attaches the eBPF device filter on this
// machine's real cgroup2 mount. It has no controllers (they are all on v1),
// but BPF device programs work on any cgroup2 directory, and cgroup.kill
// and cgroup.procs are core files, so the v2 code runs against the kernel.
func TestV2RealDeviceFilter(t *testing.T) {
	testutil.RequireRoot(t)
	if v, err := detect(unifiedRoot); err != nil || v != 2 {
		t.Skipf("no cgroup2 mount at %s", unifiedRoot)
	}
	m, err := NewV2(unifiedRoot)
	if err != nil {
		t.Fatal(err)
	}
	rules := []DeviceRule{
		{Type: 'a', Allow: false},
		{Type: 'c', Major: 1, Minor: 5, Access: "rwm", Allow: true}, // /dev/zero only
		{Type: 'c', Major: 1, Minor: 9, Access: "r", Allow: true},   // /dev/urandom, read only
	}
	cg, err := m.Create(testName(t), &Resources{Devices: rules})
	if err != nil {
		t.Fatal(err)
	}
	cleanupCgroup(t, cg)
	if _, err := m.Create(testName(t)+"-mem", &Resources{MemoryLimit: 1 << 20}); !errors.Is(err, ErrNotSupported) {
		t.Errorf("memory limit without a memory controller: %v, want ErrNotSupported", err)
	}
	g := startGated(t, `head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; echo x > /dev/urandom || echo urandom-w-denied; echo hi > /dev/null || echo null-denied; sleep 100`)
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	g.release(t)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.out.String(), "null-denied") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := g.out.String()
	for _, want := range []string{"4\n4\n", "urandom-w-denied", "null-denied", "Operation not permitted"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// cpu.stat and cgroup.procs are core files, present without any
	// controller: Stats and Pids read them from the kernel here.
	if pids, err := cg.Pids(); err != nil || len(pids) == 0 {
		t.Errorf("Pids() = %v, %v", pids, err)
	}
	if st, err := cg.Stats(); err != nil || st.CPUUsageNanos == 0 || st.MemoryLimit != 0 {
		t.Errorf("Stats() = %+v, %v; want CPU time from cpu.stat", st, err)
	}
	// Replacing the rules (Update) swaps the program: /dev/null works now.
	if err := cg.Update(&Resources{Devices: DefaultDevices()}); err != nil {
		t.Fatal(err)
	}
	check := exec.Command("/bin/sh", "-c", "echo hi > /dev/null && echo null-ok")
	check.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: openDir(t, cg.(Pather).Path(""))}
	if b, err := check.CombinedOutput(); err != nil || !strings.Contains(string(b), "null-ok") {
		t.Errorf("after Update to the defaults: %v: %s", err, b)
	}
	if err := cg.Kill(); err != nil { // cgroup.kill
		t.Fatal(err)
	}
	g.wait(t, 5*time.Second)
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg.(Pather).Path("")); !os.IsNotExist(err) {
		t.Errorf("cgroup dir left behind: %v", err)
	}
}

func openDir(t *testing.T, dir string) int {
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// waitExec waits until pid runs the program comm.
func waitExec(t *testing.T, pid int, comm string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(b)) == comm {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d runs %q, not %q", pid, b, comm)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestV1RealChurnLeavesNothing creates, fills, kills and deletes cgroups
// in a loop and checks that no directory of theirs is left anywhere.
func TestV1RealChurnLeavesNothing(t *testing.T) {
	m := requireV1(t)
	prefix := testName(t)
	for i := 0; i < 30; i++ {
		cg, err := m.Create(fmt.Sprintf("%s-%d", prefix, i), &Resources{MemoryLimit: 32 << 20, PidsLimit: 16})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := cg.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if err := cg.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if err := cg.Delete(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range v1Controllers {
		left, _ := filepath.Glob(filepath.Join(DefaultRoot, c, Subtree, prefix+"*"))
		if len(left) != 0 {
			t.Errorf("%s: left behind %v", c, left)
		}
	}
}

// BenchmarkV1CreateDelete is the cgroup share of a container's lifecycle:
// make the cgroup with limits and Docker's device rules in every
// hierarchy, then remove it.
func BenchmarkV1CreateDelete(b *testing.B) {
	testutil.RequireRoot(b)
	if v, err := detect(DefaultRoot); err != nil || v != 1 {
		b.Skip("needs a cgroup v1 host")
	}
	m, err := NewV1(DefaultRoot)
	if err != nil {
		b.Fatal(err)
	}
	r := &Resources{MemoryLimit: 64 << 20, CPUQuota: 50000, PidsLimit: 100}
	for i := 0; b.Loop(); i++ {
		cg, err := m.Create(fmt.Sprintf("bench-%d-%d", os.Getpid(), i), r)
		if err != nil {
			b.Fatal(err)
		}
		if err := cg.Delete(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkV2DeviceFilterAttach loads and attaches the default device
// program on the host's cgroup2 mount.
func BenchmarkV2DeviceFilterAttach(b *testing.B) {
	testutil.RequireRoot(b)
	if v, err := detect(unifiedRoot); err != nil || v != 2 {
		b.Skip("no cgroup2 mount")
	}
	dir := filepath.Join(unifiedRoot, fmt.Sprintf("bench-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	defer os.Remove(dir)
	insts, err := DeviceProgram(DefaultDevices())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := attachDeviceFilter(dir, insts); err != nil {
			b.Fatal(err)
		}
	}
}
