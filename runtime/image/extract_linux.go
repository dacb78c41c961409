//go:build linux

package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// extractor holds the state of one Extract call. Only Extract writes into
// its directory (a private temporary one), so the checks below guard
// against the tar's content, not against concurrent tampering.
type extractor struct {
	root   string
	asRoot bool
	// dirs caches relative paths known to be real directories (not
	// symlinks) inside root; "" is root itself. Replacing a directory
	// drops it and everything below from the cache.
	dirs     map[string]bool
	dirTimes []dirTime
	// size counts the bytes of file content written.
	size int64
}

type dirTime struct {
	rel          string
	atime, mtime time.Time
}

// extract unpacks the uncompressed tar stream r into root and returns the
// number of content bytes written.
func extract(ctx context.Context, r io.Reader, root string) (int64, error) {
	x := &extractor{root: root, asRoot: os.Geteuid() == 0, dirs: map[string]bool{"": true}}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return x.size, err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return x.size, fmt.Errorf("%w: reading layer tar: %v", ErrBadArchive, err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return x.size, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	// Directory times last, deepest first, since creating their contents
	// changed them.
	sort.SliceStable(x.dirTimes, func(i, j int) bool { return x.dirTimes[i].rel > x.dirTimes[j].rel })
	for _, d := range x.dirTimes {
		if err := x.checkDir(d.rel, false); err != nil {
			continue // replaced by a later entry
		}
		if err := x.setTimes(x.full(d.rel), d.atime, d.mtime); err != nil {
			return x.size, fmt.Errorf("layer entry %q: %w", d.rel, err)
		}
	}
	return x.size, nil
}

func (x *extractor) full(rel string) string {
	if rel == "" {
		return x.root
	}
	return x.root + "/" + rel
}

// checkDir makes sure every component of rel is a real directory inside
// root, creating missing ones (mode 0755) when create is set.
func (x *extractor) checkDir(rel string, create bool) error {
	if x.dirs[rel] {
		return nil
	}
	parts := strings.Split(rel, "/")
	cur := ""
	for _, p := range parts {
		if cur == "" {
			cur = p
		} else {
			cur += "/" + p
		}
		if x.dirs[cur] {
			continue
		}
		full := x.full(cur)
		fi, err := os.Lstat(full)
		switch {
		case errors.Is(err, os.ErrNotExist) && create:
			if err := os.Mkdir(full, 0o755); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("%w: parent %q: %v", ErrUnsafePath, cur, err)
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%w: parent %q is a symlink; nothing is written through symlinks", ErrUnsafePath, cur)
		case !fi.IsDir():
			return fmt.Errorf("%w: parent %q is not a directory", ErrUnsafePath, cur)
		}
		x.dirs[cur] = true
	}
	return nil
}

// removeExisting deletes whatever sits at rel (never following a symlink)
// so that a new entry can take its place. It reports whether rel was a
// directory and keepDir asked to keep it.
func (x *extractor) removeExisting(rel string, keepDir bool) (bool, error) {
	full := x.full(rel)
	fi, err := os.Lstat(full)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		if keepDir {
			return true, nil
		}
		for k := range x.dirs {
			if k == rel || strings.HasPrefix(k, rel+"/") {
				delete(x.dirs, k)
			}
		}
		return false, os.RemoveAll(full)
	}
	return false, os.Remove(full)
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := cleanEntryName(hdr.Name)
	if err != nil {
		return err
	}
	parent, base := splitPath(rel)
	for _, c := range strings.Split(parent, "/") {
		if strings.HasPrefix(c, whiteoutMeta) {
			return nil // inside aufs bookkeeping (".wh..wh.plnk/…")
		}
		if strings.HasPrefix(c, whiteoutPrefix) {
			return fmt.Errorf("%w: entry inside whiteout %q", ErrUnsafePath, c)
		}
	}

	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(parent, base)
	}
	if rel == "" {
		// "./": the layer root's own metadata.
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the layer root must be a directory", ErrUnsafePath)
		}
		return x.meta(rel, hdr, false)
	}
	if err := x.checkDir(parent, true); err != nil {
		return err
	}
	full := x.full(rel)

	switch hdr.Typeflag {
	case tar.TypeDir:
		kept, err := x.removeExisting(rel, true)
		if err != nil {
			return err
		}
		if !kept {
			if err := os.Mkdir(full, 0o755); err != nil {
				return err
			}
		}
		x.dirs[rel] = true
		return x.meta(rel, hdr, false)

	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if _, err := x.removeExisting(rel, false); err != nil {
			return err
		}
		f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		bp := copyBufPool.Get().(*[]byte)
		n, err := io.CopyBuffer(f, io.LimitReader(r, hdr.Size), *bp)
		copyBufPool.Put(bp)
		x.size += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w: writing content: %v", ErrBadArchive, err)
		}
		if n != hdr.Size {
			return fmt.Errorf("%w: content is %d bytes, header says %d", ErrBadArchive, n, hdr.Size)
		}
		return x.meta(rel, hdr, false)

	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("%w: symlink without a target", ErrBadArchive)
		}
		if _, err := x.removeExisting(rel, false); err != nil {
			return err
		}
		if err := os.Symlink(hdr.Linkname, full); err != nil {
			return err
		}
		return x.meta(rel, hdr, true)

	case tar.TypeLink:
		target, err := cleanEntryName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		if target == "" {
			return fmt.Errorf("%w: hardlink to the layer root", ErrUnsafePath)
		}
		if target == rel {
			return nil
		}
		tparent, _ := splitPath(target)
		if err := x.checkDir(tparent, false); err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		fi, err := os.Lstat(x.full(target))
		if err != nil {
			return fmt.Errorf("%w: hardlink target %q is not in the layer", ErrUnsafePath, hdr.Linkname)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: hardlink target %q is not a regular file", ErrUnsafePath, hdr.Linkname)
		}
		if _, err := x.removeExisting(rel, false); err != nil {
			return err
		}
		// linkat without AT_SYMLINK_FOLLOW links the checked file itself.
		return os.Link(x.full(target), full)

	case tar.TypeChar:
		if hdr.Devmajor != 0 || hdr.Devminor != 0 {
			return fmt.Errorf("%w: character device %d:%d", ErrUnsupportedEntry, hdr.Devmajor, hdr.Devminor)
		}
		// 0/0 is an overlayfs-style whiteout already.
		if _, err := x.removeExisting(rel, false); err != nil {
			return err
		}
		return x.mkWhiteout(full)

	case tar.TypeBlock:
		return fmt.Errorf("%w: block device %d:%d", ErrUnsupportedEntry, hdr.Devmajor, hdr.Devminor)

	case tar.TypeFifo:
		if _, err := x.removeExisting(rel, false); err != nil {
			return err
		}
		if err := unix.Mknod(full, unix.S_IFIFO|0o600, 0); err != nil {
			return &os.PathError{Op: "mkfifo", Path: full, Err: err}
		}
		return x.meta(rel, hdr, false)
	}
	return fmt.Errorf("%w: tar type %q", ErrUnsupportedEntry, hdr.Typeflag)
}

