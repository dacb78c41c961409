package e2e

// The cluster harness: real `berth server` processes on 127.0.0.1, each with
// its own ports and data directory, that tests can SIGKILL, SIGSTOP,
// SIGCONT and restart. It carries no build tag so that the scheduling
// benchmark (run by `make bench`, without -tags e2e) can use it too.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// EnvBin names the berth binary under test; `make test` sets it.
const EnvBin = "BERTH_BIN"

// BerthBin returns $BERTH_BIN, or skips the test when it is unset.
func BerthBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		t.Skip("BERTH_BIN is not set: run `make test` or `make e2e`, or build with `make build` and set BERTH_BIN=$PWD/bin/berth")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("BERTH_BIN=%s: %v; build it with `make build`", bin, err)
	}
	return bin
}

// Server is one `berth server` process of a Cluster.
type Server struct {
	Name       string
	HTTPPort   int
	RaftPort   int
	GossipPort int
	DataDir    string
	LogPath    string
	// BootstrapExpect is passed as --bootstrap-expect: the cluster size for
	// the first servers, 0 for one added later to join the running cluster.
	BootstrapExpect int

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	paused bool
	pki    *PKI // the cluster's, when it runs with TLS
}

// HTTPAddr is the server's API URL.
func (s *Server) HTTPAddr() string {
	if s.pki != nil {
		return "https://127.0.0.1:" + strconv.Itoa(s.HTTPPort)
	}
	return "http://127.0.0.1:" + strconv.Itoa(s.HTTPPort)
}

// RaftAddr is the server's Raft address, as /v1/status/leader reports it.
func (s *Server) RaftAddr() string { return "127.0.0.1:" + strconv.Itoa(s.RaftPort) }

// Running reports whether the process is alive (paused counts as alive).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Pid is the process ID, or 0 when not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Client returns an API client for this server. Each request is bounded
// by timeout (0: none), so a paused server cannot hang a test.
func (s *Server) Client(timeout time.Duration) *api.Client {
	c, err := api.NewClient(s.HTTPAddr())
	if err != nil {
		panic(err) // the address is built above and always parses
	}
	if s.pki != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.TLSClientConfig = s.pki.clientTLS
		c.SetHTTPClient(&http.Client{Timeout: timeout, Transport: tr})
	} else if timeout > 0 {
		c.SetHTTPClient(&http.Client{Timeout: timeout})
	}
	return c
}

// PooledClient is Client without a timeout whose connection pool keeps up
// to maxIdle connections open, as many agent processes would each keep
// their own (the simulated fleet shares one client).
func (s *Server) PooledClient(maxIdle int) *api.Client {
	c := s.Client(0)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = maxIdle, maxIdle
	if s.pki != nil {
		tr.TLSClientConfig = s.pki.clientTLS
	}
	c.SetHTTPClient(&http.Client{Transport: tr})
	return c
}

// ClusterOptions tune StartCluster.
type ClusterOptions struct {
	// HeartbeatTTL is passed as --heartbeat-ttl when non-zero.
	HeartbeatTTL time.Duration
	// ExtraArgs are appended to every server's command line.
	ExtraArgs []string
	// LogLevel is passed as --log-level (default "info").
	LogLevel string
	// TLS runs the cluster with mutual TLS: a PKI made with `berth tls`,
	// https addresses, and clients that present the CLI certificate.
	TLS bool
}

// Cluster is a set of berth server processes that form one Raft cluster.
type Cluster struct {
	t       testing.TB
	Bin     string
	Servers []*Server
	opts    ClusterOptions
	base    string // holds every server's data directory and log
	// PKI is the cluster's certificates when opts.TLS is set.
	PKI *PKI
}

func (c *Cluster) newServer(ports []int, bootstrapExpect int) *Server {
	name := "s" + strconv.Itoa(len(c.Servers))
	return &Server{
		Name:            name,
		HTTPPort:        ports[0],
		RaftPort:        ports[1],
		GossipPort:      ports[2],
		DataDir:         filepath.Join(c.base, name),
		LogPath:         filepath.Join(c.base, name+".log"),
		BootstrapExpect: bootstrapExpect,
		pki:             c.PKI,
	}
}

// AddServer starts one more server, with an empty data directory and
// --bootstrap-expect 0, that joins the running cluster through gossip (the
// leader adds it to Raft). It does not wait for that.
func (c *Cluster) AddServer() *Server {
	c.t.Helper()
	s := c.newServer(freePorts(c.t, 3), 0)
	c.Servers = append(c.Servers, s)
	c.Start(s)
	return s
}

