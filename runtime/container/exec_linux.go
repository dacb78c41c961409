package container

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/container/nsenter" // joins namespaces for berth-exec
	"github.com/berth-dev/berth/runtime/reexec"
)

// Exec runs p inside the running container id: in all its namespaces and
// its cgroup, with its capabilities, rlimits and (unless p says otherwise)
// user and working directory. It returns the process's exit code (128+signal
// when killed). Cancelling ctx kills the process.
func (m *Manager) Exec(ctx context.Context, id string, p *Process, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if !nsenter.Available {
		return -1, fmt.Errorf("%w: exec needs a binary built with cgo", ErrNotSupported)
	}
	if p == nil || len(p.Args) == 0 || p.Args[0] == "" {
		return -1, fmt.Errorf("%w: exec needs a command", ErrInvalidSpec)
	}
	c, err := m.Get(id)
	if err != nil {
		return -1, err
	}
	ds, err := readState(m.dir(c.ID))
	if err != nil || c.State.Status != StatusRunning {
		return -1, fmt.Errorf("%w: %s is %s", ErrNotRunning, c.ID, c.State.Status)
	}
	caps, err := effectiveCaps(c.Spec)
	if err != nil {
		return -1, err
	}
	filter, err := seccompFor(c.Spec, caps)
	if err != nil {
		return -1, err
	}
	cfg := execConfig{
		Args: p.Args, Env: append(append([]string{}, c.Spec.Env...), p.Env...),
		Cwd: p.Cwd, User: p.User, Hostname: c.Spec.Hostname, Caps: caps,
		NoNewPrivileges: c.Spec.NoNewPrivileges, Rlimits: c.Spec.Rlimits, Seccomp: filter.Bytes(),
	}
	if cfg.Cwd == "" {
		cfg.Cwd = c.Spec.Cwd
	}
	if cfg.User == "" {
		cfg.User = c.Spec.User
	}
	data, err := json.Marshal(&cfg)
	if err != nil {
		return -1, err
	}
	// Hold the container's init while joining, so its pid cannot be reused.
	fd, ok, err := pidfd(ds.Pid, ds.PidStart)
	if err != nil {
		return -1, err
	}
	if !ok {
		return -1, fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
	}
	defer unix.Close(fd)

	syncR, syncW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer syncW.Close()
	pidR, pidW, err := os.Pipe()
	if err != nil {
		syncR.Close()
		return -1, err
	}
	defer pidR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		syncR.Close()
		pidW.Close()
		return -1, err
	}
	defer errR.Close()
	self, err := sealedSelf()
	if err != nil {
		return -1, err
	}
	cmd := reexec.Command(execName)
	cmd.Path = self
	cmd.Env = []string{"_BERTH_NSENTER_PID=" + strconv.Itoa(ds.Pid), "GOMAXPROCS=1"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.ExtraFiles = []*os.File{syncR, pidW, errW}
	cmd.WaitDelay = time.Second
	err = cmd.Start()
	syncR.Close()
	pidW.Close()
	errW.Close()
	if err != nil {
		return -1, fmt.Errorf("container: start exec helper: %w", err)
	}
	fail := func(err error) (int, error) {
		cmd.Process.Kill()
		cmd.Wait()
		return -1, err
	}
	if m.cg != nil {
		cg, err := m.cg.Load(c.ID)
		if err != nil {
			return fail(fmt.Errorf("container: exec in %s: cgroup: %w", c.ID, err))
		}
		if err := cg.Add(cmd.Process.Pid); err != nil {
			return fail(fmt.Errorf("container: exec in %s: join cgroup: %w", c.ID, err))
		}
	}
	if _, err := syncW.Write(append([]byte{'g'}, data...)); err != nil {
		return fail(fmt.Errorf("container: exec in %s: send config: %w", c.ID, err))
	}
	syncW.Close()
	line, _ := bufio.NewReader(pidR).ReadString('\n')
	child, _ := strconv.Atoi(strings.TrimSpace(line))
	done := make(chan struct{})
	defer close(done)
	if child > 0 {
		go func() {
			select {
			case <-ctx.Done():
				unix.Kill(child, unix.SIGKILL) //nolint:errcheck
			case <-done:
			}
		}()
	}
	werr := cmd.Wait()
	msg, _ := io.ReadAll(errR)
	if len(msg) > 0 {
		return -1, parseStartError(string(msg))
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	if cmd.ProcessState == nil {
		return -1, fmt.Errorf("container: exec in %s: %w", c.ID, werr)
	}
	return cmd.ProcessState.ExitCode(), nil
}

// execMain runs inside the container, forked by nsenter's constructor: fd
// 3 has the rest of the config, fd 5 takes an error message.
func execMain() {
	runtime.LockOSThread()
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(5)
	status := os.NewFile(5, "status")
	f := os.NewFile(3, "config")
	data, err := io.ReadAll(f)
	f.Close()
	var cfg execConfig
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err == nil {
		err = setRlimits(cfg.Rlimits)
	}
	if err == nil {
		err = finishExec(&cfg)
	}
	code := 127
	var ie *initError
	if errors.As(err, &ie) {
		code = ie.code
	}
	fmt.Fprintf(status, "%d %s", code, err)
	os.Exit(code)
}
