package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// copyFlags are COPY's and ADD's flags.
type copyFlags struct {
	from, chown, chmod string
	add                bool // ADD: local archives are unpacked
}

// source is one matched COPY source.
type source struct {
	rel string // slash path relative to the source root
	abs string
	fi  os.FileInfo
}

// epoch stamps directories a COPY creates, so that the same COPY makes
// the same layer.
var epoch = time.Unix(0, 0).UTC()

func (j *job) copyStep(ctx context.Context, si int, st *stage, sd instructions.SourcesAndDest, fl copyFlags, desc, text string, line int) (*stageResult, bool, error) {
	parent := st.res
	name := "COPY"
	if fl.add {
		name = "ADD"
	}
	// Where the sources come from.
	srcRoot, ign, srcID := j.opts.ContextDir, j.ignore, ""
	release := func() {}
	defer func() { release() }()
	if fl.from != "" {
		from, _, err := j.lex.ProcessWord(fl.from, j.meta)
		if err != nil {
			return nil, false, lineError(line, "%s --from=%s: %v", name, fl.from, err)
		}
		if k, ok := j.df.stageIndex(from, si); ok {
			srcID = j.results[k].id
		} else {
			img, err := j.resolveImage(ctx, from)
			if err != nil {
				return nil, false, fmt.Errorf("line %d: %s --from=%s: %w", line, name, from, err)
			}
			srcID = img.ID
		}
		root, rel, err := j.b.mountImage(srcID)
		if err != nil {
			return nil, false, err
		}
		srcRoot, ign, release = root, nil, rel
	}
	srcs, err := matchSources(srcRoot, sd.SourcePaths, ign)
	if err != nil {
		return nil, false, fmt.Errorf("line %d: %s: %w", line, name, err)
	}
	var key string
	if srcID != "" || fl.from != "" {
		key = cacheKey(parent, "copy-from", desc, srcID)
	} else {
		sum, err := hashSources(srcs, ign, j.opts.ContextDir)
		if err != nil {
			return nil, false, err
		}
		key = cacheKey(parent, "copy", desc, sum)
	}
	if next, hit := j.lookup(key); hit {
		return next, true, nil
	}

	dstRoot, dstRelease, err := j.b.mountImage(parent.id)
	if err != nil {
		return nil, false, err
	}
	defer dstRelease()
	owner, err := parseChown(dstRoot, fl.chown)
	if err != nil {
		return nil, false, lineError(line, "%s --chown=%s: %v", name, fl.chown, err)
	}
	var chmod *os.FileMode
	if fl.chmod != "" {
		m, err := strconv.ParseUint(fl.chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return nil, false, lineError(line, "%s --chmod=%s: want an octal mode such as 0755", name, fl.chmod)
		}
		fm := os.FileMode(m)
		chmod = &fm
	}

	dest := sd.DestPath
	slash := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		wd := parent.cfg.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	dest = resolveIn(dstRoot, path.Clean(dest))
	destIsDir := slash || len(srcs) > 1
	for _, s := range srcs {
		if s.fi.IsDir() || (fl.add && isArchive(s)) {
			destIsDir = true
		}
	}
	if fi, err := os.Lstat(filepath.Join(dstRoot, dest)); err == nil && fi.IsDir() {
		destIsDir = true
	}

	lw := &layerWriter{dstRoot: dstRoot, owner: owner, chmod: chmod, keepOwner: fl.from != "", done: map[string]bool{}}
	write := func(tw *tar.Writer) error {
		lw.tw = tw
		destDir := dest
		if !destIsDir {
			destDir = path.Dir(dest)
		}
		if err := lw.parents(destDir); err != nil {
			return err
		}
		for _, s := range srcs {
			switch {
			case s.fi.IsDir():
				if err := lw.tree(s, dest, ign); err != nil {
					return err
				}
			case fl.add && isArchive(s):
				if err := lw.archive(s.abs, dest); err != nil {
					return err
				}
			default:
				target := dest
				if destIsDir {
					target = path.Join(dest, path.Base(s.rel))
				}
				if err := lw.entry(s.abs, s.fi, target); err != nil {
					return err
				}
			}
		}
		return nil
	}
	li, err := j.b.addLayer(ctx, write)
	if err != nil {
		return nil, false, err
	}
	cfg := cloneConfig(parent.cfg)
	h, err := v1.NewHash(li.DiffID)
	if err != nil {
		return nil, false, err
	}
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, h)
	cfg.History = append(cfg.History, v1.History{CreatedBy: text + " # buildkit"})
	next, err := j.commitStep(ctx, cfg, key)
	return next, false, err
}

// addLayer streams the tar that write produces into the store.
func (b *Builder) addLayer(ctx context.Context, write func(*tar.Writer) error) (layerInfo, error) {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 256<<10)
		tw := tar.NewWriter(bw)
		err := write(tw)
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	li, err := b.images.AddLayer(ctx, pr)
	pr.CloseWithError(errors.New("build: layer no longer read"))
	if err != nil {
		return layerInfo{}, err
	}
	return layerInfo{DiffID: li.DiffID, Size: li.Size}, nil
}

