// Package testutil holds helpers shared by berth's tests: root gating and a
// busybox root filesystem built from this machine's busybox-static package
// (no image can be pulled from the internet here).
package testutil

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, cgroups); CI runs as root")
	}
}

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// RequireBusybox skips the test unless a static busybox is installed, and
// returns its path.
func RequireBusybox(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("file", "-L", BusyboxPath).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "statically linked") {
		t.Skipf("%s is not statically linked; install busybox-static", BusyboxPath)
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skip("busybox-static is not installed: apt-get install busybox-static")
	}
	return BusyboxPath
}

var (
	appletsOnce sync.Once
	applets     []string
	appletsErr  error
)

// BusyboxRootfs lays a minimal busybox root filesystem into dir: /bin with
// busybox and a symlink per applet, /etc/passwd and /etc/group with root,
// nobody and a user "app" (1000:1000), and empty /tmp, /proc, /sys, /dev.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	bb := RequireBusybox(t)
	appletsOnce.Do(func() {
		out, err := exec.Command(bb, "--list").Output()
		appletsErr = err
		applets = strings.Fields(string(out))
	})
	if appletsErr != nil {
		t.Fatalf("busybox --list: %v", appletsErr)
	}
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/app"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":    "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n",
		"etc/hostname": "busybox\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "home/app"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
}

// BusyboxTar writes the busybox root filesystem as an uncompressed tar
// (the input of `berth image import`) and returns its path.
func BusyboxTar(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	BusyboxRootfs(t, root)
	path := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := TarDir(f, root); err != nil {
		t.Fatal(err)
	}
	return path
}

// TarDir writes the tree under root to w as a tar stream with relative
// names, keeping symlinks, modes and ownership.
func TarDir(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