// freePorts returns n distinct TCP ports that were free a moment ago on
// 127.0.0.1 (and free for UDP too, since gossip uses both).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			ls = append(ls, l) // keep it out of the next round
			continue
		}
		u.Close()
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports
}

// StartCluster starts n servers that expect each other (--bootstrap-expect
// n, each joining all the others' gossip ports) and waits for a leader.
// Everything is killed when the test ends; the servers' logs are printed
// when it failed.
func StartCluster(t testing.TB, n int, opts ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Bin: BerthBin(t), opts: opts}
	if opts.TLS {
		c.PKI = NewPKI(t, c.Bin)
		c.PKI.clientTLS = c.PKI.ClientTLS(t)
	}
	ports := freePorts(t, 3*n)
	base := t.TempDir()
	c.base = base
	for i := 0; i < n; i++ {
		c.Servers = append(c.Servers, c.newServer(ports[3*i:3*i+3], n))
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			c.Kill(s)
		}
		if t.Failed() {
			for _, s := range c.Servers {
				c.dumpLog(s)
			}
		}
	})
	for _, s := range c.Servers {
		c.Start(s)
	}
	c.WaitLeader(30 * time.Second)
	return c
}

func (c *Cluster) dumpLog(s *Server) {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return
	}
	const max = 8000
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	c.t.Logf("---- log of server %s (%s) ----\n%s", s.Name, s.LogPath, b)
}

// Args is the command line a server starts with.
func (c *Cluster) Args(s *Server) []string {
	args := []string{"server",
		"--node-name", s.Name,
		"--data-dir", s.DataDir,
		"--bind", "127.0.0.1",
		"--http-port", strconv.Itoa(s.HTTPPort),
		"--raft-port", strconv.Itoa(s.RaftPort),
		"--gossip-port", strconv.Itoa(s.GossipPort),
		"--bootstrap-expect", strconv.Itoa(s.BootstrapExpect),
	}
	for _, o := range c.Servers {
		if o != s {
			args = append(args, "--join", "127.0.0.1:"+strconv.Itoa(o.GossipPort))
		}
	}
	if c.opts.HeartbeatTTL > 0 {
		args = append(args, "--heartbeat-ttl", c.opts.HeartbeatTTL.String())
	}
	level := c.opts.LogLevel
	if level == "" {
		level = "info"
	}
	args = append(args, "--log-level", level)
	if c.PKI != nil {
		args = append(args, c.PKI.Args("server")...)
	}
	return append(args, c.opts.ExtraArgs...)
}

