//go:build linux

package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// BenchmarkLifecycleTrue is the full life of a container running /bin/true
// from a prepared busybox layer: create, start, wait, remove.
func BenchmarkLifecycleTrue(b *testing.B) {
	m := newManager(b)
	layer := busyboxLayer(b)
	ctx := context.Background()
	var phase [4]time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := testID(b)
		t0 := time.Now()
		if _, err := m.Create(&Spec{ID: id, Layers: []string{layer}, Args: []string{"/bin/true"}}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Start(id); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if ex, err := m.Wait(ctx, id); err != nil || ex.Code != 0 {
			b.Fatalf("wait: %+v %v", ex, err)
		}
		t3 := time.Now()
		if err := m.Remove(id, false); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		phase[0] += t1.Sub(t0)
		phase[1] += t2.Sub(t1)
		phase[2] += t3.Sub(t2)
		phase[3] += t4.Sub(t3)
	}
	b.StopTimer()
	for i, name := range []string{"create", "start", "wait", "remove"} {
		b.ReportMetric(float64(phase[i].Microseconds())/float64(b.N), name+"-µs/op")
	}
	time.Sleep(50 * time.Millisecond) // let the last shim be reaped
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkRuncRun times `runc run` of /bin/true in an equivalent bundle
// (busybox root, the namespaces and mounts of `runc spec`), the baseline
// for BenchmarkLifecycleTrue.
func BenchmarkRuncRun(b *testing.B) {
	testutil.RequireRoot(b)
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Skip("runc is not installed: apt-get install runc")
	}
	bundle := b.TempDir()
	testutil.BusyboxRootfs(b, filepath.Join(bundle, "rootfs"))
	cfg, _ := json.MarshalIndent(ociConfig([]string{"/bin/true"}), "", "  ")
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o644); err != nil {
		b.Fatal(err)
	}
	state := b.TempDir()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench-%d-%d", os.Getpid(), i)
		out, err := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id).CombinedOutput()
		if err != nil {
			b.Fatalf("runc run: %v: %s", err, out)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkLifecycleVsRunc alternates one berth lifecycle and one `runc
// run` per iteration, so both see the same load on a shared machine, and
// reports each one's time and their ratio (berth/runc; the aim is <= 0.5).
func BenchmarkLifecycleVsRunc(b *testing.B) {
	m := newManager(b)
	layer := busyboxLayer(b)
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Skip("runc is not installed: apt-get install runc")
	}
	bundle := b.TempDir()
	testutil.BusyboxRootfs(b, filepath.Join(bundle, "rootfs"))
	cfg, _ := json.MarshalIndent(ociConfig([]string{"/bin/true"}), "", "  ")
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o644); err != nil {
		b.Fatal(err)
	}
	state := b.TempDir()
	ctx := context.Background()
	var berth, runcTime time.Duration
	var ph [4]time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		id := testID(b)
		if _, err := m.Create(&Spec{ID: id, Layers: []string{layer}, Args: []string{"/bin/true"}}); err != nil {
			b.Fatal(err)
		}
		ta := time.Now()
		if err := m.Start(id); err != nil {
			b.Fatal(err)
		}
		tb := time.Now()
		if ex, err := m.Wait(ctx, id); err != nil || ex.Code != 0 {
			b.Fatalf("wait: %+v %v", ex, err)
		}
		tc := time.Now()
		if err := m.Remove(id, false); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		ph[0] += ta.Sub(t0)
		ph[1] += tb.Sub(ta)
		ph[2] += tc.Sub(tb)
		ph[3] += t1.Sub(tc)
		out, err := exec.Command(runc, "--root", state, "run", "--bundle", bundle, fmt.Sprintf("vs-%d-%d", os.Getpid(), i)).CombinedOutput()
		if err != nil {
			b.Fatalf("runc run: %v: %s", err, out)
		}
		berth += t1.Sub(t0)
		runcTime += time.Since(t1)
	}
	b.ReportMetric(float64(berth.Microseconds())/1000/float64(b.N), "berth-ms/op")
	b.ReportMetric(float64(runcTime.Microseconds())/1000/float64(b.N), "runc-ms/op")
	b.ReportMetric(float64(berth)/float64(runcTime), "berth/runc")
	for i, name := range []string{"create", "start", "wait", "remove"} {
		b.ReportMetric(float64(ph[i].Microseconds())/float64(b.N), name+"-µs/op")
	}
}

// cpuTime is the CPU time used by this process and its reaped children:
// on a shared machine it measures the work done, which wall time cannot.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

// ociConfig is what `runc spec` writes, with args replaced and no terminal.
func ociConfig(args []string) map[string]any {
	caps := []string{}
	for _, c := range DefaultCaps {
		caps = append(caps, "CAP_"+c)
	}
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false,
			"user":     map[string]any{"uid": 0, "gid": 0},
			"args":     args,
			"env":      []string{"PATH=" + DefaultPath, "TERM=xterm"},
			"cwd":      "/",
			"capabilities": map[string]any{
				"bounding": caps, "effective": caps, "permitted": caps,
			},
			"rlimits":         []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}},
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": "rootfs", "readonly": true},
		"hostname": "runc",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": []string{"nosuid", "noexec", "nodev"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		"linux": map[string]any{
			"resources": map[string]any{"devices": []map[string]any{{"allow": false, "access": "rwm"}}},
			"namespaces": []map[string]any{
				{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
			},
			"maskedPaths":   maskedPaths,
			"readonlyPaths": readonlyPaths,
		},
	}
}
