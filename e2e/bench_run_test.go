package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
)

// benchDev starts `berth dev` on free loopback ports with its own data dir
// and returns its address; the process is killed (and its containers with
// it) when the benchmark ends.
func benchDev(b *testing.B, bin string) string {
	b.Helper()
	ports := freePorts(b, 4)
	dir := b.TempDir()
	logPath := filepath.Join(dir, "dev.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "dev", "--data-dir", filepath.Join(dir, "data"),
		"--http-port", strconv.Itoa(ports[0]), "--raft-port", strconv.Itoa(ports[1]),
		"--gossip-port", strconv.Itoa(ports[2]), "--agent-port", strconv.Itoa(ports[3]))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "BERTH_LOG_LEVEL=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
		KillContainers(filepath.Join(dir, "data", "containers", "*"))
	})
	addr := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	Eventually(b, 20*time.Second, "berth dev ready", func() error {
		c, err := api.NewClient(addr)
		if err != nil {
			return err
		}
		nodes, _, err := c.Nodes().List(nil)
		if err != nil {
			return err
		}
		if len(nodes) != 1 || nodes[0].Status != api.NodeStatusReady {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		return nil
	})
	return addr
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkRunRmTrue times `berth run --rm busybox true` end to end against
// `berth dev` (image cached), and in the same run `podman run --rm
// --network none` on the same image, and reports both medians and their
// ratio (issue: target berth <= 0.3x podman).
func BenchmarkRunRmTrue(b *testing.B) {
	testutil.RequireRoot(b)
	bin := BerthBin(b)
	addr := benchDev(b, bin)
	tar := testutil.BusyboxTar(b)
	if r := RunCLI(b, bin, addr, "image", "import", tar, "busybox:latest"); r.Code != 0 {
		b.Fatalf("image import: %s%s", r.Stdout, r.Stderr)
	}
	runOnce := func(name string, args ...string) time.Duration {
		start := time.Now()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), api.EnvAddr+"="+addr)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return time.Since(start)
	}
	// Warm up both paths once (page cache, first cgroup creation).
	runOnce(bin, "run", "--rm", "busybox", "true")
	var berth []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		berth = append(berth, runOnce(bin, "run", "--rm", "busybox", "true"))
	}
	b.StopTimer()
	bm := median(berth)
	b.ReportMetric(float64(bm.Microseconds())/1000, "berth-ms")

	podman, err := exec.LookPath("podman")
	if err != nil {
		b.Logf("berth run --rm busybox true: median %s over %d runs; podman not installed, no ratio", bm, len(berth))
		return
	}
	img := "localhost/berth-bench-busybox:latest"
	if out, err := exec.Command(podman, "import", tar, img).CombinedOutput(); err != nil {
		b.Logf("podman import failed (%v: %s); no ratio", err, out)
		return
	}
	defer exec.Command(podman, "rmi", "-f", img).Run()
	pargs := []string{"run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", img, "true"}
	runOnce(podman, pargs...)
	var pod []time.Duration
	for i := 0; i < len(berth); i++ {
		pod = append(pod, runOnce(podman, pargs...))
	}
	pm := median(pod)
	b.ReportMetric(float64(pm.Microseconds())/1000, "podman-ms")
	b.ReportMetric(float64(bm)/float64(pm), "ratio")
	b.Logf("run --rm busybox true: berth median %s, podman median %s, ratio %.2f (n=%d)", bm, pm, float64(bm)/float64(pm), len(berth))
}
