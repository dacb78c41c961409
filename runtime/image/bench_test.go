//go:build linux

package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

// BenchmarkImportBusybox imports the busybox rootfs tar into an empty
// store: hash, gzip, unpack and index one layer.
func BenchmarkImportBusybox(b *testing.B) {
	testutil.RequireRoot(b)
	tarPath := testutil.BusyboxTar(b)
	fi, err := os.Stat(tarPath)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	base := b.TempDir()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		root := filepath.Join(base, fmt.Sprint(i))
		s, err := Open(root)
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(tarPath)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Import(context.Background(), f, "busybox"); err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.StopTimer()
		os.RemoveAll(root)
		b.StartTimer()
	}
}

// BenchmarkAddCached re-adds an image whose layers are all in the store:
// what a pull of an image already present costs locally.
func BenchmarkAddCached(b *testing.B) {
	testutil.RequireRoot(b)
	src, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(testutil.BusyboxTar(b))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := src.Import(context.Background(), f, "busybox"); err != nil {
		b.Fatal(err)
	}
	img, err := src.OpenImage("busybox")
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Add(context.Background(), img, "busybox"); err != nil {
		b.Fatal(err)
	}
	n := unpackCount.Load()
	for b.Loop() {
		if _, err := s.Add(context.Background(), img, "busybox"); err != nil {
			b.Fatal(err)
		}
	}
	if unpackCount.Load() != n {
		b.Fatal("a cached layer was unpacked again")
	}
}
