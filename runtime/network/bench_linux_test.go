package network

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// BenchmarkNetworkSetupTeardown times what the network adds to one
// container: from an ID to a namespace with its address, route and files,
// and back to nothing.
func BenchmarkNetworkSetupTeardown(b *testing.B) {
	m := newTestManager(b)
	// The first Setup makes the bridge and its rules; that is per node,
	// not per container.
	if _, err := m.Setup(context.Background(), Request{ID: "warm"}); err != nil {
		b.Fatal(err)
	}
	if err := m.Teardown("warm"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("b", i)
		if _, err := m.Setup(context.Background(), Request{ID: id, Name: "n", Hostname: "h"}); err != nil {
			b.Fatal(err)
		}
		if err := m.Teardown(id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(time.Millisecond), "ms/container")
}

// BenchmarkPodmanRunNetwork times `podman run --rm` of the same busybox
// image with podman's default bridge network and with --network none; the
// difference is what podman's networking adds per container, the number
// BenchmarkNetworkSetupTeardown compares with.
func BenchmarkPodmanRunNetwork(b *testing.B) {
	testutil.RequireRoot(b)
	podman, err := exec.LookPath("podman")
	if err != nil {
		b.Skip("podman is not installed")
	}
	const img = "localhost/berth-bench-busybox:latest"
	if out, err := exec.Command(podman, "import", testutil.BusyboxTar(b), img).CombinedOutput(); err != nil {
		b.Skipf("podman import: %v: %s", err, out)
	}
	run := func(extra ...string) time.Duration {
		args := append([]string{"run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}, extra...)
		args = append(args, img, "true")
		start := time.Now()
		if out, err := exec.Command(podman, args...).CombinedOutput(); err != nil {
			b.Fatalf("podman %v: %v: %s", args, err, out)
		}
		return time.Since(start)
	}
	run() // the first run sets up podman's network
	run("--network", "none")
	var withNet, without time.Duration
	n := 0
	for b.Loop() {
		withNet += run()
		without += run("--network", "none")
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(n) / float64(time.Millisecond) }
	b.ReportMetric(ms(withNet), "ms-bridge/run")
	b.ReportMetric(ms(without), "ms-none/run")
	b.ReportMetric(ms(withNet-without), "ms-network/run")
}
