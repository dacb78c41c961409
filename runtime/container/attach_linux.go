package container

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// attachSock is the unix socket a container's shim serves when the
// container has a terminal or an open stdin.
const attachSock = "attach.sock"

// Attach connects to the shim of the running container id, which holds its
// terminal (Spec.Tty) or the write end of its stdin (Spec.OpenStdin). The
// connection carries package api's attach frames both ways: the caller
// writes stdin, resize and close-stdin frames and reads stdout and stderr
// frames until the container exits, when the shim closes it (Wait then
// says how it ended). Output made while nobody was attached (its last 64
// KiB) arrives first. Several clients may attach at once: each gets all
// output, and their input is merged. Closing the connection detaches.
// Containers with neither a terminal nor an open stdin fail with
// ErrNotAttachable, stopped ones with ErrNotRunning.
func (m *Manager) Attach(id string) (net.Conn, error) {
	c, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	if !c.Spec.Tty && !c.Spec.OpenStdin {
		return nil, fmt.Errorf("%w: %s", ErrNotAttachable, c.ID)
	}
	if c.State.Status != StatusRunning {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, c.ID, c.State.Status)
	}
	// The shim removes its socket as the container exits, a moment before
	// it records the exit: a failed dial waits briefly for the state to
	// say which it was.
	deadline := time.Now().Add(attachSettle)
	for {
		conn, err := dialIn(m.dir(c.ID), attachSock)
		if err == nil {
			return conn, nil
		}
		if m.state(m.dir(c.ID)).Status != StatusRunning {
			return nil, fmt.Errorf("%w: %s exited", ErrNotRunning, c.ID)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("container: attach to %s: %w", c.ID, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attachSettle bounds how long Attach waits for a container whose attach
// socket is gone to be recorded as exited.
const attachSettle = 2 * time.Second

// dialIn connects to the unix socket name in dir through an O_PATH
// descriptor, as dir may be longer than a socket address can hold.
func dialIn(dir, name string) (net.Conn, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return net.Dial("unix", filepath.Join("/proc/self/fd", strconv.Itoa(fd), name))
}

// OpenPTY opens a new terminal in the /dev/pts of the running container id,
// for a process that Exec runs with the slave as its stdin, stdout and
// stderr: it becomes the process's controlling terminal, and `tty` inside
// names it /dev/pts/N. The caller reads the process's output from master
// (which fails with EIO once every descriptor of the slave is closed),
// writes its input there, resizes it with Resize and closes both.
func (m *Manager) OpenPTY(id string) (master, slave *os.File, err error) {
	c, err := m.Get(id)
	if err != nil {
		return nil, nil, err
	}
	ds, err := readState(m.dir(c.ID))
	if err != nil || c.State.Status != StatusRunning {
		return nil, nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, c.ID, c.State.Status)
	}
	pfd, ok, err := pidfd(ds.Pid, ds.PidStart)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
	}
	defer unix.Close(pfd)
	// The pidfd pins the process, so /proc/PID is the container's init.
	root, err := unix.Open("/proc/"+strconv.Itoa(ds.Pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("container: open the root of %s: %w", c.ID, err)
	}
	defer unix.Close(root)
	// Resolved as inside the container: no symlink leads out of it.
	mfd, err := unix.Openat2(root, "dev/pts/ptmx", &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("container: open a terminal in %s: %w", c.ID, err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("container: unlock a terminal in %s: %w", c.ID, err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("container: open a terminal's slave in %s: %w", c.ID, errno)
	}
	// Non-blocking, the master joins Go's poller: reads take deadlines.
	if err := unix.SetNonblock(mfd, true); err != nil {
		unix.Close(mfd)
		unix.Close(int(sfd))
		return nil, nil, fmt.Errorf("container: %w", err)
	}
	return os.NewFile(uintptr(mfd), "ptmx"), os.NewFile(sfd, "pts"), nil
}

// Resize sets the window size of the terminal whose master (or slave) is f;
// the kernel signals SIGWINCH to its foreground process group.
func Resize(f *os.File, rows, cols uint16) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = sc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	return errors.Join(err, ierr)
}
