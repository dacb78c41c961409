package build

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/logs"
)

// maxMountData is the kernel's limit on mount options (one page).
const maxMountData = 4096

// tailLines is how many lines of a failed RUN's output its StepError
// carries.
const tailLines = 20

func (b *Builder) openContainers() error {
	m, err := container.NewManager(b.ctrRoot, nil)
	if err != nil {
		return err
	}
	b.containers = m
	// A builder killed mid-step leaves its RUN container behind.
	if list, err := m.List(); err == nil {
		for _, c := range list {
			if err := m.Remove(c.ID, true); err != nil {
				b.log.Warn("removing a leftover build container", "container", c.ID, "err", err)
			}
		}
	}
	return nil
}

// mountImage makes the image id's root filesystem readable at a
// directory: its only layer, or a read-only overlay of its layers ("" is
// the empty scratch image). release undoes it.
func (b *Builder) mountImage(id string) (string, func(), error) {
	var layers []string
	if id != "" {
		img, err := b.images.Get(id)
		if err != nil {
			return "", nil, err
		}
		if layers, err = b.images.LayerDirs(img); err != nil {
			return "", nil, err
		}
	}
	switch len(layers) {
	case 0:
		dir, err := os.MkdirTemp(b.tmp, "empty-")
		if err != nil {
			return "", nil, fmt.Errorf("build: %w", err)
		}
		return dir, func() { os.RemoveAll(dir) }, nil
	case 1:
		return layers[0], func() {}, nil
	}
	dir, err := os.MkdirTemp(b.tmp, "rootfs-")
	if err != nil {
		return "", nil, fmt.Errorf("build: %w", err)
	}
	lower := make([]string, len(layers))
	for i, l := range layers {
		lower[len(layers)-1-i] = l
	}
	opts := "lowerdir=" + strings.Join(lower, ":")
	if len(opts) >= maxMountData {
		// The options must fit in a page: name the layers through short
		// symlinks, which overlayfs resolves when it mounts.
		links, err := os.MkdirTemp("", "bl")
		if err != nil {
			os.Remove(dir)
			return "", nil, fmt.Errorf("build: %w", err)
		}
		defer os.RemoveAll(links)
		short := make([]string, len(lower))
		for i, l := range lower {
			short[i] = filepath.Join(links, fmt.Sprintf("%x", i))
			if err := os.Symlink(l, short[i]); err != nil {
				os.Remove(dir)
				return "", nil, fmt.Errorf("build: %w", err)
			}
		}
		if opts = "lowerdir=" + strings.Join(short, ":"); len(opts) >= maxMountData {
			os.Remove(dir)
			return "", nil, fmt.Errorf("build: image %s has too many layers (%d) to mount", id, len(layers))
		}
	}
	if err := unix.Mount("overlay", dir, "overlay", unix.MS_RDONLY, opts); err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("build: mount the layers of %s: %w", id, err)
	}
	return dir, func() {
		unix.Unmount(dir, unix.MNT_DETACH)
		os.Remove(dir)
	}, nil
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runStep runs a RUN in a container of the current image and commits its
// filesystem changes.
func (j *job) runStep(ctx context.Context, st *stage, c *instructions.RunCommand, args, env []string, key string) (*stageResult, error) {
	parent := st.res
	line := cmdLine(c)
	var layers []string
	if parent.id != "" {
		img, err := j.b.images.Get(parent.id)
		if err != nil {
			return nil, err
		}
		if layers, err = j.b.images.LayerDirs(img); err != nil {
			return nil, err
		}
	}
	if len(layers) == 0 {
		return nil, lineError(line, "RUN needs a program to run, but the image is empty (FROM scratch)")
	}
	m := j.b.containers
	id := "build-" + randomID()
	spec := &container.Spec{
		ID: id, Layers: layers, Args: args, Env: env,
		Cwd: parent.cfg.Config.WorkingDir, User: parent.cfg.Config.User,
		Network: runNetwork(c, j.opts.Network),
	}
	if _, err := m.Create(spec); err != nil {
		return nil, fmt.Errorf("build: RUN container: %w", err)
	}
	defer func() {
		if err := m.Remove(id, true); err != nil && !errors.Is(err, container.ErrNotFound) {
			j.b.log.Warn("removing build container", "container", id, "err", err)
		}
	}()
	text := code(c)
	fail := func(exit int, tail []string) error {
		return &StepError{Step: j.step, Total: j.total, Instruction: text, ExitCode: exit, Tail: tail}
	}
	if err := m.Start(id); err != nil {
		var se *container.StartError
		if errors.As(err, &se) {
			return nil, fail(se.Code, []string{se.Msg})
		}
		return nil, fmt.Errorf("build: start RUN container: %w", err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			m.Kill(id, syscall.SIGKILL)
		case <-stop:
		}
	}()
	var tail []string
	if rc, err := m.Logs(id, container.LogOptions{Follow: true}); err == nil {
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		for sc.Scan() {
			e, err := logs.Decode(sc.Bytes())
			if err != nil {
				continue
			}
			text := strings.TrimSuffix(e.Log, "\n")
			j.emit(Event{Kind: EventOutput, Step: j.step, Total: j.total, Output: text + "\n"})
			tail = append(tail, text)
			if len(tail) > tailLines {
				tail = tail[1:]
			}
		}
		rc.Close()
	}
	es, err := m.Wait(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("build: wait for RUN: %w", err)
	}
	if es.Code != 0 {
		if es.Error != "" {
			tail = append(tail, es.Error)
		}
		return nil, fail(es.Code, tail)
	}
	upper := filepath.Join(j.b.ctrRoot, id, "upper")
	cfg := cloneConfig(parent.cfg)
	hist := v1.History{CreatedBy: "RUN " + strings.Join(args, " ") + " # buildkit"}
	entries, err := listUpper(upper)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		hist.EmptyLayer = true
	} else {
		li, err := j.b.addLayer(ctx, func(tw *tar.Writer) error { return writeDiff(tw, upper, entries) })
		if err != nil {
			return nil, err
		}
		h, err := v1.NewHash(li.DiffID)
		if err != nil {
			return nil, err
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, h)
	}
	cfg.History = append(cfg.History, hist)
	return j.commitStep(ctx, cfg, key)
}

