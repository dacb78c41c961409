//go:build linux

package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkCachedBuild times a fully cached build of a multi-step
// Dockerfile whose context has 300 small files and a 4 MiB blob: what
// the builder itself costs on a cache hit (no upload, no HTTP).
func BenchmarkCachedBuild(b *testing.B) {
	fx := newBenchFixture(b)
	files := map[string]string{
		"Dockerfile": "FROM busybox\nWORKDIR /app\nENV MODE=bench\nCOPY deps.txt ./\nRUN cat deps.txt > lock\nCOPY src/ ./src/\nRUN find src -type f > manifest\nCOPY blob.bin ./\nCMD [\"cat\", \"manifest\"]\n",
		"deps.txt":   "a\n",
		"blob.bin":   strings.Repeat("0123456789abcdef", 256<<10),
	}
	for d := 0; d < 10; d++ {
		for f := 0; f < 30; f++ {
			files[fmt.Sprintf("src/d%02d/f%02d.txt", d, f)] = strings.Repeat("x", 200)
		}
	}
	dir := b.TempDir()
	for n, c := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	opts := Options{ContextDir: dir, Tags: []string{"bench"}}
	if _, err := fx.b.Build(context.Background(), opts); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := fx.b.Build(context.Background(), opts)
		if err != nil || res.Cached != 8 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
