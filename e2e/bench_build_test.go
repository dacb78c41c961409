//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
)

// benchDockerfile is a multi-step build: metadata steps, COPYs of a
// context with a few hundred files, and RUNs that read and write.
const benchDockerfile = `FROM %s
WORKDIR /app
ENV MODE=bench
COPY deps.txt ./
RUN for i in $(seq 1 500); do echo "dep $i"; done > deps.lock && cat deps.txt >> deps.lock
COPY src/ ./src/
RUN find src -type f | sort > manifest && cat src/*/*.txt | wc -c > size
COPY blob.bin ./
RUN md5sum blob.bin > blob.md5 && rm -f deps.txt
LABEL bench=build
CMD ["cat", "/app/manifest"]
`

// benchContext writes the benchmark's context: 300 small files in 10
// directories and a 4 MiB blob.
func benchContext(b *testing.B, base string) string {
	b.Helper()
	dir := b.TempDir()
	write := func(p string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	write("Dockerfile", []byte(fmt.Sprintf(benchDockerfile, base)))
	write("deps.txt", []byte("a\nb\nc\n"))
	for d := 0; d < 10; d++ {
		for f := 0; f < 30; f++ {
			write(fmt.Sprintf("src/d%02d/f%02d.txt", d, f), []byte(strings.Repeat(fmt.Sprintf("line %d %d\n", d, f), 20)))
		}
	}
	blob := make([]byte, 4<<20)
	for i := range blob {
		blob[i] = byte(i * 7 % 251)
	}
	write("blob.bin", blob)
	return dir
}

// BenchmarkBuild builds the same multi-step Dockerfile on the same
// busybox base with `berth build` (against berth dev) and `podman
// build` (buildah), cold (--no-cache) and fully cached, alternating the
// two tools round by round, and reports each median and the ratios
// (targets: cached <= 0.25x podman, cold <= 1x).
//
//	make build && BERTH_BIN=$PWD/bin/berth go test -tags e2e -run '^$' -bench BenchmarkBuild -benchtime 5x ./e2e/
func BenchmarkBuild(b *testing.B) {
	testutil.RequireRoot(b)
	bin := BerthBin(b)
	podman, err := exec.LookPath("podman")
	if err != nil {
		b.Skip("podman is not installed: no baseline to compare with")
	}
	addr := benchDev(b, bin)
	tar := testutil.BusyboxTar(b)
	if r := RunCLI(b, bin, addr, "image", "import", tar, "bench-base:latest"); r.Code != 0 {
		b.Fatalf("image import: %s%s", r.Stdout, r.Stderr)
	}
	pbase := "localhost/berth-build-bench-base:latest"
	if out, err := exec.Command(podman, "import", tar, pbase).CombinedOutput(); err != nil {
		b.Fatalf("podman import: %v: %s", err, out)
	}
	ptag := fmt.Sprintf("localhost/berth-build-bench:%d", os.Getpid())
	b.Cleanup(func() {
		// Only what this benchmark named: other podman users share the store.
		exec.Command(podman, "rmi", "-f", ptag, pbase).Run()
	})
	bctx := benchContext(b, "bench-base")
	pctx := benchContext(b, pbase)

	time1 := func(env []string, name string, args ...string) time.Duration {
		start := time.Now()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return time.Since(start)
	}
	benv := []string{api.EnvAddr + "=" + addr}
	berthBuild := func(extra ...string) time.Duration {
		return time1(benv, bin, append(append([]string{"build", "-q", "-t", "bench:latest"}, extra...), bctx)...)
	}
	podmanBuild := func(extra ...string) time.Duration {
		args := append([]string{"build", "-q", "--layers", "--network", "host", "-t", ptag}, extra...)
		return time1(nil, podman, append(args, pctx)...)
	}
	// Warm up: fill both caches (and the page cache).
	berthBuild()
	podmanBuild()

	var bCold, pCold, bCached, pCached []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bCold = append(bCold, berthBuild("--no-cache"))
		pCold = append(pCold, podmanBuild("--no-cache"))
		// --no-cache refilled the caches; these are full hits.
		bCached = append(bCached, berthBuild())
		pCached = append(pCached, podmanBuild())
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	bc, pc, bh, ph := median(bCold), median(pCold), median(bCached), median(pCached)
	b.ReportMetric(ms(bc), "berth-cold-ms")
	b.ReportMetric(ms(pc), "podman-cold-ms")
	b.ReportMetric(float64(bc)/float64(pc), "cold-ratio")
	b.ReportMetric(ms(bh), "berth-cached-ms")
	b.ReportMetric(ms(ph), "podman-cached-ms")
	b.ReportMetric(float64(bh)/float64(ph), "cached-ratio")
	b.Logf("build (n=%d): cold berth %s podman %s ratio %.2f; cached berth %s podman %s ratio %.3f",
		len(bCold), bc, pc, float64(bc)/float64(pc), bh, ph, float64(bh)/float64(ph))
}
