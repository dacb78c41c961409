//go:build linux

package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// tarEntry describes one entry of a crafted layer tar.
type tarEntry struct {
	name   string
	typ    byte
	body   string
	link   string
	mode   int64
	uid    int
	gid    int
	major  int64
	minor  int64
	xattrs map[string]string
	mtime  time.Time
}

func mkTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, Devmajor: e.major, Devminor: e.minor,
			ModTime: e.mtime, Format: tar.FormatPAX,
		}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.ModTime.IsZero() {
			hdr.ModTime = time.Unix(1700000000, 0)
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[paxXattrPrefix+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a sentinel directory holding an "outside" tree and the
// extraction target "root"; snapshot proves nothing outside root changed.
type sandbox struct {
	dir, root string
	before    map[string]string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	dir := t.TempDir()
	// root sits two levels down so that "../.." from inside it still
	// lands in the sentinel directory, where snapshot sees it.
	sb := &sandbox{dir: dir, root: filepath.Join(dir, "inner", "root")}
	for _, d := range []string{"inner/root", "outside/etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "outside/etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	sb.before = sb.snapshot(t)
	return sb
}

// snapshot describes every path under the sentinel except the target.
func (sb *sandbox) snapshot(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(sb.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == sb.root {
			return filepath.SkipDir
		}
		desc := fi.Mode().String() + " " + fi.ModTime().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		}
		if p == sb.dir {
			desc = fi.Mode().String() // its mtime moves with root's creation only
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (sb *sandbox) checkOutside(t testing.TB) {
	t.Helper()
	after := sb.snapshot(t)
	for p, d := range after {
		if sb.before[p] != d {
			t.Fatalf("outside the target changed: %s: %q, was %q", p, d, sb.before[p])
		}
	}
	for p := range sb.before {
		if _, ok := after[p]; !ok {
			t.Fatalf("outside the target removed: %s", p)
		}
	}
}

func TestExtractRefuses(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name    string
		entries func(sb *sandbox) []tarEntry
		want    error
	}{
		{"dotdot escape", func(*sandbox) []tarEntry { return []tarEntry{{name: "../escape", body: "x"}} }, ErrUnsafePath},
		{"dotdot inside", func(*sandbox) []tarEntry { return []tarEntry{{name: "a/../../secret", body: "x"}} }, ErrUnsafePath},
		{"absolute path", func(*sandbox) []tarEntry { return []tarEntry{{name: "/abs", body: "x"}} }, ErrUnsafePath},
		// Absolute targets point at the sandbox's fake /etc, never the
		// host's: a regression must fail this test, not damage the machine.
		{"write through absolute symlink", func(sb *sandbox) []tarEntry {
			return []tarEntry{{name: "a", typ: tar.TypeSymlink, link: filepath.Join(sb.dir, "outside/etc")}, {name: "a/passwd", body: "pwned"}}
		}, ErrUnsafePath},
		{"create through absolute symlink", func(sb *sandbox) []tarEntry {
			return []tarEntry{{name: "a", typ: tar.TypeSymlink, link: filepath.Join(sb.dir, "outside")}, {name: "a/x", body: "pwned"}}
		}, ErrUnsafePath},
		{"write through relative symlink", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "a", typ: tar.TypeSymlink, link: "../.."}, {name: "a/x", body: "pwned"}}
		}, ErrUnsafePath},
		{"mkdir through symlink", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "a", typ: tar.TypeSymlink, link: ".."}, {name: "a/newdir/", typ: tar.TypeDir}}
		}, ErrUnsafePath},
		{"write through in-tree symlink", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "a", typ: tar.TypeSymlink, link: "d"}, {name: "a/x", body: "x"}}
		}, ErrUnsafePath},
		{"hardlink outside", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}}
		}, ErrUnsafePath},
		{"hardlink to sandbox file", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "h", typ: tar.TypeLink, link: "../../outside/etc/passwd"}}
		}, ErrUnsafePath},
		{"hardlink absolute", func(sb *sandbox) []tarEntry {
			return []tarEntry{{name: "h", typ: tar.TypeLink, link: filepath.Join(sb.dir, "secret")}}
		}, ErrUnsafePath},
		{"hardlink through symlink", func(sb *sandbox) []tarEntry {
			return []tarEntry{{name: "s", typ: tar.TypeSymlink, link: sb.dir}, {name: "h", typ: tar.TypeLink, link: "s/secret"}}
		}, ErrUnsafePath},
		{"hardlink to symlink", func(sb *sandbox) []tarEntry {
			return []tarEntry{{name: "s", typ: tar.TypeSymlink, link: filepath.Join(sb.dir, "secret")}, {name: "h", typ: tar.TypeLink, link: "s"}}
		}, ErrUnsafePath},
		{"hardlink to missing", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "h", typ: tar.TypeLink, link: "nope"}}
		}, ErrUnsafePath},
		{"char device", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "null", typ: tar.TypeChar, major: 1, minor: 3}}
		}, ErrUnsupportedEntry},
		{"block device", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "sda", typ: tar.TypeBlock, major: 8, minor: 0}}
		}, ErrUnsupportedEntry},
		{"parent is a file", func(*sandbox) []tarEntry {
			return []tarEntry{{name: "f", body: "x"}, {name: "f/x", body: "y"}}
		}, ErrUnsafePath},
		{"entry inside a whiteout", func(*sandbox) []tarEntry { return []tarEntry{{name: ".wh.a/b/", typ: tar.TypeDir}} }, ErrUnsafePath},
		{"whiteout of dotdot", func(*sandbox) []tarEntry { return []tarEntry{{name: "d/.wh...", body: ""}} }, ErrUnsafePath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			data := mkTar(t, tt.entries(sb)...)
			err := Extract(context.Background(), bytes.NewReader(data), sb.root)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Extract: got %v, want %v", err, tt.want)
			}
			sb.checkOutside(t)
		})
	}
}

