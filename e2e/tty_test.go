//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// ptySession is the CLI run on a terminal this test holds, as a person at
// a keyboard would run it.
type ptySession struct {
	t      *testing.T
	master *os.File
	cmd    *exec.Cmd
	done   chan struct{}
	read   chan struct{} // closed when the terminal's output is all read
	mu     sync.Mutex
	out    strings.Builder
	seen   int // output before this was matched already
}

// openPTY opens a new terminal of the host, rows x cols.
func openPTY(t *testing.T, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the terminal: %v", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		t.Fatalf("open the terminal's slave: %v", errno)
	}
	if err := unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	return m, os.NewFile(sfd, "pts")
}

// onPTY runs the CLI with a terminal as its stdin, stdout, stderr and
// controlling terminal.
func onPTY(t *testing.T, d *Dev, args ...string) *ptySession {
	t.Helper()
	return onPTYEnv(t, d.Bin, []string{"BERTH_ADDR=" + d.Addr}, args...)
}

func onPTYEnv(t *testing.T, bin string, env []string, args ...string) *ptySession {
	t.Helper()
	master, slave := openPTY(t, 30, 90)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "TERM=xterm"), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	s := &ptySession{t: t, master: master, cmd: cmd, done: make(chan struct{}), read: make(chan struct{})}
	go func() {
		defer close(s.read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
		master.Close()
	})
	return s
}

func (s *ptySession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// expect waits until output after the last match matches re.
func (s *ptySession) expect(re string) []string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out := s.output()
		if loc := rx.FindStringSubmatchIndex(out[s.seen:]); loc != nil {
			m := rx.FindStringSubmatch(out[s.seen:])
			s.seen += loc[1]
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("no %q on the terminal after %q", re, s.output()[s.seen:])
	return nil
}

// typeIn types text; Enter is \r, as a keyboard sends it in raw mode.
func (s *ptySession) typeIn(text string) {
	s.t.Helper()
	if _, err := s.master.WriteString(text); err != nil {
		s.t.Fatalf("type %q: %v", text, err)
	}
}

// exit waits for the CLI and returns its exit code.
func (s *ptySession) exit() int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Fatalf("the CLI did not exit; terminal: %q", s.output())
	}
	// The CLI held the only other descriptor of the terminal: its last
	// words are in the master until a read fails.
	select {
	case <-s.read:
	case <-time.After(5 * time.Second):
	}
	return s.cmd.ProcessState.ExitCode()
}

// rawMode reports whether the CLI put its terminal in raw mode.
func (s *ptySession) rawMode() bool {
	tio, err := unix.IoctlGetTermios(int(s.master.Fd()), unix.TCGETS)
	return err == nil && tio.Lflag&unix.ICANON == 0 && tio.Lflag&unix.ECHO == 0
}

// `berth run -it busybox sh` at a terminal: a prompt, a tty in the
// container, a window size that follows the user's terminal, and the
// shell's exit code; the terminal comes back in its own mode.
func TestRunInteractiveTerminal(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	s := onPTY(t, d, "run", "-it", "--rm", "busybox", "sh")
	s.expect(`/ # `)
	if !s.rawMode() {
		t.Error("the CLI did not put the terminal in raw mode")
	}
	s.typeIn("tty; stty size\r")
	s.expect(`/dev/(pts/\d+|console)\r\n`)
	s.expect(`30 90\r\n`)
	// The user's window grows: the CLI gets SIGWINCH and passes it on.
	if err := unix.IoctlSetWinsize(int(s.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 41, Col: 123}); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the resize to reach the container", func() bool {
		s.typeIn("stty size\r")
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(s.output()[s.seen:], "41 123\r\n")
	})
	s.typeIn("echo hi-$((1+2)); exit 7\r")
	s.expect(`hi-3\r\n`)
	if code := s.exit(); code != 7 {
		t.Errorf("berth run -it exited %d, want the shell's 7; terminal: %q", code, s.output())
	}
	if s.rawMode() {
		t.Error("the terminal was left in raw mode")
	}

	// Killed with SIGTERM mid-session, the CLI still gives the terminal
	// back in its own mode.
	s = onPTY(t, d, "run", "-it", "--name", "sig", "busybox", "sh")
	s.expect(`/ # `)
	if !s.rawMode() {
		t.Fatal("the CLI did not put the terminal in raw mode")
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.exit(); code != 128+int(syscall.SIGTERM) {
		t.Errorf("CLI killed with SIGTERM exited %d; terminal %q", code, s.output())
	}
	if s.rawMode() {
		t.Error("SIGTERM left the terminal in raw mode")
	}
	d.MustBerth(t, "rm", "-f", "sig") // a shell as PID 1 ignores SIGTERM: do not wait for a stop
}