// Start starts (or restarts) a server process and waits until its HTTP API
// answers.
func (c *Cluster) Start(s *Server) {
	c.t.Helper()
	if s.Running() {
		c.t.Fatalf("server %s is already running", s.Name)
	}
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), c.Bin, strings.Join(c.Args(s), " "))
	cmd := exec.Command(c.Bin, c.Args(s)...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), "BERTH_DATA_DIR="+s.DataDir)
	// Its own process group, so a signal to the test does not reach it
	// and Kill can stop anything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start server %s: %v", s.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.paused = cmd, done, false
	s.mu.Unlock()

	deadline := time.Now().Add(20 * time.Second)
	cl := s.Client(time.Second)
	for {
		select {
		case <-done:
			c.dumpLog(s)
			c.t.Fatalf("server %s exited during start-up: %v", s.Name, cmd.ProcessState)
		default:
		}
		if _, err := cl.Health(); err == nil || !errors.Is(err, api.ErrUnreachable) {
			return
		}
		if time.Now().After(deadline) {
			c.dumpLog(s)
			c.t.Fatalf("server %s: HTTP API on %s did not answer within 20s", s.Name, s.HTTPAddr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) signal(s *Server, sig syscall.Signal) {
	if pid := s.Pid(); pid > 0 && s.Running() {
		_ = syscall.Kill(-pid, sig)
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (c *Cluster) Kill(s *Server) {
	if !s.Running() {
		return
	}
	c.signal(s, syscall.SIGKILL)
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	<-done
}

// Stop sends SIGTERM and waits up to 15s for a clean exit, then kills.
// It returns the process's exit status.
func (c *Cluster) Stop(s *Server) *os.ProcessState {
	if !s.Running() {
		return nil
	}
	c.Resume(s)
	c.signal(s, syscall.SIGTERM)
	s.mu.Lock()
	done, cmd := s.done, s.cmd
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.t.Errorf("server %s did not stop within 15s of SIGTERM; killing it", s.Name)
		c.Kill(s)
	}
	return cmd.ProcessState
}

// Pause freezes a server with SIGSTOP: to its peers it is as good as cut
// off the network, but it keeps its sockets.
func (c *Cluster) Pause(s *Server) {
	c.signal(s, syscall.SIGSTOP)
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
}

// Resume thaws a paused server with SIGCONT.
func (c *Cluster) Resume(s *Server) {
	s.mu.Lock()
	paused := s.paused
	s.paused = false
	s.mu.Unlock()
	if paused {
		c.signal(s, syscall.SIGCONT)
	}
}

func (s *Server) isPaused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// Live returns the servers that are running and not paused.
func (c *Cluster) Live() []*Server {
	var out []*Server
	for _, s := range c.Servers {
		if s.Running() && !s.isPaused() {
			out = append(out, s)
		}
	}
	return out
}

// ByRaftAddr finds the server with a Raft address.
func (c *Cluster) ByRaftAddr(addr string) *Server {
	for _, s := range c.Servers {
		if s.RaftAddr() == addr {
			return s
		}
	}
	return nil
}

// WaitLeader waits until every live server names the same leader, itself
// live, and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) *Server {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		leader, why := c.agreedLeader()
		if leader != nil {
			return leader
		}
		last = why
		if time.Now().After(deadline) {
			c.t.Fatalf("no leader agreed by all live servers within %s: %s", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) agreedLeader() (*Server, string) {
	live := c.Live()
	if len(live) == 0 {
		return nil, "no live servers"
	}
	var addr string
	for _, s := range live {
		l, err := s.Client(2 * time.Second).Status().Leader()
		if err != nil {
			return nil, fmt.Sprintf("%s: %v", s.Name, err)
		}
		if l == "" {
			return nil, s.Name + " knows no leader"
		}
		if addr != "" && l != addr {
			return nil, fmt.Sprintf("servers disagree: %s vs %s", addr, l)
		}
		addr = l
	}
	leader := c.ByRaftAddr(addr)
	if leader == nil {
		return nil, "leader " + addr + " is not one of this cluster's servers"
	}
	if !leader.Running() || leader.isPaused() {
		return nil, "leader " + leader.Name + " is not live"
	}
	return leader, ""
}

// Followers returns the live servers other than leader.
func (c *Cluster) Followers(leader *Server) []*Server {
	var out []*Server
	for _, s := range c.Live() {
		if s != leader {
			out = append(out, s)
		}
	}
	return out
}

// CLIResult is the outcome of one berth command.
type CLIResult struct {
	Stdout, Stderr string
	Code           int
}

// CLI runs the berth binary with BERTH_ADDR pointing at s, with a 60s
// limit, and returns what it printed and its exit status.
func (c *Cluster) CLI(s *Server, args ...string) CLIResult {
	c.t.Helper()
	return RunCLIEnv(c.t, c.Bin, s.HTTPAddr(), c.PKI.CLIEnv(), args...)
}

// RunCLI runs `bin args...` with BERTH_ADDR=addr.
func RunCLI(t testing.TB, bin, addr string, args ...string) CLIResult {
	t.Helper()
	return RunCLIEnv(t, bin, addr, nil, args...)
}

// RunCLIEnv is RunCLI with more environment variables (KEY=VALUE).
func RunCLIEnv(t testing.TB, bin, addr string, env []string, args ...string) CLIResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), api.EnvAddr+"="+addr), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := CLIResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("run berth %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// Eventually retries fn every 100ms until it returns nil or timeout
// passes, then fails the test with fn's last error.
func Eventually(t testing.TB, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RSS returns a process's resident set size in bytes, from
// /proc/PID/status (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, errors.New("no VmRSS line in /proc/" + strconv.Itoa(pid) + "/status")
}

// CPUTime returns the user plus system CPU time a process has used, from
// /proc/PID/stat (in clock ticks of 10ms, Linux's USER_HZ).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/" + strconv.Itoa(pid) + "/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc/" + strconv.Itoa(pid) + "/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unreadable CPU times in /proc/" + strconv.Itoa(pid) + "/stat")
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
