package scheduler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/gossip"
)

func startAgentPool(t *testing.T, s *Server, name, nodeID string) *gossip.Pool {
	t.Helper()
	p, err := gossip.Start(gossip.Config{Name: name, BindAddr: "127.0.0.1", Join: []string{s.GossipAddr()},
		Meta: gossip.Meta{Role: gossip.RoleAgent, Datacenter: "dc1", NodeID: nodeID}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	waitUntil(t, 5*time.Second, name+" alive in the server's pool", func() bool {
		m, ok := s.pool.Lookup(name)
		return ok && m.Status == gossip.StatusAlive
	})
	return p
}

// An agent that fails in gossip is marked down long before its heartbeat
// TTL, and its allocations move; an agent whose gossip member dies but
// that keeps heartbeating (a restart) keeps its node.
func TestGossipFailureMarksNodeDown(t *testing.T) {
	s, c := startLeader(t, func(cfg *Config) { cfg.HeartbeatTTL = 30 * time.Second })
	registerNodes(t, c, simNode("n1", 4000, 8192), simNode("n2", 4000, 8192))
	hb := heartbeat(t, c, 200*time.Millisecond, "n1", "n2")
	p1 := startAgentPool(t, s, "agent-n1", "n1")
	p2 := startAgentPool(t, s, "agent-n2", "n2")

	// n2's agent restarts: its gossip member dies, heartbeats go on.
	_ = p2.Shutdown()
	// n1's agent dies: gossip and heartbeats stop.
	hb.Silence("n1")
	_ = p1.Shutdown()
	start := time.Now()
	waitUntil(t, 8*time.Second, "n1 down", func() bool {
		n, _, err := c.Nodes().Info("n1", nil)
		return err == nil && n.Status == api.NodeStatusDown
	})
	t.Logf("n1 down %s after its agent died (TTL is 30s)", time.Since(start))
	waitUntil(t, 3*time.Second, "n2 seen failed in gossip", func() bool {
		m, _ := s.pool.Lookup("agent-n2")
		return m.Status == gossip.StatusFailed
	})
	time.Sleep(2 * agentFailGrace)
	if n, _, _ := c.Nodes().Info("n2", nil); n.Status != api.NodeStatusReady {
		t.Fatalf("restarting agent's node is %s, want ready (it kept heartbeating)", n.Status)
	}
}

// Gossip can report a live agent failed (its indirect probes may pass
// through a member that is itself cut off). An agent whose HTTP API still
// answers the leader keeps its node, even between heartbeats.
func TestGossipFailureOfAnAnsweringAgentKeepsNode(t *testing.T) {
	s, c := startLeader(t, func(cfg *Config) { cfg.HeartbeatTTL = 30 * time.Second })
	agentAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/health" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"ok":true,"role":"agent"}`))
	}))
	defer agentAPI.Close()
	live, dead := simNode("n1", 4000, 8192), simNode("n2", 4000, 8192)
	live.HTTPAddr = strings.TrimPrefix(agentAPI.URL, "http://")
	dead.HTTPAddr = "127.0.0.1:1" // nothing listens there
	registerNodes(t, c, live, dead)
	hb := heartbeat(t, c, 200*time.Millisecond, "n1", "n2")
	p1 := startAgentPool(t, s, "agent-n1", "n1")
	p2 := startAgentPool(t, s, "agent-n2", "n2")
	hb.Silence("n1")
	hb.Silence("n2")
	_ = p1.Shutdown()
	_ = p2.Shutdown()
	waitUntil(t, 8*time.Second, "n2 down (its agent does not answer)", func() bool {
		n, _, err := c.Nodes().Info("n2", nil)
		return err == nil && n.Status == api.NodeStatusDown
	})
	waitUntil(t, 3*time.Second, "n1 seen failed in gossip", func() bool {
		m, _ := s.pool.Lookup("agent-n1")
		return m.Status == gossip.StatusFailed
	})
	time.Sleep(2 * agentFailGrace)
	if n, _, _ := c.Nodes().Info("n1", nil); n.Status != api.NodeStatusReady {
		t.Fatalf("node of an agent that answers directly is %s, want ready", n.Status)
	}
}
