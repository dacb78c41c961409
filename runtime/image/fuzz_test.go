//go:build linux

package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzLayer decodes fuzz input into a layer tar: every 4 bytes are one
// entry (type, name, second name component, link target and mode), over
// a small alphabet of names and link targets chosen to provoke escapes:
// "..", absolute paths, symlinks to the sandbox's parent and outside
// files, hardlinks through symlinks, whiteouts and device nodes. Absolute
// targets all point into the sandbox, so a bug cannot touch the host.
func fuzzLayer(t testing.TB, sb *sandbox, data []byte) []byte {
	comps := []string{"a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", "c", "d", "secret"}
	links := []string{"a", "b", "a/b", "..", "../..", "../../secret", "../../outside/etc",
		filepath.Join(sb.dir, "outside/etc"), filepath.Join(sb.dir, "secret"), sb.dir, "c/../..", "a/../../../outside", "", "b/secret"}
	types := []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeReg}
	var entries []tarEntry
	for len(data) >= 4 && len(entries) < 64 {
		op, n1, n2, x := data[0], data[1], data[2], data[3]
		data = data[4:]
		name := comps[int(n1&0x7f)%len(comps)]
		if n2&0x80 != 0 {
			name += "/" + comps[int(n2&0x7f)%len(comps)]
		}
		if n2&0x40 != 0 {
			name += "/" + comps[int(x)%len(comps)]
		}
		if n1&0x80 != 0 {
			name = "/" + name
		}
		if name == "" {
			name = "."
		}
		e := tarEntry{name: name, typ: types[int(op)%len(types)], link: links[int(x)%len(links)], mode: int64(x)<<4 | 0o600}
		switch e.typ {
		case tar.TypeReg:
			e.body = strings.Repeat("z", int(op>>4))
		case tar.TypeChar:
			if op&0x10 != 0 {
				e.major, e.minor = 1, 3
			}
		case tar.TypeDir:
			e.mode |= 0o700
		}
		entries = append(entries, e)
	}
	return mkTarLoose(entries)
}

// mkTarLoose is mkTar without failing on headers archive/tar refuses.
func mkTarLoose(entries []tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if tw.WriteHeader(hdr) != nil {
			continue
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func FuzzExtract(f *testing.F) {
	seeds := [][]byte{
		{2, 0, 0, 7, 0, 0, 0x81, 0},                  // a -> /sandbox/outside/etc, then a/b
		{2, 0, 0, 4, 0, 0, 0x81, 0},                  // a -> ../.., then a/b
		{2, 0, 0, 11, 1, 0, 0x81, 0},                 // a -> a/../../outside, then mkdir a/b
		{0, 0x02, 0x80, 0},                           // ../a
		{0, 0x80, 0, 0},                              // /a
		{3, 0, 0, 8},                                 // hardlink a -> /sandbox/secret
		{3, 0, 0, 5},                                 // hardlink a -> ../../secret
		{2, 1, 0, 9, 3, 0, 0, 13},                    // b -> /sandbox, hardlink a -> b/secret
		{1, 0, 0, 0, 0, 0, 0x85, 0},                  // a/, a/.wh.a
		{1, 0, 0, 0, 0, 0, 0x86, 0, 0, 0, 0x87, 0},   // a/, a/.wh..wh..opq, a/c
		{4, 0, 0, 0, 23, 1, 0, 0, 6, 7, 0, 0},        // whiteout char, char 1:3, block
		{1, 0, 0, 0, 2, 0, 0, 3, 0, 0, 0x80, 0},      // a/ replaced by symlink, then a/a
		{2, 0, 0, 9, 0, 0, 0x89, 0, 1, 0, 0xc0, 0x2}, // a -> /sandbox, a/secret, a/a/..
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := newSandbox(t)
		layer := fuzzLayer(t, sb, data)
		err := Extract(context.Background(), bytes.NewReader(layer), sb.root)
		sb.checkOutside(t)
		if err != nil {
			return
		}
		filepath.Walk(sb.root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && strings.HasPrefix(fi.Name(), whiteoutPrefix) {
				t.Fatalf("a whiteout file was created as such: %s", p)
			}
			return nil
		})
	})
}