func TestExtractErrorNamesEntry(t *testing.T) {
	sb := newSandbox(t)
	err := Extract(context.Background(), bytes.NewReader(mkTar(t, tarEntry{name: "ok", body: "x"}, tarEntry{name: "../evil", body: "x"})), sb.root)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(`"../evil"`)) {
		t.Fatalf("error %v does not name the entry", err)
	}
}

func TestExtractTruncated(t *testing.T) {
	data := mkTar(t, tarEntry{name: "big", body: string(bytes.Repeat([]byte("x"), 10000))})
	sb := newSandbox(t)
	err := Extract(context.Background(), bytes.NewReader(data[:3000]), sb.root)
	if !errors.Is(err, ErrBadArchive) {
		t.Fatalf("got %v, want ErrBadArchive", err)
	}
}

func TestExtractKeeps(t *testing.T) {
	testutil.RequireRoot(t)
	sb := newSandbox(t)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	data := mkTar(t,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o711},
		tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o750, uid: 1000, gid: 50, mtime: mt},
		tarEntry{name: "d/suid", body: "#!/bin/sh\n", mode: 0o4755, uid: 0, gid: 0},
		tarEntry{name: "d/owned", body: "x", mode: 0o640, uid: 1000, gid: 1000, mtime: mt},
		tarEntry{name: "d/attr", body: "x", xattrs: map[string]string{"user.berth": "yes", "trusted.overlay.redirect": "/etc"}},
		tarEntry{name: "d/hard", typ: tar.TypeLink, link: "d/owned"},
		tarEntry{name: "d/out", typ: tar.TypeSymlink, link: "/nonexistent/passwd"},
		tarEntry{name: "d/up", typ: tar.TypeSymlink, link: "../../../secret"},
		tarEntry{name: "d/fifo", typ: tar.TypeFifo, mode: 0o600},
		tarEntry{name: "d/sticky/", typ: tar.TypeDir, mode: 0o1777},
		tarEntry{name: "implicit/parent/file", body: "deep"},
		tarEntry{name: "replace", body: "old"},
		tarEntry{name: "replace", body: "new"},
	)
	if err := Extract(context.Background(), bytes.NewReader(data), sb.root); err != nil {
		t.Fatal(err)
	}
	sb.checkOutside(t)
	st := func(rel string) *unix.Stat_t {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(sb.root, rel), &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	if m := st("").Mode & 0o7777; m != 0o711 {
		t.Errorf("root mode %o, want 711", m)
	}
	if s := st("d"); s.Mode&0o7777 != 0o750 || s.Uid != 1000 || s.Gid != 50 || s.Mtim.Sec != mt.Unix() {
		t.Errorf("d: mode %o uid %d gid %d mtime %d", s.Mode&0o7777, s.Uid, s.Gid, s.Mtim.Sec)
	}
	if m := st("d/suid").Mode & 0o7777; m != 0o4755 {
		t.Errorf("setuid lost: mode %o", m)
	}
	if s := st("d/owned"); s.Uid != 1000 || s.Gid != 1000 || s.Mtim.Sec != mt.Unix() {
		t.Errorf("d/owned: uid %d gid %d mtime %d", s.Uid, s.Gid, s.Mtim.Sec)
	}
	if st("d/hard").Ino != st("d/owned").Ino {
		t.Error("hardlink does not share the inode")
	}
	if m := st("d/sticky").Mode & 0o7777; m != 0o1777 {
		t.Errorf("sticky dir mode %o", m)
	}
	if st("d/fifo").Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Error("fifo not created")
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(sb.root, "d/attr"), "user.berth", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("user xattr: %q, %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(sb.root, "d/attr"), "trusted.overlay.redirect", buf); err == nil {
		t.Error("trusted.overlay.redirect from the tar was applied")
	}
	if l, _ := os.Readlink(filepath.Join(sb.root, "d/out")); l != "/nonexistent/passwd" {
		t.Errorf("symlink target %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(sb.root, "replace")); string(b) != "new" {
		t.Errorf("replaced file holds %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(sb.root, "implicit/parent/file")); string(b) != "deep" {
		t.Errorf("implicit parent file holds %q", b)
	}
}

func TestExtractWhiteouts(t *testing.T) {
	testutil.RequireRoot(t)
	sb := newSandbox(t)
	data := mkTar(t,
		tarEntry{name: "etc/", typ: tar.TypeDir},
		tarEntry{name: "etc/.wh.hostname"},
		tarEntry{name: "opq/", typ: tar.TypeDir},
		tarEntry{name: "opq/.wh..wh..opq"},
		tarEntry{name: "opq/new", body: "n"},
		tarEntry{name: ".wh..wh.plnk/", typ: tar.TypeDir},
		tarEntry{name: ".wh..wh.plnk/123.456", body: "aufs hardlink"},
		tarEntry{name: "already", typ: tar.TypeChar}, // overlay-format whiteout
	)
	if err := Extract(context.Background(), bytes.NewReader(data), sb.root); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"etc/hostname", "already"} {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(sb.root, rel), &s); err != nil {
			t.Fatal(err)
		}
		if s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want a 0/0 char device", rel, s.Mode, s.Rdev)
		}
	}
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(sb.root, "opq"), overlayOpaqueXattr, buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr: %q %v", buf[:n], err)
	}
	var names []string
	filepath.Walk(sb.root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			names = append(names, filepath.Base(p))
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		if len(n) >= 4 && n[:4] == whiteoutPrefix {
			t.Errorf("a .wh. file was created: %s", n)
		}
	}
}

