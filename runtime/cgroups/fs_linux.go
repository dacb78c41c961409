package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// writeFile writes one value to a cgroup control file. The kernel makes
// control files; a missing one means the controller is not enabled, and
// the error says so. Only in a fake tree on an ordinary filesystem (the
// unit tests') is the file created.
func writeFile(dir, file, value string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, os.ErrNotExist) && isFakeDir(dir) {
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o644)
	}
	if err != nil {
		return fmt.Errorf("cgroups: open %s: %w", p, err)
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, p, werr)
	}
	if cerr != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, p, cerr)
	}
	return nil
}

func readFile(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readUint reads a single number; "max" (v2) and the v1 "unlimited" values
// read as 0, which the Stats fields define as "no limit". A missing file
// reads as 0 as well, so Stats fills what the kernel has.
func readUint(dir, file string) (uint64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("cgroups: read %s: %w", filepath.Join(dir, file), err)
	}
	return parseUint(s, filepath.Join(dir, file))
}

func parseUint(s, where string) (uint64, error) {
	if s == "max" || s == "" {
		return 0, nil
	}
	if strings.HasPrefix(s, "-") { // v1 writes -1 back as a huge number, but be lenient
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroups: parse %q in %s: %w", s, where, err)
	}
	return v, nil
}

// readKeyed reads one key of a "key value" file such as memory.events,
// memory.oom_control or cpu.stat. ok is false when the file or key is
// absent.
func readKeyed(dir, file, key string) (v uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("cgroups: read %s: %w", filepath.Join(dir, file), err)
	}
	return parseKeyed(b, key, filepath.Join(dir, file))
}

func parseKeyed(b []byte, key, where string) (uint64, bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == key {
			v, err := parseUint(f[1], where)
			return v, err == nil, err
		}
	}
	return 0, false, nil
}

// readPids reads cgroup.procs.
func readPids(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return nil, fmt.Errorf("cgroups: %s: %w", dir, ErrNotFound)
			}
			return nil, nil
		}
		return nil, fmt.Errorf("cgroups: read %s: %w", filepath.Join(dir, "cgroup.procs"), err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroups: parse pid %q in %s: %w", f, dir, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// addPid moves pid into the cgroup at dir.
func addPid(dir string, pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroups: add pid %d: not a process id", pid)
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("cgroups: add pid %d to %s: %w", pid, dir, ErrNotFound)
	}
	return writeFile(dir, "cgroup.procs", strconv.Itoa(pid))
}

// killAll sends SIGKILL to every pid listed; a process that is already
// gone is not an error.
func killAll(pids []int) error {
	for _, pid := range pids {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("cgroups: kill pid %d: %w", pid, err)
		}
	}
	return nil
}

// killTimeout bounds how long Kill waits for the kernel to empty a cgroup.
// Processes in uninterruptible sleep (D state, stuck I/O) can delay it.
const killTimeout = 10 * time.Second

// waitEmpty polls until the cgroup at dir has no processes. A killed
// process leaves its cgroup when it exits, before it is reaped.
func waitEmpty(dir string, deadline time.Time) error {
	delay := time.Millisecond
	for {
		pids, err := readPids(dir)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: %s still holds pids %v after SIGKILL: %w", dir, pids, ErrBusy)
		}
		time.Sleep(delay)
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// removeDir removes one cgroup directory. A missing directory is fine;
// EBUSY right after the last process exited is retried briefly because the
// kernel finishes tearing the task down asynchronously.
func removeDir(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY) && isFakeDir(dir):
			if pids, _ := readPids(dir); len(pids) > 0 {
				return fmt.Errorf("cgroups: remove %s: pids %v: %w", dir, pids, ErrBusy)
			}
			if errors.Is(err, unix.ENOTEMPTY) {
				// A fake tree in a test: control files are plain files.
				return removeFake(dir)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cgroups: remove %s: %w", dir, ErrBusy)
			}
			time.Sleep(10 * time.Millisecond)
		default:
			return fmt.Errorf("cgroups: remove %s: %w", dir, err)
		}
	}
}

// isFakeDir reports whether dir lives on an ordinary filesystem rather than
// cgroupfs: the unit tests' fake trees. There, rmdir of a directory holding
// "control files" fails with ENOTEMPTY, and Delete removes the files.
func isFakeDir(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC
}

func removeFake(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			return fmt.Errorf("cgroups: remove %s: holds child cgroup %s: %w", dir, e.Name(), syscall.ENOTEMPTY)
		}
	}
	return os.RemoveAll(dir)
}
