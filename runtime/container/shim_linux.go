package container

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	_ "github.com/berth-dev/berth/runtime/container/shim" // the shim, in C
	"github.com/berth-dev/berth/runtime/logs"
	"github.com/berth-dev/berth/runtime/reexec"
)

// Names under which the berth binary re-executes itself.
const (
	shimName = "berth-shim"
	initName = "berth-init"
	execName = "berth-exec"
)

func init() {
	reexec.Register(shimName, shimMain)
	reexec.Register(initName, initMain)
	reexec.Register(execName, execMain)
}

// shimMain is the shim of builds without cgo; with cgo, package shim's C
// constructor runs instead, with the same protocol: argv is DIR
// LOG_MAX_SIZE LOG_MAX_FILES CLONE_FLAGS, fd 3 reports to the manager
// ("pid N", then "ok" or "err CODE MSG"), fd 4 says go on (one byte) once
// the manager put init in the cgroup. It then keeps the container's stdio,
// writes its log, waits for it and records its exit in exit.json.
func shimMain() {
	// A shim lives as long as its container: keep it small.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(4 << 20)
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	report := os.NewFile(3, "report")
	goPipe := os.NewFile(4, "go")
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "berth-shim: usage: berth-shim DIR LOG_MAX_SIZE LOG_MAX_FILES CLONE_FLAGS")
		os.Exit(2)
	}
	dir := os.Args[1]
	if err := runShim(dir, report, goPipe); err != nil {
		shimError(dir, err.Error())
		os.Exit(1)
	}
	os.Exit(0)
}

func runShim(dir string, report, goPipe *os.File) error {
	data, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return err
	}
	var spec Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	cfg := data
	lw, err := logs.NewWriter(filepath.Join(dir, logFile), spec.LogMaxSize, spec.LogMaxFiles)
	if err != nil {
		return err
	}
	defer lw.Close()

	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return err
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		return err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	flags := cloneFlags(&spec)
	attr := &os.ProcAttr{
		Env:   []string{},
		Files: []*os.File{devnull, outW, errW, cfgR, statW},
		Sys:   &syscall.SysProcAttr{Cloneflags: flags},
	}
	proc, err := os.StartProcess(reexec.Self(), []string{initName, dir}, attr)
	devnull.Close()
	outW.Close()
	errW.Close()
	cfgR.Close()
	statW.Close()
	if err != nil {
		fmt.Fprintf(report, "err 127 start init: %v\n", err)
		return err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go copyLog(&wg, lw, "stdout", outR)
	go copyLog(&wg, lw, "stderr", errR)

	finish := func(ex *ExitStatus) error {
		d, _ := json.Marshal(ex)
		return writeAtomic(filepath.Join(dir, exitFile), d)
	}
	fmt.Fprintf(report, "pid %d\n", proc.Pid)
	var b [1]byte
	if n, _ := goPipe.Read(b[:]); n != 1 {
		// The manager could not place init in its cgroup (or died).
		proc.Kill()
		proc.Wait()
		goPipe.Close()
		return finish(&ExitStatus{Code: 255, FinishedAt: time.Now().UTC(), Error: "start aborted by the manager"})
	}
	goPipe.Close()
	cfgW.Write(cfg)
	cfgW.Close()
	// init writes "CODE message" if it fails; a successful exec closes
	// the pipe (close-on-exec) with nothing written.
	msg, _ := io.ReadAll(statR)
	statR.Close()
	if len(msg) > 0 {
		ps, _ := proc.Wait()
		wg.Wait()
		err := parseStartError(string(msg)).(*StartError)
		code := err.Code
		if ps != nil && ps.ExitCode() > 0 {
			code = ps.ExitCode()
		}
		ferr := finish(&ExitStatus{Code: code, FinishedAt: time.Now().UTC(), Error: err.Msg})
		fmt.Fprintf(report, "err %d %s\n", code, err.Msg)
		report.Close()
		return ferr
	}
	ds := diskState{Pid: proc.Pid, ShimPid: os.Getpid(), StartedAt: time.Now().UTC()}
	ds.PidStart, _ = procStartTime(proc.Pid)
	ds.ShimStart, _ = procStartTime(ds.ShimPid)
	sd, _ := json.Marshal(&ds)
	if err := writeAtomic(filepath.Join(dir, stateFile), sd); err != nil {
		proc.Kill()
		fmt.Fprintf(report, "err 255 %v\n", err)
	} else {
		fmt.Fprintf(report, "ok\n")
	}
	report.Close()

	ps, err := proc.Wait()
	if err != nil {
		return finish(&ExitStatus{Code: 255, FinishedAt: time.Now().UTC(), Error: "wait: " + err.Error()})
	}
	// When PID 1 of a PID namespace exits, the kernel kills the rest, so
	// the pipes close promptly.
	wg.Wait()
	ex := &ExitStatus{FinishedAt: time.Now().UTC()}
	ws := ps.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		ex.Signal = int(ws.Signal())
		ex.Code = 128 + ex.Signal
	default:
		ex.Code = ws.ExitStatus()
	}
	return finish(ex)
}

func copyLog(wg *sync.WaitGroup, lw *logs.Writer, stream string, r *os.File) {
	defer wg.Done()
	if err := lw.CopyLines(stream, r); err != nil {
		shimError(filepath.Dir(lw.Path()), "log "+stream+": "+err.Error())
		io.Copy(io.Discard, r)
	}
	r.Close()
}

// shimError appends a line to the container's shim.log.
func shimError(dir, msg string) {
	f, err := os.OpenFile(filepath.Join(dir, shimLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	fmt.Fprintln(f, "berth-shim: "+msg)
	f.Close()
}
