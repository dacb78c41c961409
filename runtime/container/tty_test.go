//go:build linux

package container

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// session collects what an attached shim sends.
type session struct {
	t    *testing.T
	conn net.Conn
	w    *api.FrameWriter
	mu   sync.Mutex
	out  strings.Builder
	errs strings.Builder
	done chan struct{}
}

func attach(t *testing.T, m *Manager, id string) *session {
	t.Helper()
	conn, err := m.Attach(id)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	s := &session{t: t, conn: conn, w: api.NewFrameWriter(conn), done: make(chan struct{})}
	t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(s.done)
		fr := api.NewFrameReader(conn)
		for {
			typ, p, err := fr.Next()
			if err != nil {
				return
			}
			s.mu.Lock()
			if typ == api.FrameStderr {
				s.errs.Write(p)
			} else {
				s.out.Write(p)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *session) send(text string) {
	s.t.Helper()
	if err := s.w.Write(api.FrameStdin, []byte(text)); err != nil {
		s.t.Fatalf("send %q: %v", text, err)
	}
}

func (s *session) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitFor waits until the output matches re.
func (s *session) waitFor(re string) []string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(s.output()); m != nil {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("no %q in the output %q", re, s.output())
	return nil
}

func waitExit(t *testing.T, m *Manager, id string) *ExitStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ex, err := m.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return ex
}

// A container with a terminal: the shell sees a tty in its own /dev/pts,
// a resize reaches `stty size`, output reaches the client (the prompt too,
// printed before it attached) and the log, and the exit code is kept.
func TestTTYAttach(t *testing.T) {
	m := newManager(t)
	spec := testSpec(t, "")
	spec.Args, spec.Tty = []string{"sh"}, true
	start(t, m, spec)
	s := attach(t, m, spec.ID)
	s.waitFor(`/ # `)
	if err := s.w.Resize(37, 101); err != nil {
		t.Fatal(err)
	}
	s.send("tty; stty size; echo hi-$((1+2)); exit 7\n")
	s.waitFor(`hi-3`)
	out := s.output()
	if !regexp.MustCompile(`\n/dev/pts/\d+\r\n`).MatchString(out) {
		t.Errorf("tty printed no /dev/pts/N: %q", out)
	}
	if !strings.Contains(out, "37 101\r\n") {
		t.Errorf("stty size after a resize to 37x101: %q", out)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not close the stream when the container exited")
	}
	if ex := waitExit(t, m, spec.ID); ex.Code != 7 {
		t.Errorf("exit %d (%s), want 7", ex.Code, ex.Error)
	}
	if logged, _ := readLogs(t, m, spec.ID); !strings.Contains(logged, "hi-3\r\n") {
		t.Errorf("log %q lacks the terminal's output", logged)
	}
	if _, err := m.Attach(spec.ID); !errors.Is(err, ErrNotRunning) {
		t.Errorf("attach to an exited container: %v, want ErrNotRunning", err)
	}
}

// Detaching leaves the container running; a new Manager (an agent that
// restarted) attaches again to the terminal the shim kept, and two clients
// both see the output.
func TestTTYReattach(t *testing.T) {
	m := newManager(t)
	spec := testSpec(t, "")
	spec.Args, spec.Tty = []string{"sh"}, true
	start(t, m, spec)
	s := attach(t, m, spec.ID)
	s.send("echo one-$((0+1))\n")
	s.waitFor(`one-1`)
	s.conn.Close()
	<-s.done

	m2, err := NewManager(m.root, m.cg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := attach(t, m2, spec.ID), attach(t, m2, spec.ID)
	time.Sleep(50 * time.Millisecond) // both are clients before the output
	a.send("echo two-$((1+1)); exit 3\n")
	a.waitFor(`two-2`)
	b.waitFor(`two-2`)
	if ex := waitExit(t, m2, spec.ID); ex.Code != 3 {
		t.Errorf("exit %d (%s), want 3", ex.Code, ex.Error)
	}
}

// An open stdin without a terminal: input arrives through a pipe, closing
// it is an end of file, and stdout and stderr stay apart.
func TestOpenStdinAttach(t *testing.T) {
	m := newManager(t)
	spec := testSpec(t, "cat; echo done-$((2+2)) >&2")
	spec.OpenStdin = true
	start(t, m, spec)
	s := attach(t, m, spec.ID)
	s.send("hello\n")
	s.waitFor(`hello\n`)
	if err := s.w.Write(api.FrameCloseStdin, nil); err != nil {
		t.Fatal(err)
	}
	<-s.done
	s.mu.Lock()
	got := s.errs.String()
	s.mu.Unlock()
	if got != "done-4\n" {
		t.Errorf("stderr %q, want done-4", got)
	}
	if ex := waitExit(t, m, spec.ID); ex.Code != 0 {
		t.Errorf("exit %d (%s)", ex.Code, ex.Error)
	}
}

func TestAttachNeedsTerminalOrStdin(t *testing.T) {
	m := newManager(t)
	spec := testSpec(t, "sleep 30")
	start(t, m, spec)
	if _, err := m.Attach(spec.ID); !errors.Is(err, ErrNotAttachable) {
		t.Errorf("attach: %v, want ErrNotAttachable", err)
	}
}

// Exec on a terminal from OpenPTY: the process has it as its controlling
// terminal in the container's /dev/pts, sized by Resize.
func TestExecOnPTY(t *testing.T) {
	m := newManager(t)
	spec := testSpec(t, "sleep 30")
	start(t, m, spec)
	master, slave, err := m.OpenPTY(spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := Resize(master, 21, 33); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&out, master) //nolint:errcheck // ends with EIO
	}()
	code, err := m.Exec(context.Background(), spec.ID, &Process{Args: []string{"sh", "-c", "tty; stty size; awk '{print ($7 != 0) ? \"ctty\" : \"none\"}' /proc/self/stat; exit 5"}}, slave, slave, slave)
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	master.SetReadDeadline(time.Now().Add(time.Second))
	<-done
	got := out.String()
	if code != 5 {
		t.Errorf("exit %d, want 5; output %q", code, got)
	}
	if !regexp.MustCompile(`^/dev/pts/\d+\r\n21 33\r\nctty\r\n$`).MatchString(got) {
		t.Errorf("output %q, want /dev/pts/N, 21 33 and a controlling terminal", got)
	}
}

// The terminal belongs to the user the command runs as, and output of a
// command that nobody attached to still reaches the log.
func TestTTYOwnedByUser(t *testing.T) {
	m := newManager(t)
	spec := testSpec(t, `id -u; stat -c %u "$(tty)"`)
	spec.Tty, spec.User = true, "1000"
	start(t, m, spec)
	if ex := waitExit(t, m, spec.ID); ex.Code != 0 {
		t.Fatalf("exit %d (%s)", ex.Code, ex.Error)
	}
	if out, _ := readLogs(t, m, spec.ID); out != "1000\r\n1000\r\n" {
		t.Errorf("uid and terminal owner %q, want 1000 twice", out)
	}
}
