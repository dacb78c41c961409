package build

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type ctxEntry struct {
	name, body, link string
	typ              byte
}

func ctxTar(t testing.TB, entries ...ctxEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.link, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// outsideUntouched checks that nothing was written next to dir.
func outsideUntouched(t testing.TB, parent string) {
	t.Helper()
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if e.Name() != "ctx" && e.Name() != "victim" {
			t.Fatalf("extraction wrote %s outside the context", e.Name())
		}
	}
	if b, _ := os.ReadFile(filepath.Join(parent, "victim", "file")); string(b) != "safe" {
		t.Fatalf("a file outside the context changed: %q", b)
	}
}

func TestExtractContext(t *testing.T) {
	tests := []struct {
		name    string
		entries []ctxEntry
		bad     bool
	}{
		{"plain", []ctxEntry{{name: "Dockerfile", body: "FROM x"}, {name: "src/", typ: tar.TypeDir}, {name: "src/a", body: "a"}}, false},
		{"dot slash", []ctxEntry{{name: "./a", body: "a"}}, false},
		{"dotdot", []ctxEntry{{name: "../victim/file", body: "pwned"}}, true},
		{"absolute", []ctxEntry{{name: "/etc/x", body: "x"}}, true},
		{"through a symlink", []ctxEntry{{name: "l", typ: tar.TypeSymlink, link: "../victim"}, {name: "l/file", body: "pwned"}}, true},
		{"over a symlink", []ctxEntry{{name: "l", typ: tar.TypeSymlink, link: "../victim/file"}, {name: "l", body: "replaced"}}, false},
		{"dir over a symlink", []ctxEntry{{name: "l", typ: tar.TypeSymlink, link: "../victim"}, {name: "l/", typ: tar.TypeDir}}, false},
		{"device", []ctxEntry{{name: "null", typ: tar.TypeChar}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			os.Mkdir(filepath.Join(parent, "victim"), 0o755)
			os.WriteFile(filepath.Join(parent, "victim", "file"), []byte("safe"), 0o644)
			dir := filepath.Join(parent, "ctx")
			os.Mkdir(dir, 0o755)
			err := ExtractContext(bytes.NewReader(ctxTar(t, tt.entries...)), dir)
			if tt.bad != (err != nil) || (err != nil && !errors.Is(err, ErrBadContext)) {
				t.Fatalf("err = %v, want bad=%v", err, tt.bad)
			}
			outsideUntouched(t, parent)
		})
	}
}

func TestContextTarRoundTrip(t *testing.T) {
	src := t.TempDir()
	for n, c := range map[string]string{"Dockerfile": "FROM x", ".dockerignore": "*.log\nDockerfile\nskip/\n", "a.txt": "a", "b.log": "b", "skip/x": "x", "keep/y": "y"} {
		os.MkdirAll(filepath.Dir(filepath.Join(src, n)), 0o755)
		os.WriteFile(filepath.Join(src, n), []byte(c), 0o644)
	}
	os.Symlink("a.txt", filepath.Join(src, "link"))
	var buf bytes.Buffer
	if err := ContextTar(src, "Dockerfile", &buf); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := ExtractContext(&buf, dst); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dst, p)
		if rel != "." {
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if strings.Join(got, " ") != ".dockerignore Dockerfile a.txt keep keep/y link" {
		t.Fatalf("context sent: %v", got)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "link")); l != "a.txt" {
		t.Fatalf("symlink: %q", l)
	}
}

// FuzzExtractContext: whatever the tar, nothing outside the directory
// is written and errors wrap ErrBadContext.
func FuzzExtractContext(f *testing.F) {
	f.Add(ctxTar(f, ctxEntry{name: "a", body: "x"}, ctxEntry{name: "d/", typ: tar.TypeDir}))
	f.Add(ctxTar(f, ctxEntry{name: "l", typ: tar.TypeSymlink, link: "../victim"}, ctxEntry{name: "l/file", body: "p"}))
	f.Add(ctxTar(f, ctxEntry{name: "../victim/file", body: "p"}))
	f.Add(ctxTar(f, ctxEntry{name: "l", typ: tar.TypeSymlink, link: "../victim/file"}, ctxEntry{name: "l", body: "p"}))
	maxContextBytes = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, err := os.MkdirTemp("", "berth-fuzz-ctx-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		os.Mkdir(filepath.Join(parent, "victim"), 0o755)
		os.WriteFile(filepath.Join(parent, "victim", "file"), []byte("safe"), 0o644)
		dir := filepath.Join(parent, "ctx")
		os.Mkdir(dir, 0o755)
		if err := ExtractContext(bytes.NewReader(data), dir); err != nil && !errors.Is(err, ErrBadContext) && !strings.Contains(err.Error(), "build: context") {
			t.Fatalf("error %v", err)
		}
		outsideUntouched(t, parent)
	})
}

func TestContextReuse(t *testing.T) {
	dir := t.TempDir()
	b := &Builder{tmp: filepath.Join(dir, "tmp"), contexts: &contextCache{dir: filepath.Join(dir, "contexts"), refs: map[string]int{}, busy: map[string]*sync.Mutex{}}}
	os.MkdirAll(b.tmp, 0o700)
	os.MkdirAll(b.contexts.dir, 0o700)
	one := ctxTar(t, ctxEntry{name: "a", body: "1"})
	d1, rel1, err := b.Context(bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	// A marker shows whether the second upload is unpacked again.
	os.WriteFile(filepath.Join(d1, "marker"), nil, 0o644)
	d2, rel2, err := b.Context(bytes.NewReader(one))
	if err != nil || d2 != d1 {
		t.Fatalf("same upload: %s %v, want %s", d2, err, d1)
	}
	if _, err := os.Stat(filepath.Join(d2, "marker")); err != nil {
		t.Fatal("the same context was unpacked again")
	}
	rel1()
	rel2()
	// Uploads that differ get their own trees; only keepContexts unused
	// ones stay.
	var dirs []string
	for i := 0; i < keepContexts+3; i++ {
		d, rel, err := b.Context(bytes.NewReader(ctxTar(t, ctxEntry{name: "a", body: fmt.Sprint(i)})))
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(d, "a")); string(b) != fmt.Sprint(i) {
			t.Fatalf("context %d holds %q", i, b)
		}
		dirs = append(dirs, d)
		time.Sleep(10 * time.Millisecond)
		rel()
	}
	ents, _ := os.ReadDir(b.contexts.dir)
	if len(ents) != keepContexts {
		t.Fatalf("%d contexts kept, want %d", len(ents), keepContexts)
	}
	if _, err := os.Stat(dirs[len(dirs)-1]); err != nil {
		t.Fatal("the newest context was pruned")
	}
	if _, _, err := b.Context(bytes.NewReader([]byte("not a tar at all, but long enough to be read as a header............................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................"))); !errors.Is(err, ErrBadContext) {
		t.Fatalf("bad upload: %v", err)
	}
}
