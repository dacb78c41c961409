package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/logs"
	"github.com/berth-dev/berth/runtime/reexec"
)

// Files in a container's directory.
const (
	configFile = "config.json"
	stateFile  = "state.json"
	exitFile   = "exit.json"
	logFile    = "container.log"
	shimLog    = "shim.log" // the shim's errors, made only when there are some
	planFile   = "init.plan"
	// rootfsDir, in the manager's root, is the one mount point of every
	// container's root: each init mounts its overlay there inside its own
	// mount namespace, so the host sees an empty directory.
	rootfsDir = ".rootfs"
	upperDir  = "upper"
	workDir   = "work"
)

// Manager creates and drives the containers stored under one directory. It
// is safe for use by several goroutines. Every method reads the truth from
// disk and the kernel, so a new Manager (in a new process) picks up the
// containers an earlier one started.
type Manager struct {
	root string
	cg   cgroups.Manager
	mu   sync.Mutex // serialises Create's uniqueness checks
}

// diskState is state.json, written by the shim once the user process runs.
type diskState struct {
	Pid       int       `json:"pid"`
	PidStart  uint64    `json:"pidStart"` // start time in clock ticks, against pid reuse
	ShimPid   int       `json:"shimPid"`
	ShimStart uint64    `json:"shimStart"`
	StartedAt time.Time `json:"startedAt"`
}

// NewManager returns a manager of the containers under root (created if
// missing). cg places containers in cgroups; nil runs them without one.
func NewManager(root string, cg cgroups.Manager) (*Manager, error) {
	if err := os.MkdirAll(filepath.Join(root, rootfsDir), 0o711); err != nil {
		return nil, fmt.Errorf("container: create %s: %w", root, err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("container: %w", err)
	}
	return &Manager{root: abs, cg: cg}, nil
}

func (m *Manager) dir(id string) string { return filepath.Join(m.root, id) }

// Create validates spec, fills in its defaults and prepares the
// container's directory. It copies no files.
func (m *Manager) Create(spec *Spec) (*Container, error) {
	if spec == nil {
		return nil, fmt.Errorf("%w: nil spec", ErrInvalidSpec)
	}
	s := *spec
	if err := s.Validate(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Name != "" {
		if c, err := m.Get(s.Name); err == nil && c.Name == s.Name {
			return nil, fmt.Errorf("%w: name %q is used by %s", ErrExists, s.Name, c.ID)
		}
	}
	dir := m.dir(s.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w: %s", ErrExists, s.ID)
		}
		return nil, fmt.Errorf("container: create %s: %w", dir, err)
	}
	for _, d := range []string{upperDir, workDir} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("container: create %s: %w", d, err)
		}
	}
	if err := prepareUserNS(&s, dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data, err := json.Marshal(&s)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("container: encode spec: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, configFile), data); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Container{ID: s.ID, Name: s.Name, Spec: &s, State: State{Status: StatusCreated}}, nil
}

// writeAtomic writes a file by renaming a temporary one over it. There is
// no fsync: after a host crash every container is gone anyway.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("container: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("container: rename %s: %w", tmp, err)
	}
	return nil
}