func TestExtractBusybox(t *testing.T) {
	testutil.RequireRoot(t)
	f, err := os.Open(testutil.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := newSandbox(t)
	if err := Extract(context.Background(), f, sb.root); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(sb.root, "bin/busybox"))
	if err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("bin/busybox: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(sb.root, "bin/sh")); err != nil || l != "busybox" {
		t.Fatalf("bin/sh -> %q, %v", l, err)
	}
	var s unix.Stat_t
	if err := unix.Stat(filepath.Join(sb.root, "home/app"), &s); err != nil || s.Uid != 1000 {
		t.Fatalf("home/app uid %d, %v", s.Uid, err)
	}
	if m := fileMode(t, filepath.Join(sb.root, "bin/busybox")); m != 0o755 {
		t.Fatalf("bin/busybox mode %o", m)
	}
	sb.checkOutside(t)
}

func fileMode(t testing.TB, p string) uint32 {
	var s unix.Stat_t
	if err := unix.Lstat(p, &s); err != nil {
		t.Fatal(err)
	}
	return s.Mode & 0o7777
}

func TestCleanEntryName(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            bool
	}{
		{"plain", "a/b", "a/b", false},
		{"dot prefix", "./a/b/", "a/b", false},
		{"double slash", "a//b", "a/b", false},
		{"root", "./", "", false},
		{"dotdot", "a/../b", "", true},
		{"absolute", "/a", "", true},
		{"empty", "", "", true},
		{"nul", "a\x00b", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cleanEntryName(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("cleanEntryName(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}
