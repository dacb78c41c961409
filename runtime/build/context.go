package build

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// ignorer applies a context's .dockerignore with Docker's rules (Go
// filepath.Match patterns, "**", "!" exceptions, the last match wins).
type ignorer struct {
	pm *patternmatcher.PatternMatcher
}

// loadIgnore reads dir/.dockerignore; a missing file ignores nothing.
func loadIgnore(dir string) (*ignorer, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, os.ErrNotExist) {
		return &ignorer{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: .dockerignore: %v", ErrBadContext, err)
	}
	defer f.Close()
	return parseIgnore(f)
}

func parseIgnore(r io.Reader) (*ignorer, error) {
	pats, err := ignorefile.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: .dockerignore: %v", ErrBadContext, err)
	}
	if len(pats) == 0 {
		return &ignorer{}, nil
	}
	pm, err := patternmatcher.New(pats)
	if err != nil {
		return nil, fmt.Errorf("%w: .dockerignore: %v", ErrBadContext, err)
	}
	return &ignorer{pm: pm}, nil
}

// ignored reports whether the context path rel (slash-separated,
// relative) is excluded.
func (ig *ignorer) ignored(rel string) bool {
	if ig == nil || ig.pm == nil || rel == "." || rel == "" {
		return false
	}
	m, err := ig.pm.MatchesOrParentMatches(rel)
	return err == nil && m
}

// skipDir reports whether nothing under the excluded directory rel can
// be included again by an exception.
func (ig *ignorer) skipDir(rel string) bool {
	return ig.ignored(rel) && !ig.pm.Exclusions()
}

// ContextTar writes the build context dir as a tar stream to w, leaving
// out what .dockerignore excludes, except the Dockerfile (dockerfile,
// relative to dir) and .dockerignore itself, which the builder always
// needs. Regular files, directories and symlinks are sent; other file
// types are skipped.
func ContextTar(dir, dockerfile string, w io.Writer) error {
	ign, err := loadIgnore(dir)
	if err != nil {
		return err
	}
	keep := map[string]bool{".dockerignore": true, path.Clean(filepath.ToSlash(dockerfile)): true}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if !keep[rel] && ign.ignored(rel) {
			if d.IsDir() && ign.skipDir(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&os.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("build: context %s: %w", dir, err)
	}
	return tw.Close()
}

// maxContextBytes bounds what ExtractContext writes (a sparse entry in a
// small tar can claim terabytes).
var maxContextBytes int64 = 64 << 30

// ExtractContext unpacks a context tar (as ContextTar writes it) into
// dir. Entries that would land outside dir (absolute names, "..",
// paths through symlinks) and device nodes are refused with
// ErrBadContext.
func ExtractContext(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	written := int64(0)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadContext, err)
		}
		if written += hdr.Size; hdr.Size < 0 || written > maxContextBytes {
			return fmt.Errorf("%w: the context is larger than %d bytes", ErrBadContext, maxContextBytes)
		}
		name := filepath.ToSlash(hdr.Name)
		clean := path.Clean(strings.TrimPrefix(name, "./"))
		if path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("%w: entry %q leaves the context", ErrBadContext, hdr.Name)
		}
		if clean == "." {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(clean))
		if err := checkNoSymlinkParents(dir, clean); err != nil {
			return err
		}
		mode := os.FileMode(hdr.Mode) & os.ModePerm
		// Whatever sits at target is replaced, never written through: a
		// symlink there could point anywhere.
		if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("build: context: %w", err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("build: context: %w", err)
			}
			os.Chmod(target, mode|0o700)
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("build: context: %w", err)
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode|0o600)
			if err != nil {
				return fmt.Errorf("build: context: %w", err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrBadContext, hdr.Name, err)
			}
			os.Chmod(target, mode)
			os.Chtimes(target, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("build: context: %w", err)
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return fmt.Errorf("build: context: %w", err)
			}
		default:
			return fmt.Errorf("%w: entry %q has an unsupported type", ErrBadContext, hdr.Name)
		}
	}
}

// checkNoSymlinkParents refuses a path whose parents include a symlink,
// so that an entry never writes through one.
func checkNoSymlinkParents(dir, rel string) error {
	parts := strings.Split(rel, "/")
	cur := dir
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("build: context: %w", err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%w: entry %q is under a symlink", ErrBadContext, rel)
		}
	}
	return nil
}