// Start runs the container: it spawns the detached shim, which starts the
// container's init, and returns once the user process has been executed,
// or with the reason it could not be (a *StartError).
func (m *Manager) Start(id string) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if c.State.Status != StatusCreated {
		return fmt.Errorf("%w: %s is %s", ErrAlreadyStarted, c.ID, c.State.Status)
	}
	// The shim runs from the sealed copy of the binary, and so do the
	// init it execs (its /proc/self/exe) and everything after.
	self, err := sealedSelf()
	if err != nil {
		return err
	}
	dir := m.dir(c.ID)
	// Only one Start per container, even from several processes.
	lock, err := os.OpenFile(filepath.Join(dir, planFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrAlreadyStarted, c.ID)
		}
		return fmt.Errorf("container: start %s: %w", c.ID, err)
	}
	planData, err := initPlan(c.Spec, dir)
	if err == nil {
		_, err = lock.Write(planData)
	}
	if cerr := lock.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(filepath.Join(dir, planFile)) // let a corrected retry start
		return fmt.Errorf("container: write the init plan of %s: %w", c.ID, err)
	}
	// fd 3 of the shim reports to us; the read end of the go pipe (its
	// fd 4) is handed on to init, which execs the command only after our
	// byte says it is in the cgroup.
	repR, repW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("container: pipe: %w", err)
	}
	defer repR.Close()
	goR, goW, err := os.Pipe()
	if err != nil {
		repW.Close()
		return fmt.Errorf("container: pipe: %w", err)
	}
	defer goW.Close()
	cmd := reexec.Command(shimName, dir, strconv.FormatInt(c.Spec.LogMaxSize, 10),
		strconv.Itoa(c.Spec.LogMaxFiles), strconv.FormatUint(uint64(cloneFlags(c.Spec)), 10))
	cmd.Path = self
	cmd.Env = []string{"GOMAXPROCS=1", "GOGC=200"}
	cmd.ExtraFiles = []*os.File{repW, goR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	repW.Close()
	goR.Close()
	if err != nil {
		return fmt.Errorf("container: start shim: %w", err)
	}
	// The cgroup is made while the shim loads and clones init.
	var cg cgroups.Cgroup
	if m.cg != nil {
		if cg, err = m.cg.Create(c.ID, &c.Spec.Resources); err != nil {
			goW.Close() // init gives up; the shim records the failure
			repR.Close()
			cmd.Wait()
			return fmt.Errorf("container: cgroup for %s: %w", c.ID, err)
		}
	}
	// Reap the shim when it exits while this process lives; Wait works from
	// the disk and pidfds, so nothing else needs this handle.
	go cmd.Wait() //nolint:errcheck

	br := bufio.NewReader(repR)
	line, err := br.ReadString('\n')
	if err != nil {
		return m.shimFailed(dir, "the shim exited before starting init")
	}
	if strings.HasPrefix(line, "err ") {
		return parseStartError(strings.TrimSpace(strings.TrimPrefix(line, "err ")))
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "pid "))
	if err != nil {
		return fmt.Errorf("container: the shim said %q", line)
	}
	if cg != nil {
		if err := cg.Add(pid); err != nil {
			// Closing goW without a byte makes init give up. Init may also
			// have failed already (a missing command), which is the error
			// to report.
			goW.Close()
			if line, rerr := br.ReadString('\n'); rerr == nil && strings.HasPrefix(line, "err ") {
				return parseStartError(strings.TrimSpace(strings.TrimPrefix(line, "err ")))
			}
			return fmt.Errorf("container: add init %d to cgroup %s: %w", pid, c.ID, err)
		}
	}
	// A failed write means init is gone; the report says why.
	goW.Write([]byte{'g'}) //nolint:errcheck
	goW.Close()
	line, err = br.ReadString('\n')
	if err != nil {
		return m.shimFailed(dir, "the shim exited before init started the process")
	}
	line = strings.TrimSpace(line)
	if line == "ok" {
		return nil
	}
	return parseStartError(strings.TrimPrefix(line, "err "))
}

// cloneFlags are the namespaces a container's init is cloned into.
func cloneFlags(s *Spec) uintptr {
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if s.Network == "none" {
		flags |= syscall.CLONE_NEWNET
	}
	return flags
}