// `berth exec -it` into a running container, and `-i` without a terminal.
func TestExecInteractiveTerminal(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	d.MustBerth(t, "run", "-d", "--name", "target", "busybox", "sleep", "300")
	s := onPTY(t, d, "exec", "-it", "target", "sh")
	s.expect(`/ # `)
	s.typeIn("tty; echo ex-$((3*3)); exit 4\r")
	s.expect(`/dev/pts/\d+\r\n`)
	s.expect(`ex-9\r\n`)
	if code := s.exit(); code != 4 {
		t.Errorf("berth exec -it exited %d, want 4; terminal: %q", code, s.output())
	}

	// ^C at `exec -i` (no -t: the terminal stays cooked) ends the command,
	// not the container.
	s = onPTY(t, d, "exec", "-i", "target", "sh", "-c", "echo ready; sleep 300")
	s.expect(`ready`)
	s.typeIn("\x03")
	if code := s.exit(); code != 130 {
		t.Errorf("^C at exec -i: exit %d, want 130; terminal %q", code, s.output())
	}
	if r := d.Berth("exec", "target", "true"); r.Code != 0 {
		t.Errorf("^C at exec -i reached the container: %s", r)
	}

	// attach to a container without a terminal or stdin: its output from
	// now on, and its exit code.
	d.MustBerth(t, "run", "-d", "--name", "plain", "busybox", "sh", "-c",
		"while [ ! -e /tmp/go ]; do echo tick; sleep 0.1; done; echo late-out; exit 5")
	a := onPTY(t, d, "attach", "plain")
	a.expect(`tick`)
	d.MustBerth(t, "exec", "plain", "touch", "/tmp/go")
	a.expect(`late-out`)
	if code := a.exit(); code != 5 {
		t.Errorf("attach to a plain container exited %d, want 5; terminal: %q", code, a.output())
	}

	r := d.BerthIn(strings.NewReader("piped-in\n"), "exec", "-i", "target", "sh", "-c", "cat; echo err-out >&2; exit 3")
	if r.Code != 3 || r.Stdout != "piped-in\n" || r.Stderr != "err-out\n" {
		t.Errorf("exec -i with piped input: %s", r)
	}
	r = d.BerthIn(strings.NewReader("to-run\n"), "run", "-i", "--rm", "busybox", "sh", "-c", "cat; exit 2")
	if r.Code != 2 || r.Stdout != "to-run\n" {
		t.Errorf("run -i with piped input: %s", r)
	}
	r = d.BerthIn(strings.NewReader("x\n"), "run", "-it", "--name", "notty", "busybox", "sh")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not a TTY") {
		t.Errorf("run -it with piped input: %s", r)
	}
	if r := d.Berth("inspect", "notty"); r.Code == 0 {
		t.Errorf("run -it refused for want of a terminal still made a container: %s", r)
	}
}

