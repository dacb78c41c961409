package gossip

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func startPool(t *testing.T, name string, meta Meta, join ...string) *Pool {
	t.Helper()
	p, err := Start(Config{Name: name, BindAddr: "127.0.0.1", Port: 0, Join: join, Meta: meta, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

func statusOf(p *Pool, name string) string {
	m, ok := p.Lookup(name)
	if !ok {
		return ""
	}
	return m.Status
}

func TestPoolJoinMetaAndFailure(t *testing.T) {
	a := startPool(t, "a", Meta{Role: RoleServer, HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", Datacenter: "dc1", ServerID: "a"})
	b := startPool(t, "b", Meta{Role: RoleServer, HTTPAddr: "127.0.0.1:3", RaftAddr: "127.0.0.1:4", Datacenter: "dc1", ServerID: "b"}, a.Addr())
	c := startPool(t, "c", Meta{Role: RoleAgent, HTTPAddr: "127.0.0.1:5", Datacenter: "dc1", NodeID: "node-c"}, b.Addr())

	for _, p := range []*Pool{a, b, c} {
		p := p
		waitFor(t, 5*time.Second, p.Name()+" to see 3 alive members", func() bool {
			n := 0
			for _, m := range p.Members() {
				if m.Status == StatusAlive {
					n++
				}
			}
			return n == 3
		})
	}
	pc, ok := a.Lookup("c")
	if !ok {
		t.Fatal("a does not know c")
	}
	want := api.Member{Name: "c", Addr: c.Addr(), Role: RoleAgent, Status: StatusAlive, HTTPAddr: "127.0.0.1:5", Datacenter: "dc1"}
	if pc.Member != want {
		t.Fatalf("a sees c as %+v, want %+v", pc.Member, want)
	}
	if pc.Meta.NodeID != "node-c" {
		t.Fatalf("c's node ID = %q, want node-c", pc.Meta.NodeID)
	}
	pb, _ := c.Lookup("b")
	if pb.RaftAddr != "127.0.0.1:4" || pb.Meta.ServerID != "b" {
		t.Fatalf("c sees b as %+v", pb)
	}

	// c dies without leaving: a and b must call it failed within seconds.
	start := time.Now()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Pool{a, b} {
		p := p
		waitFor(t, 6*time.Second, p.Name()+" to see c failed", func() bool { return statusOf(p, "c") == StatusFailed })
	}
	t.Logf("failure detected in %s", time.Since(start))

	// The event stream carries the failure too.
	deadline := time.After(3 * time.Second)
	for {
		select {
		case ev := <-a.Events():
			if ev.Type == EventLeave && ev.Member.Name == "c" {
				if ev.Member.Status != StatusFailed || ev.Meta.NodeID != "node-c" {
					t.Fatalf("leave event for c = %+v", ev)
				}
				goto graceful
			}
		case <-deadline:
			t.Fatal("no leave event for c on a")
		}
	}
graceful:
	// b leaves gracefully: a sees "left", not "failed".
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	_ = b.Shutdown()
	waitFor(t, 5*time.Second, "a to see b left", func() bool { return statusOf(a, "b") == StatusLeft })
}

func TestMetaLimit(t *testing.T) {
	_, err := Start(Config{Name: "x", Meta: Meta{Role: RoleServer, Datacenter: strings.Repeat("d", 600)}})
	if err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("want metadata size error, got %v", err)
	}
	if _, err := Start(Config{}); err != ErrNoName {
		t.Fatalf("want ErrNoName, got %v", err)
	}
}

func TestRetryJoin(t *testing.T) {
	// b is told to join an address where nobody listens yet; it must keep
	// trying and succeed once a appears there.
	a0 := startPool(t, "probe", Meta{Role: RoleServer})
	addr := a0.Addr()
	_ = a0.Shutdown()
	b, err := Start(Config{Name: "b", Join: []string{addr}, Meta: Meta{Role: RoleServer}, RetryJoinInterval: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown() })
	port := addr[strings.LastIndex(addr, ":")+1:]
	var a *Pool
	waitFor(t, 5*time.Second, "port to be reusable", func() bool {
		p, err := Start(Config{Name: "a", Port: atoi(port), Meta: Meta{Role: RoleServer}, Logger: testLogger(t)})
		if err != nil {
			return false
		}
		a = p
		return true
	})
	t.Cleanup(func() { _ = a.Shutdown() })
	waitFor(t, 5*time.Second, "a to see b", func() bool { return statusOf(a, "b") == StatusAlive })
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