// mountPoints are the directories a container's init creates to mount
// /proc, /sys and /dev on; they are not the command's changes.
var mountPoints = map[string]bool{"proc": true, "sys": true, "dev": true}

// listUpper lists an overlay upperdir, parents first, leaving out the
// container's mount points.
func listUpper(upper string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if mountPoints[rel] && d.IsDir() {
			return filepath.SkipDir
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build: read the RUN's changes: %w", err)
	}
	return out, nil
}

// writeDiff writes an upperdir as a layer tar: overlay whiteouts (0/0
// character devices) become .wh.NAME files, opaque directories get a
// .wh..wh..opq entry, hardlinks stay hardlinks.
func writeDiff(tw *tar.Writer, upper string, entries []string) error {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	for _, rel := range entries {
		p := filepath.Join(upper, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		dir, base := filepath.Split(rel)
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dir + ".wh." + base, Mode: 0o600, ModTime: epoch}); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSocket != 0 {
			// Sockets cannot be archived; docker leaves them out too.
			continue
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = rel, "", ""
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := addXattrs(p, hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			k := inode{st.Dev, st.Ino}
			if first, ok := seen[k]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				seen[k] = rel
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = bufio.NewReaderSize(f, 64<<10).WriteTo(tw)
			f.Close()
			if err != nil {
				return err
			}
		}
		if fi.IsDir() {
			if v, err := getxattr(p, "trusted.overlay.opaque"); err == nil && v == "y" {
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel + "/.wh..wh..opq", Mode: 0o600, ModTime: epoch}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// addXattrs copies a file's extended attributes, except overlayfs' own,
// into the header.
func addXattrs(p string, hdr *tar.Header) error {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz <= 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		v, err := getxattr(p, name)
		if err != nil {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+name] = v
	}
	return nil
}

func getxattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}