type layerInfo struct {
	DiffID string
	Size   int64
}

func hasGlob(p string) bool { return strings.ContainsAny(p, "*?[") }

// matchSources finds what COPY's source patterns name under root.
func matchSources(root string, pats []string, ign *ignorer) ([]source, error) {
	var out []source
	for _, p := range pats {
		rel := path.Clean(strings.TrimPrefix(filepath.ToSlash(p), "/"))
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("%w: %s is outside the build context", ErrSource, p)
		}
		var rels []string
		if hasGlob(rel) {
			matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(rel)))
			if err != nil {
				return nil, fmt.Errorf("%w: bad pattern %q", ErrSource, p)
			}
			for _, m := range matches {
				r, err := filepath.Rel(root, m)
				if err != nil || strings.HasPrefix(r, "..") {
					continue
				}
				rels = append(rels, filepath.ToSlash(r))
			}
		} else {
			rels = []string{rel}
		}
		n := 0
		for _, r := range rels {
			if ign.ignored(r) {
				continue
			}
			// Parents resolve inside root, as the build would see them: a
			// symlink in the context never leads out of it.
			abs := filepath.Join(root, resolveIn(root, path.Dir("/"+r)), path.Base(r))
			fi, err := os.Lstat(abs)
			if err != nil {
				continue
			}
			out = append(out, source{rel: r, abs: abs, fi: fi})
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: %q (is it excluded by .dockerignore?)", ErrSource, p)
		}
	}
	return out, nil
}

// hashSources hashes the names, modes and contents of the sources (what
// a COPY would write), for the cache key.
func hashSources(srcs []source, ign *ignorer, ctxRoot string) (string, error) {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	add := func(abs, name string, fi os.FileInfo) error {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", name, fi.Mode(), fi.Size())
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(abs)
			if err != nil {
				return err
			}
			io.WriteString(h, l)
		case fi.Mode().IsRegular():
			f, err := os.Open(abs)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(h, f, buf)
			f.Close()
			if err != nil {
				return err
			}
		}
		h.Write([]byte{0})
		return nil
	}
	for _, s := range srcs {
		if !s.fi.IsDir() {
			if err := add(s.abs, s.rel, s.fi); err != nil {
				return "", fmt.Errorf("build: hash %s: %w", s.rel, err)
			}
			continue
		}
		err := filepath.WalkDir(s.abs, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(ctxRoot, p)
			rel = filepath.ToSlash(rel)
			if p != s.abs && ign.ignored(rel) {
				if d.IsDir() && ign.skipDir(rel) {
					return filepath.SkipDir
				}
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return add(p, rel, fi)
		})
		if err != nil {
			return "", fmt.Errorf("build: hash %s: %w", s.rel, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// resolveIn resolves the container path p inside root, following
// symlinks as the container would see them (never leaving root).
func resolveIn(root, p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := "/"
	links := 0
	for i := 0; i < len(parts); i++ {
		part := parts[i]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err == nil && fi.Mode()&os.ModeSymlink != 0 && links < 40 {
			target, err := os.Readlink(filepath.Join(root, next))
			if err == nil {
				links++
				if !path.IsAbs(target) {
					target = path.Join(cur, target)
				}
				parts = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts[i+1:]...)
				i = -1
				cur = "/"
				continue
			}
		}
		cur = next
	}
	return cur
}

// owner is a --chown result; nil keeps the default.
type owner struct{ uid, gid int }

// parseChown resolves "user[:group]" (names or numbers) with the
// image's /etc/passwd and /etc/group.
func parseChown(root, spec string) (*owner, error) {
	if spec == "" {
		return nil, nil
	}
	user, group, hasGroup := strings.Cut(spec, ":")
	uid, pgid, err := lookupID(filepath.Join(root, "etc/passwd"), user, 2, 3)
	if err != nil {
		return nil, err
	}
	gid := pgid
	if !hasGroup {
		if _, numErr := strconv.Atoi(user); numErr == nil {
			gid = uid
		}
	} else {
		if gid, _, err = lookupID(filepath.Join(root, "etc/group"), group, 2, -1); err != nil {
			return nil, err
		}
	}
	return &owner{uid: uid, gid: gid}, nil
}

// lookupID finds name (or a number) in a passwd-style file: the field
// idField, and extraField (-1: none).
func lookupID(file, name string, idField, extraField int) (int, int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, n, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, fmt.Errorf("unknown user or group %q (no %s in the image)", name, filepath.Base(file))
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ":")
		if len(f) <= idField || f[0] != name {
			continue
		}
		id, err := strconv.Atoi(f[idField])
		if err != nil {
			break
		}
		extra := id
		if extraField >= 0 && len(f) > extraField {
			if e, err := strconv.Atoi(f[extraField]); err == nil {
				extra = e
			}
		}
		return id, extra, nil
	}
	return 0, 0, fmt.Errorf("unknown user or group %q", name)
}

