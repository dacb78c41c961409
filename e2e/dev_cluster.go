//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
)

// Dev is one `berth dev` process started by a test, with its own data
// directory and loopback ports. The CLI is run against it with BERTH_ADDR.
type Dev struct {
	t       testing.TB
	Bin     string
	DataDir string
	Ports   DevPorts
	Addr    string // http://127.0.0.1:HTTP

	mu     sync.Mutex
	agents []func() // stop the extra agents, after the containers are gone
	cmd    *exec.Cmd
	logf   *os.File
	done   chan struct{}
}

// DevPorts are the listeners of one `berth dev`.
type DevPorts struct{ HTTP, Raft, Gossip, Agent int }

// berthBin returns BERTH_BIN, skipping the test when it is unset or the
// test does not run as root.
func berthBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("BERTH_BIN")
	if bin == "" {
		t.Skip("BERTH_BIN is not set: run the end-to-end tests with `make e2e` or `make test`")
	}
	testutil.RequireRoot(t)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("BERTH_BIN=%s: %v", bin, err)
	}
	return bin
}

// StartDev starts `berth dev` on fresh ports with a fresh data directory
// and waits until its node is ready. Cleanup removes every container's job
// and stops it.
func StartDev(t testing.TB) *Dev {
	t.Helper()
	bin := berthBin(t)
	dir, err := os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	p := freePorts(t, 4)
	d := &Dev{t: t, Bin: bin, DataDir: dir, Ports: DevPorts{HTTP: p[0], Raft: p[1], Gossip: p[2], Agent: p[3]}}
	d.Addr = fmt.Sprintf("http://127.0.0.1:%d", d.Ports.HTTP)
	t.Cleanup(d.cleanup)
	d.Start()
	return d
}

// Start (re)starts the dev process with the same data directory and ports
// and waits until the server answers and a node is ready.
func (d *Dev) Start() {
	d.t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.DataDir, "dev.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	fmt.Fprintf(logf, "---- start %s ----\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(d.Bin, "dev", "--data-dir", d.DataDir,
		"--http-port", fmt.Sprint(d.Ports.HTTP), "--raft-port", fmt.Sprint(d.Ports.Raft),
		"--gossip-port", fmt.Sprint(d.Ports.Gossip), "--agent-port", fmt.Sprint(d.Ports.Agent))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start berth dev: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d.mu.Lock()
	d.cmd, d.logf, d.done = cmd, logf, done
	d.mu.Unlock()
	if err := d.waitReady(60 * time.Second); err != nil {
		d.t.Fatalf("berth dev did not become ready: %v\n%s", err, d.Log())
	}
}

func (d *Dev) waitReady(timeout time.Duration) error {
	c, err := api.NewClient(d.Addr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("berth dev exited")
		default:
		}
		nodes, _, err := c.Nodes().List(nil)
		if err == nil {
			for _, n := range nodes {
				if n.Status == api.NodeStatusReady {
					if _, err := http.Get(fmt.Sprintf("%s/v1/nodes/%s/agent/v1/health", d.Addr, n.ID)); err == nil {
						return nil
					}
				}
			}
			err = fmt.Errorf("no ready node yet (%d nodes)", len(nodes))
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// Kill9 kills the dev process with SIGKILL (containers, in their shims,
// keep running) and waits for it to be gone.
func (d *Dev) Kill9() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop interrupts the dev process (Ctrl-C) and waits up to 20s for it.
func (d *Dev) Stop() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Log returns the dev process's output so far.
func (d *Dev) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.DataDir, "dev.log"))
	const max = 8000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