// The shim keeps the terminal: after kill -9 of `berth dev` and a restart,
// `berth attach` reaches the same shell; ctrl-p ctrl-q detaches and leaves
// it running; a quick `run -it` that is done before the CLI attaches still
// shows its output; start -ai runs an exited one again, attached.
func TestAttachAfterAgentRestart(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	d.MustBerth(t, "run", "-dit", "--name", "keep", "busybox", "sh")
	s := onPTY(t, d, "attach", "keep")
	s.typeIn("X=kept-$((2+3))\r")
	s.typeIn("echo $X\r")
	s.expect(`kept-5\r\n`)
	s.typeIn("\x10\x11")
	if code := s.exit(); code != 0 {
		t.Fatalf("detach: exit %d; terminal %q", code, s.output())
	}
	if !strings.Contains(s.output(), "detached") {
		t.Errorf("no word of the detach: %q", s.output())
	}

	// The agent dies under an open session: the CLI says so and exits.
	s = onPTY(t, d, "attach", "keep")
	s.typeIn("echo before-$X\r")
	s.expect(`before-kept-5\r\n`)
	d.Kill9()
	if code := s.exit(); code == 0 || !strings.Contains(s.output(), "berth attach") {
		t.Errorf("session cut by kill -9 of the agent: exit %d, terminal %q", code, s.output())
	}
	if s.rawMode() {
		t.Error("a cut session left the terminal in raw mode")
	}
	d.Start()
	s = onPTY(t, d, "attach", "keep")
	s.typeIn("echo again-$X\r")
	s.expect(`again-kept-5\r\n`)
	s.typeIn("exit 3\r")
	if code := s.exit(); code != 3 {
		t.Errorf("attach after the restart exited %d, want 3; terminal: %q", code, s.output())
	}

	// start -ai runs the exited container again, attached.
	s = onPTY(t, d, "start", "-ai", "keep")
	s.expect(`/ # `)
	s.typeIn("echo restarted-$((1+1)); exit 6\r")
	s.expect(`restarted-2\r\n`)
	if code := s.exit(); code != 6 {
		t.Errorf("start -ai exited %d, want 6; terminal: %q", code, s.output())
	}

	s = onPTY(t, d, "run", "-it", "--rm", "busybox", "echo", "quick-run")
	if code := s.exit(); code != 0 || !strings.Contains(s.output(), "quick-run\r\n") {
		t.Errorf("a quick run -it: exit %d, terminal %q", code, s.output())
	}
	if r := d.Berth("attach", "nosuch"); r.Code == 0 {
		t.Errorf("attach to an unknown container: %s", r)
	}
}

// Through a follower of a three-server cluster to an agent on another
// host: the upgraded connection passes the follower's proxy both ways.
func TestRunInteractiveTerminalThroughFollower(t *testing.T) {
	fc := startFaultCluster(t, 1)
	leader := fc.waitLeader(30 * time.Second)
	var follower *fcNode
	for _, s := range fc.servers {
		if s != leader {
			follower = s
			break
		}
	}
	env := append([]string{"BERTH_ADDR=" + follower.addr()}, fc.tn.pki.CLIEnv()...)
	s := onPTYEnv(t, fc.tn.bin, env, "run", "-it", "--rm", "busybox", "sh")
	s.expect(`/ # `)
	s.typeIn("hostname; tty; echo via-$((6+1)); exit 9\r")
	s.expect(`/dev/pts/\d+\r\n`)
	s.expect(`via-7\r\n`)
	if code := s.exit(); code != 9 {
		t.Errorf("berth run -it through follower %s exited %d, want 9; terminal: %q", follower.name, code, s.output())
	}
}

// With mutual TLS everywhere, the upgraded stream still passes: CLI to
// server and server to agent stay on HTTP/1.1, where upgrades exist.
func TestRunInteractiveTerminalTLS(t *testing.T) {
	tn := newTestNet(t, 2)
	pki := tn.EnableTLS()
	sh, ah := tn.Hosts[0], tn.Hosts[1]
	tn.Start(sh, "server", append([]string{"server", "--bind", sh.IP, "--node-name", "s1", "--bootstrap-expect", "1",
		"--data-dir", filepath.Join(sh.Dir, "server")}, tn.SecurityArgs("server")...)...)
	tn.Start(ah, "agent", append([]string{"agent", "--bind", ah.IP, "--node-name", "a1", "--data-dir", filepath.Join(ah.Dir, "agent"),
		"--join", sh.IP + ":9472"}, tn.SecurityArgs("agent")...)...)
	addr := "https://" + sh.IP + ":9470"
	Eventually(t, 60*time.Second, "a ready node", func() error {
		if r := tn.CLI(addr, "node", "ls"); r.Code != 0 || !strings.Contains(r.Stdout, "ready") {
			return fmt.Errorf("node ls: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
		}
		return nil
	})
	if r := tn.CLI(addr, "image", "import", "--node", "a1", testutil.BusyboxTar(t), "busybox:latest"); r.Code != 0 {
		t.Fatalf("image import: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	s := onPTYEnv(t, tn.bin, append([]string{"BERTH_ADDR=" + addr}, pki.CLIEnv()...), "run", "-it", "--rm", "busybox", "sh")
	s.expect(`/ # `)
	s.typeIn("echo tls-$((2+2)); exit 8\r")
	s.expect(`tls-4\r\n`)
	if code := s.exit(); code != 8 {
		t.Errorf("berth run -it over TLS exited %d, want 8; terminal: %q", code, s.output())
	}
}
