//go:build linux

package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berth-dev/berth/internal/testutil"
)

const (
	benchLayers        = 5
	benchFilesPerLayer = 8
	benchFileSize      = 5 << 20 // 5 layers x 8 files x 5 MiB = 200 MiB
)

// randomImage builds an image of benchLayers gzip layers of random
// (incompressible) files.
func randomImage(b *testing.B) v1.Image {
	b.Helper()
	rng := rand.NewChaCha8([32]byte{'b', 'e', 'r', 't', 'h'})
	var layers []v1.Layer
	buf := make([]byte, benchFileSize)
	for l := range benchLayers {
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/", l), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)})
		for f := range benchFilesPerLayer {
			rng.Read(buf)
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/f%d", l, f), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(buf)), ModTime: time.Unix(1700000000, 0)})
			tw.Write(buf)
		}
		tw.Close()
		zw.Close()
		blob := gz.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil })
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, layer)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPull200MB pulls a ~200 MiB image of five random-content layers
// from a loopback registry (docker-registry) into an empty store, and in
// the same run does the same with `skopeo copy docker://… dir:…` and
// `podman pull`, reporting the three medians and berth's ratio to the
// faster of the two (the target is ≤ 0.8).
//
//	go test -run '^$' -bench BenchmarkPull200MB -benchtime 5x ./runtime/image/
func BenchmarkPull200MB(b *testing.B) {
	testutil.RequireRoot(b)
	reg := testutil.StartRegistry(b, testutil.RegistryOptions{})
	ref := reg.Host + "/bench/random:200mb"
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(tag, randomImage(b), remote.WithJobs(benchLayers)); err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	opts := PullOptions{RemoteOptions: RemoteOptions{InsecureRegistries: []string{reg.Host}}}
	b.SetBytes(benchLayers * benchFilesPerLayer * benchFileSize)

	run := 0
	fresh := func() string {
		run++
		return filepath.Join(work, fmt.Sprint(run))
	}
	pullBerth := func() time.Duration {
		dir := fresh()
		start := time.Now()
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pull(context.Background(), ref, opts); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
		return d
	}
	var berth []time.Duration
	for b.Loop() {
		berth = append(berth, pullBerth())
	}
	b.StopTimer()
	for len(berth) < 5 {
		berth = append(berth, pullBerth())
	}

	tool := func(args func(dir string) []string) []time.Duration {
		var out []time.Duration
		for range 5 {
			dir := fresh()
			a := args(dir)
			start := time.Now()
			if msg, err := exec.Command(a[0], a[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%v: %v\n%s", a, err, msg)
			}
			out = append(out, time.Since(start))
			os.RemoveAll(dir)
		}
		return out
	}
	mb := median(berth)
	b.ReportMetric(mb.Seconds(), "berth-s")
	fastest := time.Duration(0)
	if _, err := exec.LookPath("skopeo"); err == nil {
		sk := median(tool(func(dir string) []string {
			return []string{"skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://" + ref, "dir:" + dir}
		}))
		b.ReportMetric(sk.Seconds(), "skopeo-s")
		b.ReportMetric(mb.Seconds()/sk.Seconds(), "berth/skopeo")
		fastest = sk
	} else {
		b.Log("skopeo is not installed: no comparison with it")
	}
	if _, err := exec.LookPath("podman"); err == nil {
		pm := median(tool(func(dir string) []string {
			return []string{"podman", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
				"--storage-driver", "overlay", "pull", "--quiet", "--tls-verify=false", ref}
		}))
		b.ReportMetric(pm.Seconds(), "podman-s")
		b.ReportMetric(mb.Seconds()/pm.Seconds(), "berth/podman")
		if fastest == 0 || pm < fastest {
			fastest = pm
		}
	} else {
		b.Log("podman is not installed: no comparison with it")
	}
	if fastest > 0 {
		b.ReportMetric(mb.Seconds()/fastest.Seconds(), "berth/fastest")
	}
}