func (d *Dev) cleanup() {
	// Remove every container's job so the agent stops the containers (they
	// would outlive berth dev otherwise), then stop dev.
	if d.running() {
		res := d.Berth("ps", "-a", "--format", "json")
		var rows []struct {
			JobID string `json:"job_id"`
		}
		if json.Unmarshal([]byte(res.Stdout), &rows) == nil {
			seen := map[string]bool{}
			for _, r := range rows {
				if !seen[r.JobID] {
					seen[r.JobID] = true
					d.Berth("rm", "-f", r.JobID)
				}
			}
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				if r := d.Berth("ps", "-q"); r.Code == 0 && strings.TrimSpace(r.Stdout) == "" {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		if d.t.Failed() {
			d.t.Logf("berth dev log (tail):\n%s", d.Log())
		}
	}
	for _, stop := range d.agents {
		stop()
	}
	if d.running() {
		d.Stop()
	}
	if d.logf != nil {
		d.logf.Close()
	}
	// Best effort: leftover mounts keep some files busy.
	_ = os.RemoveAll(d.DataDir)
}

func (d *Dev) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Result is one CLI run.
type Result struct {
	Stdout, Stderr string
	Code           int
	Elapsed        time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.Code, r.Stdout, r.Stderr)
}

// Berth runs the CLI against this dev server (two minutes at most).
func (d *Dev) Berth(args ...string) Result {
	return d.BerthIn(nil, args...)
}

// BerthIn runs the CLI with stdin.
func (d *Dev) BerthIn(stdin io.Reader, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.Bin, args...)
	cmd.Env = append(os.Environ(), "BERTH_ADDR="+d.Addr)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, stdin
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		r.Code = -1
		r.Stderr += "\n(exec: " + err.Error() + ")"
	}
	return r
}

// MustBerth runs the CLI and fails t unless it exits 0.
func (d *Dev) MustBerth(t testing.TB, args ...string) Result {
	t.Helper()
	r := d.Berth(args...)
	if r.Code != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// Stream starts a long-running CLI command (logs -f, say) whose stdout is
// read line by line from the returned channel; the channel closes when the
// command exits.
func (d *Dev) Stream(t testing.TB, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(d.Bin, args...)
	cmd.Env = append(os.Environ(), "BERTH_ADDR="+d.Addr)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		_ = cmd.Wait()
		pw.Close()
	}()
	go func() {
		defer close(lines)
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := pr.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				if len(buf) > 0 {
					lines <- string(buf)
				}
				return
			}
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, lines
}

// ImportBusybox imports the busybox root filesystem as busybox:latest.
func (d *Dev) ImportBusybox() {
	d.t.Helper()
	tar := testutil.BusyboxTar(d.t)
	d.MustBerth(d.t, "image", "import", tar, "busybox:latest")
}

// Inspect returns the parsed `berth inspect` of one container.
func (d *Dev) Inspect(t testing.TB, ref string) InspectInfo {
	t.Helper()
	r := d.MustBerth(t, "inspect", ref)
	var out []InspectInfo
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect %s: %v\n%s", ref, err, r)
	}
	return out[0]
}

// InspectInfo is the part of `berth inspect` the tests read.
type InspectInfo struct {
	ID        string             `json:"id"`
	Name      string             `json:"name"`
	Node      string             `json:"node"`
	State     api.TaskState      `json:"state"`
	Container *api.ContainerInfo `json:"container"`
}

// WaitFor polls cond every 100ms until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// StartAgent starts a second agent on this machine that joins the dev
// server as node name (own data directory and loopback ports) and waits
// until the server lists it ready. Cleanup stops it.
func (d *Dev) StartAgent(name string) {
	d.t.Helper()
	p := freePorts(d.t, 2)
	dir := filepath.Join(d.DataDir, "agent-"+name)
	logf, err := os.Create(filepath.Join(d.DataDir, "agent-"+name+".log"))
	if err != nil {
		d.t.Fatal(err)
	}
	cmd := exec.Command(d.Bin, "agent", "--data-dir", dir, "--node-name", name,
		"--http-port", fmt.Sprint(p[0]), "--gossip-port", fmt.Sprint(p[1]),
		"--join", fmt.Sprintf("127.0.0.1:%d", d.Ports.Gossip), "--servers", fmt.Sprintf("127.0.0.1:%d", d.Ports.HTTP))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start agent %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// Stopped by dev's cleanup once the containers are removed, so none
	// outlives the test on this agent.
	d.agents = append(d.agents, func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	c, err := api.NewClient(d.Addr)
	if err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n, _, err := c.Nodes().Info(name, nil); err == nil && n.Status == api.NodeStatusReady {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(d.DataDir, "agent-"+name+".log"))
	d.t.Fatalf("agent %s did not become ready:\n%s", name, b)
}
