package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Extract unpacks one layer, a tar stream (plain, gzip or zstd), into dir,
// which must exist. It is the only way berth writes a layer to disk, and
// it never writes outside dir (DESIGN invariant 6):
//
//   - entries with an absolute path or a ".." component are refused;
//   - every parent of an entry must be a real directory inside dir: nothing
//     is written through a symlink, even one that points inside the tree
//     (a symlink that points outside may be created, it is only data);
//   - a hardlink must name a regular file that is already in dir;
//   - character and block devices are refused, except the 0/0 character
//     device that is overlayfs's whiteout; fifos are allowed;
//   - ".wh.NAME" becomes an overlayfs whiteout (a 0/0 character device
//     named NAME) and ".wh..wh..opq" marks its directory opaque with the
//     xattr trusted.overlay.opaque=y; no ".wh." file is ever created;
//   - "trusted.overlay.*" xattrs from the tar are dropped, since they would
//     steer overlayfs.
//
// Modes (setuid, setgid and sticky included), ownership (when running as
// root), modification times (directories after their contents) and PAX
// xattrs are kept. Errors wrap ErrUnsafePath, ErrUnsupportedEntry or
// ErrBadArchive and name the offending entry. A failed Extract leaves a
// partial tree behind: callers unpack into a fresh temporary directory and
// rename it into place only on success.
func Extract(ctx context.Context, r io.Reader, dir string) error {
	tr, closeFn, _, err := decompress(r)
	if err != nil {
		return err
	}
	defer closeFn()
	_, err = extract(ctx, tr, dir)
	return err
}

// compression of a layer blob, as found by its magic bytes.
type compression int

const (
	compressionNone compression = iota
	compressionGzip
	compressionZstd
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress peeks at r and returns a reader of its uncompressed bytes.
func decompress(r io.Reader) (io.Reader, func(), compression, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, nil, 0, fmt.Errorf("%w: reading layer: %v", ErrBadArchive, err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%w: gzip header: %v", ErrBadArchive, err)
		}
		return zr, func() { zr.Close() }, compressionGzip, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%w: zstd header: %v", ErrBadArchive, err)
		}
		return zr, zr.Close, compressionZstd, nil
	}
	return br, func() {}, compressionNone, nil
}

// cleanEntryName turns a tar entry name into a slash-separated path
// relative to the layer root ("" is the root itself). It refuses absolute
// paths and ".." components rather than cleaning them away, so that a
// crafted name is an error and never silently lands somewhere else.
func cleanEntryName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafePath)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL byte in name", ErrUnsafePath)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute path", ErrUnsafePath)
	}
	parts := strings.Split(name, "/")
	out := parts[:0]
	for _, p := range parts {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("%w: \"..\" component", ErrUnsafePath)
		}
		out = append(out, p)
	}
	return strings.Join(out, "/"), nil
}

// splitPath returns the parent ("" for the root) and base of a clean
// relative path.
func splitPath(rel string) (string, string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	// overlayOpaqueXattr marks a directory whose lower-layer contents are
	// hidden.
	overlayOpaqueXattr = "trusted.overlay.opaque"
	paxXattrPrefix     = "SCHILY.xattr."
)