// whiteout turns ".wh.NAME" into an overlayfs whiteout and ".wh..wh..opq"
// into an opaque directory. Other ".wh..wh." names are aufs bookkeeping
// and are skipped.
func (x *extractor) whiteout(parent, base string) error {
	if err := x.checkDir(parent, true); err != nil {
		return err
	}
	if base == whiteoutOpaque {
		if err := unix.Lsetxattr(x.full(parent), overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return &os.PathError{Op: "setxattr " + overlayOpaqueXattr, Path: x.full(parent), Err: err}
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrUnsafePath, name)
	}
	rel := name
	if parent != "" {
		rel = parent + "/" + name
	}
	if _, err := x.removeExisting(rel, false); err != nil {
		return err
	}
	return x.mkWhiteout(x.full(rel))
}

func (x *extractor) mkWhiteout(full string) error {
	if err := unix.Mknod(full, unix.S_IFCHR|0o000, 0); err != nil {
		return &os.PathError{Op: "mknod whiteout", Path: full, Err: err}
	}
	return nil
}

// meta applies ownership, mode, xattrs and times to the entry just made.
// Mode comes after chown because chown clears setuid/setgid, and xattrs
// after chown because it clears security.capability.
func (x *extractor) meta(rel string, hdr *tar.Header, symlink bool) error {
	full := x.full(rel)
	if x.asRoot {
		if err := os.Lchown(full, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if !symlink {
		if err := unix.Chmod(full, uint32(hdr.Mode)&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: full, Err: err}
		}
		for k, v := range hdr.PAXRecords {
			name, ok := strings.CutPrefix(k, paxXattrPrefix)
			if !ok || strings.HasPrefix(name, "trusted.overlay.") {
				continue
			}
			if err := unix.Lsetxattr(full, name, []byte(v), 0); err != nil {
				if errors.Is(err, unix.ENOTSUP) || (!x.asRoot && errors.Is(err, unix.EPERM)) {
					continue
				}
				return &os.PathError{Op: "setxattr " + name, Path: full, Err: err}
			}
		}
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if hdr.Typeflag == tar.TypeDir {
		x.dirTimes = append(x.dirTimes, dirTime{rel: rel, atime: atime, mtime: hdr.ModTime})
		return nil
	}
	return x.setTimes(full, atime, hdr.ModTime)
}

func (x *extractor) setTimes(full string, atime, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, full, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: full, Err: err}
	}
	return nil
}