func (m *Manager) shimFailed(dir, what string) error {
	msg, _ := os.ReadFile(filepath.Join(dir, shimLog))
	if len(msg) > 0 {
		return fmt.Errorf("container: %s: %s", what, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("container: %s; see %s", what, filepath.Join(dir, shimLog))
}

// parseStartError decodes "CODE message" as sent by init.
func parseStartError(s string) error {
	code, msg, _ := strings.Cut(s, " ")
	n, err := strconv.Atoi(code)
	if err != nil {
		return &StartError{Code: 127, Msg: s}
	}
	return &StartError{Code: n, Msg: msg}
}

// Get finds a container by ID, unique ID prefix, or name.
func (m *Manager) Get(ref string) (*Container, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty reference", ErrNotFound)
	}
	if ValidID(ref) {
		if c, err := m.load(ref); err == nil {
			return c, nil
		}
	}
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	for _, c := range all {
		if c.Name == ref {
			return c, nil
		}
	}
	var match *Container
	for _, c := range all {
		if strings.HasPrefix(c.ID, ref) {
			if match != nil {
				return nil, fmt.Errorf("%w: %q", ErrAmbiguous, ref)
			}
			match = c
		}
	}
	if match == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, ref)
	}
	return match, nil
}

// List returns every container, sorted by ID.
func (m *Manager) List() ([]*Container, error) {
	ents, err := os.ReadDir(m.root)
	if err != nil {
		return nil, fmt.Errorf("container: list %s: %w", m.root, err)
	}
	var out []*Container
	for _, e := range ents {
		if !e.IsDir() || !ValidID(e.Name()) {
			continue
		}
		c, err := m.load(e.Name())
		if err != nil {
			continue // being created or removed
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *Manager) load(id string) (*Container, error) {
	dir := m.dir(id)
	data, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		return nil, fmt.Errorf("container: read config of %s: %w", id, err)
	}
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("container: decode config of %s: %w", id, err)
	}
	c := &Container{ID: s.ID, Name: s.Name, Spec: &s}
	c.State = m.state(dir)
	return c, nil
}

// state derives a container's state from its files and the kernel.
func (m *Manager) state(dir string) State {
	var st State
	ds, err := readState(dir)
	if err != nil {
		st.Status = StatusCreated
		if ex, err := m.readExit(dir); err == nil {
			// Failed to start: init never ran the process.
			st.Status = StatusExited
			st.ExitCode, st.Error, st.FinishedAt = ex.Code, ex.Error, ex.FinishedAt
		}
		return st
	}
	st.Pid, st.ShimPid, st.StartedAt = ds.Pid, ds.ShimPid, ds.StartedAt
	if ex, err := m.readExit(dir); err == nil {
		st.Status = StatusExited
		st.ExitCode, st.Signal, st.OOMKilled, st.FinishedAt, st.Error = ex.Code, ex.Signal, ex.OOMKilled, ex.FinishedAt, ex.Error
		st.Pid = 0
		return st
	}
	if alive(ds.ShimPid, ds.ShimStart) || alive(ds.Pid, ds.PidStart) {
		st.Status = StatusRunning
		return st
	}
	// The shim vanished without recording an exit (killed with SIGKILL).
	st.Status = StatusExited
	st.Pid = 0
	st.ExitCode = 255
	st.Error = "the container's shim died without recording an exit status"
	return st
}

func readState(dir string) (*diskState, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var ds diskState
	if err := json.Unmarshal(data, &ds); err != nil {
		return nil, fmt.Errorf("container: decode %s: %w", stateFile, err)
	}
	return &ds, nil
}

// readExit reads exit.json. OOM kills are counted by the cgroup, which
// outlives the container until Remove, so the manager adds OOMKilled here
// (the shim has no cgroup handle). As with docker, it is set when the
// kernel OOM-killed any process of the container.
func (m *Manager) readExit(dir string) (*ExitStatus, error) {
	data, err := os.ReadFile(filepath.Join(dir, exitFile))
	if err != nil {
		return nil, err
	}
	var ex ExitStatus
	if err := json.Unmarshal(data, &ex); err != nil {
		return nil, fmt.Errorf("container: decode %s: %w", exitFile, err)
	}
	if !ex.OOMKilled && m.cg != nil {
		if cg, err := m.cg.Load(filepath.Base(dir)); err == nil {
			if n, err := cg.OOMKills(); err == nil && n > 0 {
				ex.OOMKilled = true
			}
		}
	}
	return &ex, nil
}

