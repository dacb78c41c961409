//go:build e2e

package e2e

// Several hosts on one machine: each host is a network namespace with a
// veth pair to a bridge that the harness makes in the root namespace, on a
// private /24 of its own. berth processes started "on" a host run inside
// its namespace and bind its address. Traffic stays between these
// namespaces and the root namespace's bridge address.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

// netHost is one simulated host.
type netHost struct {
	Name string
	NS   string // network namespace name
	IP   string
	Dir  string // scratch directory of this host (data dirs, logs)
}

// testNet is a bridge and the hosts attached to it.
type testNet struct {
	t      testing.TB
	bin    string
	bridge string
	Hosts  []*netHost

	mu    sync.Mutex
	procs []*hostProc

	// pki is set by EnableTLS: then every server and agent gets
	// certificates and the CLI presents a CLI certificate.
	pki *PKI
}

// hostProc is a berth process running on a host.
type hostProc struct {
	Host    *netHost
	Args    []string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

func runIP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newTestNet makes n hosts. Everything is removed at cleanup, also when the
// test fails: processes, containers they started, namespaces, links.
func newTestNet(t testing.TB, n int) *testNet {
	t.Helper()
	testutil.RequireRoot(t)
	bin := BerthBin(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 is not installed: apt-get install iproute2")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	tag := hex.EncodeToString(b)
	// A /24 in 10.213.0.0/16 chosen from the tag; the harness owns it.
	subnet := fmt.Sprintf("10.213.%d", int(b[0])%250+1)
	tn := &testNet{t: t, bin: bin, bridge: "bb" + tag}
	// The scratch directory is made before the cleanup is registered, so
	// that it is removed after the cleanup has read the logs in it.
	base := t.TempDir()
	t.Cleanup(tn.cleanup)
	runIP(t, "link", "add", tn.bridge, "type", "bridge")
	runIP(t, "addr", "add", subnet+".1/24", "dev", tn.bridge)
	runIP(t, "link", "set", tn.bridge, "up")
	for i := 0; i < n; i++ {
		h := &netHost{
			Name: fmt.Sprintf("h%d", i+1),
			NS:   fmt.Sprintf("bh%s-%d", tag, i+1),
			IP:   fmt.Sprintf("%s.%d", subnet, i+2),
			Dir:  filepath.Join(base, fmt.Sprintf("h%d", i+1)),
		}
		if err := os.MkdirAll(h.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		veth := fmt.Sprintf("bv%s%d", tag, i+1)
		runIP(t, "netns", "add", h.NS)
		runIP(t, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
		runIP(t, "link", "set", veth, "master", tn.bridge, "up")
		runIP(t, "-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
		runIP(t, "-n", h.NS, "link", "set", "eth0", "up")
		runIP(t, "-n", h.NS, "link", "set", "lo", "up")
		tn.Hosts = append(tn.Hosts, h)
	}
	return tn
}

// Start runs `berth args...` inside host h's namespace.
func (tn *testNet) Start(h *netHost, name string, args ...string) *hostProc {
	tn.t.Helper()
	p := &hostProc{Host: h, Args: args, LogPath: filepath.Join(h.Dir, name+".log")}
	tn.startProc(p)
	tn.mu.Lock()
	tn.procs = append(tn.procs, p)
	tn.mu.Unlock()
	return p
}

func (tn *testNet) startProc(p *hostProc) {
	tn.t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tn.t.Fatal(err)
	}
	// nsenter joins only the network namespace; "ip netns exec" would also
	// remount /sys and hide the cgroup hierarchies from the agent.
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + p.Host.NS, "--", tn.bin}, p.Args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		tn.t.Fatalf("start berth %s on %s: %v", strings.Join(p.Args, " "), p.Host.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
}

// Kill sends SIGKILL to the process and waits for it to exit.
func (tn *testNet) Kill(p *hostProc) {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		tn.t.Fatalf("berth %s on %s did not exit after SIGKILL", strings.Join(p.Args, " "), p.Host.Name)
	}
}

// Restart starts a stopped process again with the same arguments.
func (tn *testNet) Restart(p *hostProc) { tn.t.Helper(); tn.startProc(p) }

// Log is what the process printed so far.
func (p *hostProc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// CLI runs the berth CLI from the root namespace against addr (with the
// CLI certificate after EnableTLS).
func (tn *testNet) CLI(addr string, args ...string) CLIResult {
	tn.t.Helper()
	return RunCLIEnv(tn.t, tn.bin, addr, tn.pki.CLIEnv(), args...)
}

// EnableTLS makes a PKI with `berth tls` for the processes started after
// it: SecurityArgs then names certificates instead of --insecure.
func (tn *testNet) EnableTLS() *PKI {
	tn.t.Helper()
	tn.pki = NewPKI(tn.t, tn.bin)
	return tn.pki
}

// SecurityArgs are the flags a server or agent (role) on this network
// starts with: its certificates after EnableTLS, else --insecure (the
// hosts' addresses are not loopback, and berth refuses them without TLS
// unless told otherwise).
func (tn *testNet) SecurityArgs(role string) []string {
	if tn.pki == nil {
		return []string{"--insecure"}
	}
	return tn.pki.Args(role)
}

// Scheme is the URL scheme of the servers' API on this network.
func (tn *testNet) Scheme() string {
	if tn.pki == nil {
		return "http://"
	}
	return "https://"
}

func (tn *testNet) cleanup() {
	tn.mu.Lock()
	procs := tn.procs
	tn.mu.Unlock()
	for _, p := range procs {
		if p.cmd != nil && p.cmd.Process != nil {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
			}
		}
		if tn.t.Failed() {
			tn.t.Logf("log of berth %s on %s:\n%s", strings.Join(p.Args, " "), p.Host.Name, tailLines(p.Log(), 40))
		}
	}
	// Containers outlive their agents by design: kill what the agents of
	// this test started, through the cgroups named after their IDs.
	for _, h := range tn.Hosts {
		KillContainers(filepath.Join(h.Dir, "*", "containers", "*"))
		_ = exec.Command("ip", "netns", "del", h.NS).Run()
	}
	_ = exec.Command("ip", "link", "del", tn.bridge).Run()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// partitionRules are the iptables rules that cut a host off: everything
// in or out of its link to the bridge is dropped; loopback inside the host
// keeps working.
var partitionRules = [][]string{
	{"INPUT", "-i", "eth0", "-j", "DROP"},
	{"OUTPUT", "-o", "eth0", "-j", "DROP"},
}

func (tn *testNet) iptables(h *netHost, op string, rule []string) error {
	args := append([]string{"--net=/run/netns/" + h.NS, "--", "iptables", "-w", op}, rule...)
	out, err := exec.Command("nsenter", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s %s on %s: %v: %s", op, strings.Join(rule, " "), h.Name, err, out)
	}
	return nil
}

// Partition cuts host h off from every other host and from the root
// namespace, with iptables rules inside h's namespace (so no other
// namespace is touched). Processes on h keep running and can still talk
// to themselves over loopback.
func (tn *testNet) Partition(h *netHost) {
	tn.t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		tn.t.Skip("iptables is not installed: apt-get install iptables")
	}
	for _, r := range partitionRules {
		if err := tn.iptables(h, "-I", r); err != nil {
			tn.t.Fatal(err)
		}
	}
}

// Heal undoes Partition.
func (tn *testNet) Heal(h *netHost) {
	tn.t.Helper()
	for _, r := range partitionRules {
		if err := tn.iptables(h, "-D", r); err != nil {
			tn.t.Fatal(err)
		}
	}
}

// Pause stops the process with SIGSTOP (the whole process group, so it
// answers nothing, like a hung host); Resume continues it.
func (tn *testNet) Pause(p *hostProc) { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP) }

// Resume continues a paused process.
func (tn *testNet) Resume(p *hostProc) { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT) }

// Exited reports whether the process has exited.
func (p *hostProc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to 15s for the process to exit, then
// kills it. It reports whether it exited on SIGTERM.
func (tn *testNet) Stop(p *hostProc) bool {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(15 * time.Second):
		tn.Kill(p)
		return false
	}
}

// CLIOn runs the berth CLI inside host h's namespace against addr, for a
// host that Partition cut off from the root namespace.
func (tn *testNet) CLIOn(h *netHost, addr string, timeout time.Duration, args ...string) CLIResult {
	tn.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.NS, "--", tn.bin}, args...)...)
	cmd.Env = append(append(os.Environ(), api.EnvAddr+"="+addr), tn.pki.CLIEnv()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := CLIResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
		if ctx.Err() != nil {
			res.Code = -1 // killed at the timeout
		}
	default:
		tn.t.Fatalf("run berth %s on %s: %v", strings.Join(args, " "), h.Name, err)
	}
	return res
}