// layerWriter writes a COPY's layer.
type layerWriter struct {
	tw        *tar.Writer
	dstRoot   string // the image being built, mounted read-only
	owner     *owner
	chmod     *os.FileMode
	keepOwner bool // COPY --from keeps the source's owners
	done      map[string]bool
}

// parents writes dir entries for dir and its ancestors, with the image's
// metadata when they exist, so the layer changes no directory it passes
// through; a directory it creates gets --chown's owner.
func (lw *layerWriter) parents(dir string) error {
	if dir == "/" {
		return nil
	}
	parts := strings.Split(strings.Trim(dir, "/"), "/")
	cur := ""
	for i, p := range parts {
		cur = path.Join(cur, p)
		if lw.done[cur] {
			continue
		}
		lw.done[cur] = true
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: cur + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
		if fi, err := os.Lstat(filepath.Join(lw.dstRoot, cur)); err == nil && fi.IsDir() {
			h, err := tar.FileInfoHeader(fi, "")
			if err != nil {
				return err
			}
			h.Name, h.Uname, h.Gname = cur+"/", "", ""
			h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
			hdr = h
		} else if lw.owner != nil && i == len(parts)-1 {
			hdr.Uid, hdr.Gid = lw.owner.uid, lw.owner.gid
		}
		if err := lw.tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	return nil
}

// entry writes one file, directory or symlink at target.
func (lw *layerWriter) entry(abs string, fi os.FileInfo, target string) error {
	rel := strings.TrimPrefix(path.Clean(target), "/")
	if rel == "" {
		return nil // the root itself
	}
	link := ""
	if fi.Mode()&os.ModeSymlink != 0 {
		l, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		link = l
	}
	if fi.Mode()&os.ModeSocket != 0 {
		return nil
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name, hdr.Uname, hdr.Gname = rel, "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	if fi.IsDir() {
		hdr.Name += "/"
		lw.done[rel] = true
	}
	if !lw.keepOwner {
		hdr.Uid, hdr.Gid = 0, 0
	}
	if lw.owner != nil {
		hdr.Uid, hdr.Gid = lw.owner.uid, lw.owner.gid
	}
	if lw.chmod != nil && link == "" {
		hdr.Mode = int64(*lw.chmod)
	}
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		f, err := os.Open(abs)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(lw.tw, f); err != nil {
			return err
		}
	}
	return nil
}

// tree copies the contents of directory s into dest.
func (lw *layerWriter) tree(s source, dest string, ign *ignorer) error {
	return filepath.WalkDir(s.abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(s.abs, p)
		r = filepath.ToSlash(r)
		if ign != nil && p != s.abs {
			if cr := path.Join(s.rel, r); ign.ignored(cr) {
				if d.IsDir() && ign.skipDir(cr) {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := path.Join(dest, r)
		if r == "." {
			target = dest
			if lw.done[strings.TrimPrefix(dest, "/")] {
				return nil
			}
			if fi2, err := os.Lstat(filepath.Join(lw.dstRoot, dest)); err == nil && fi2.IsDir() {
				// An existing destination keeps its own metadata.
				return lw.parents(dest)
			}
		}
		return lw.entry(p, fi, target)
	})
}

var (
	gzipMagic  = []byte{0x1f, 0x8b}
	bzip2Magic = []byte("BZh")
)

// isArchive reports whether ADD should unpack s: a tar, possibly gzip-
// or bzip2-compressed.
func isArchive(s source) bool {
	if !s.fi.Mode().IsRegular() {
		return false
	}
	f, err := os.Open(s.abs)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return false
	}
	_, err = tar.NewReader(r).Next()
	return err == nil
}

func decompress(f io.Reader) (io.Reader, error) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(3)
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, bzip2Magic):
		return bzip2.NewReader(br), nil
	}
	return br, nil
}

// archive writes the entries of a local tar archive under dest, as ADD
// does.
func (lw *layerWriter) archive(abs, dest string) error {
	f, err := os.Open(abs)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(r)
	base := strings.TrimPrefix(dest, "/")
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: ADD %s: %v", ErrSource, filepath.Base(abs), err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := path.Clean(strings.TrimPrefix(filepath.ToSlash(hdr.Name), "/"))
		if name == "." {
			continue
		}
		if name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%w: ADD %s: entry %q leaves the destination", ErrSource, filepath.Base(abs), hdr.Name)
		}
		hdr.Name = path.Join(base, name)
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = path.Join(base, path.Clean(strings.TrimPrefix(hdr.Linkname, "/")))
		}
		if lw.owner != nil {
			hdr.Uid, hdr.Gid = lw.owner.uid, lw.owner.gid
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := lw.tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(lw.tw, tr); err != nil {
			return err
		}
	}
	return nil
}