// procStartTime is field 22 of /proc/PID/stat: when the process started,
// in clock ticks since boot. With the pid it names a process uniquely.
func procStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("container: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("container: malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether the process pid that started at start still runs
// (a zombie counts as gone).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	s, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && s == start
}

// pidfd opens a pidfd for pid if it is still the process that started at
// start; ok is false when it is gone.
func pidfd(pid int, start uint64) (fd int, ok bool, err error) {
	fd, err = unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return -1, false, nil
		}
		return -1, false, fmt.Errorf("container: pidfd_open %d: %w", pid, err)
	}
	// The pidfd pins the process: if it is the right one now, it stays so.
	if s, err := procStartTime(pid); err != nil || s != start {
		unix.Close(fd)
		return -1, false, nil
	}
	return fd, true, nil
}

// Wait blocks until the container exits and returns how it ended. It works
// for containers started by another Manager or process.
func (m *Manager) Wait(ctx context.Context, id string) (*ExitStatus, error) {
	c, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	dir := m.dir(c.ID)
	for {
		if ex, err := m.readExit(dir); err == nil {
			return ex, nil
		}
		ds, err := readState(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s was never started", ErrNotRunning, c.ID)
			}
			return nil, err
		}
		fd, ok, err := pidfd(ds.ShimPid, ds.ShimStart)
		if err != nil {
			return nil, err
		}
		if !ok {
			if ex, err := m.readExit(dir); err == nil {
				return ex, nil
			}
			// The shim is gone without an exit record; wait for the
			// container itself, whose status nobody can collect.
			fd, ok, err = pidfd(ds.Pid, ds.PidStart)
			if err != nil {
				return nil, err
			}
			if !ok {
				return &ExitStatus{Code: 255, Error: "the container's shim died without recording an exit status"}, nil
			}
			err = pollFD(ctx, fd)
			unix.Close(fd)
			if err != nil {
				return nil, err
			}
			return &ExitStatus{Code: 255, FinishedAt: time.Now().UTC(), Error: "the container's shim died without recording an exit status"}, nil
		}
		err = pollFD(ctx, fd)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
	}
}

// pollFD waits until fd (a pidfd) is readable, i.e. the process exited.
func pollFD(ctx context.Context, fd int) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		timeout := 100
		if ctx.Done() == nil {
			timeout = -1
		}
		n, err := unix.Poll(fds, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("container: poll: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
}

// Kill sends sig to the container's main process at once.
func (m *Manager) Kill(id string, sig syscall.Signal) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	ds, err := readState(m.dir(c.ID))
	if err != nil || c.State.Status != StatusRunning {
		return fmt.Errorf("%w: %s is %s", ErrNotRunning, c.ID, c.State.Status)
	}
	fd, ok, err := pidfd(ds.Pid, ds.PidStart)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("container: signal %d to %s: %w", sig, c.ID, err)
	}
	return nil
}

// Stop sends the container's StopSignal, waits up to timeout for it to
// exit, then sends SIGKILL, like `docker stop -t`. A negative timeout
// means the spec's StopTimeout. Stopping a stopped container is a no-op.
func (m *Manager) Stop(id string, timeout time.Duration) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if c.State.Status != StatusRunning {
		return nil
	}
	if timeout < 0 {
		timeout = c.Spec.StopTimeout
	}
	sig, err := ParseSignal(c.Spec.StopSignal)
	if err != nil {
		sig = syscall.SIGTERM
	}
	if timeout > 0 {
		if err := m.Kill(c.ID, sig); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, err := m.Wait(ctx, c.ID)
		cancel()
		if err == nil {
			return nil
		}
	}
	if err := m.Kill(c.ID, syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	_, err = m.Wait(context.Background(), c.ID)
	return err
}

// Remove deletes a container: its cgroup, its directory and its logs. A
// running container is refused with ErrRunning unless force is set, which
// kills it first.
func (m *Manager) Remove(id string, force bool) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if c.State.Status == StatusRunning {
		if !force {
			return fmt.Errorf("%w: %s", ErrRunning, c.ID)
		}
		if err := m.Kill(c.ID, syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
		if _, err := m.Wait(context.Background(), c.ID); err != nil {
			return err
		}
	}
	dir := m.dir(c.ID)
	// A shim that lost its container (SIGKILLed manager and container)
	// may linger; make sure nothing of the container runs.
	if ds, err := readState(dir); err == nil {
		for _, p := range [][2]uint64{{uint64(ds.Pid), ds.PidStart}, {uint64(ds.ShimPid), ds.ShimStart}} {
			if fd, ok, _ := pidfd(int(p[0]), p[1]); ok {
				unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) //nolint:errcheck
				pollFD(context.Background(), fd)               //nolint:errcheck
				unix.Close(fd)
			}
		}
	}
	if m.cg != nil {
		if cg, err := m.cg.Load(c.ID); err == nil {
			if err := cg.Delete(); errors.Is(err, cgroups.ErrBusy) {
				if err := cg.Kill(); err != nil {
					return fmt.Errorf("container: kill the processes of %s: %w", c.ID, err)
				}
				err = cg.Delete()
			}
			if err != nil && !errors.Is(err, cgroups.ErrNotFound) {
				return fmt.Errorf("container: delete cgroup of %s: %w", c.ID, err)
			}
		} else if !errors.Is(err, cgroups.ErrNotFound) {
			return fmt.Errorf("container: load cgroup of %s: %w", c.ID, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("container: remove %s: %w", dir, err)
	}
	return nil
}

// Stats returns the container's cgroup usage.
func (m *Manager) Stats(id string) (*cgroups.Stats, error) {
	c, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	if m.cg == nil {
		return nil, fmt.Errorf("container: stats of %s: the manager has no cgroup manager", c.ID)
	}
	cg, err := m.cg.Load(c.ID)
	if err != nil {
		return nil, fmt.Errorf("container: stats of %s: %w", c.ID, err)
	}
	return cg.Stats()
}

// Logs returns the container's log as JSON lines (see package logs; decode
// each line with logs.Decode). With Follow it streams until the container
// has exited and everything is read, or the reader is closed.
func (m *Manager) Logs(id string, opts LogOptions) (io.ReadCloser, error) {
	c, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	dir := m.dir(c.ID)
	return logs.Open(filepath.Join(dir, logFile), c.Spec.LogMaxFiles, logs.Options{
		Tail:   opts.Tail,
		Since:  opts.Since,
		Follow: opts.Follow,
		Done: func() bool {
			return m.state(dir).Status != StatusRunning
		},
	})
}

// lowerDir, in a container's directory, holds a mount point per layer for
// the idmapped layers of a container in a user namespace (mounted only in
// the container's own mount namespace).
const lowerDir = "lower"

// prepareUserNS gives the container's root (the range's first host ID)
// its writable layer and makes the idmapped layers' mount points.
func prepareUserNS(s *Spec, dir string) error {
	u := s.UserNS
	if u == nil {
		return nil
	}
	for _, d := range []string{upperDir, workDir} {
		if err := os.Chown(filepath.Join(dir, d), int(u.HostID), int(u.HostID)); err != nil {
			return fmt.Errorf("container: chown %s to the user namespace's root: %w", d, err)
		}
	}
	for i := range s.Layers {
		if err := os.MkdirAll(filepath.Join(dir, lowerDir, strconv.Itoa(i)), 0o755); err != nil {
			return fmt.Errorf("container: create a layer mount point: %w", err)
		}
	}
	return nil
}
