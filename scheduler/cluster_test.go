package scheduler

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
)

func clusterConfig(t *testing.T, name string, expect int, join ...string) Config {
	cfg := testConfig(t, name)
	cfg.BootstrapExpect = expect
	cfg.Join = join
	return cfg
}

func findLeader(t *testing.T, servers []*Server) *Server {
	t.Helper()
	var leader *Server
	waitUntil(t, 15*time.Second, "a leader", func() bool {
		for _, s := range servers {
			if s.IsLeader() {
				leader = s
				return true
			}
		}
		return false
	})
	return leader
}

func peerIDs(t *testing.T, c *api.Client) []string {
	peers, err := c.Operator().RaftPeers()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range peers {
		ids = append(ids, p.ID)
	}
	sort.Strings(ids)
	return ids
}

// Three servers find each other by gossip and bootstrap with
// --bootstrap-expect 3; writes reach the leader through followers; the
// leader's loss elects a new one with every acknowledged job; a dead
// server is removed with remove-peer and replaced by a new one.
func TestThreeServerCluster(t *testing.T) {
	s1 := startServer(t, clusterConfig(t, "s1", 3))
	s2 := startServer(t, clusterConfig(t, "s2", 3, s1.GossipAddr()))
	s3 := startServer(t, clusterConfig(t, "s3", 3, s2.GossipAddr()))
	servers := []*Server{s1, s2, s3}
	leader := findLeader(t, servers)
	var follower *Server
	for _, s := range servers {
		if s != leader {
			follower = s
			break
		}
	}
	fc := client(t, follower)
	waitUntil(t, 10*time.Second, "3 raft peers on a follower", func() bool { return len(peerIDs(t, fc)) == 3 })

	// A write to a follower is forwarded and committed.
	resp, err := fc.Jobs().Register(simpleJob("web", 2, 100, 64))
	if err != nil {
		t.Fatalf("register through follower: %v", err)
	}
	registerNodes(t, fc, simNode("n1", 4000, 8192))
	hb := heartbeat(t, fc, 100*time.Millisecond, "n1")
	waitLive(t, fc, "web", 2)
	if job, _, err := client(t, leader).Jobs().Info("web", nil); err != nil || job.JobModifyIndex != resp.JobModifyIndex {
		t.Fatalf("leader sees job %+v err %v", job, err)
	}
	members, err := fc.Members()
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, m := range members {
		if m.Leader {
			leaders++
		}
	}
	if len(members) != 3 || leaders != 1 {
		t.Fatalf("members %+v", members)
	}

	// The leader dies: a new one is elected and the job is still there.
	old := leader
	start := time.Now()
	if err := old.Shutdown(); err != nil {
		t.Logf("shutdown of old leader: %v", err)
	}
	var rest []*Server
	for _, s := range servers {
		if s != old {
			rest = append(rest, s)
		}
	}
	leader = findLeader(t, rest)
	t.Logf("new leader %s after %s", leader.cfg.NodeName, time.Since(start))
	lc := client(t, leader)
	job, _, err := lc.Jobs().Info("web", nil)
	if err != nil || job.JobModifyIndex != resp.JobModifyIndex {
		t.Fatalf("job after failover: %+v, %v", job, err)
	}
	// The node keeps heartbeating through the survivors; new writes work.
	hb.Stop()
	var other *Server
	for _, s := range rest {
		if s != leader {
			other = s
		}
	}
	oc := client(t, other)
	heartbeat(t, oc, 100*time.Millisecond, "n1")
	if _, err := oc.Jobs().Register(simpleJob("after", 1, 100, 64)); err != nil {
		t.Fatalf("register after failover: %v", err)
	}
	waitLive(t, oc, "after", 1)
	if got := len(liveAllocs(jobAllocs(t, lc, "web"))); got != 2 {
		t.Fatalf("web has %d live allocations after failover, want 2", got)
	}

	// Replace the dead server: once gossip calls it failed, remove it,
	// then a new one joins.
	waitUntil(t, 10*time.Second, "old leader failed in every survivor's gossip view", func() bool {
		for _, s := range rest {
			if m, ok := s.pool.Lookup(old.cfg.NodeName); !ok || m.Status != "failed" {
				return false
			}
		}
		return true
	})
	if _, err := oc.Do("DELETE", "/v1/operator/raft/peers", map[string][]string{"id": {old.cfg.NodeName}}, nil, nil); err != nil {
		t.Fatalf("remove-peer: %v", err)
	}
	s4 := startServer(t, clusterConfig(t, "s4", 0, leader.GossipAddr()))
	var ids []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		ids = peerIDs(t, lc)
		if len(ids) == 3 && ids[2] == "s4" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("raft peers %v, want the two survivors and s4", ids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range peerIDs(t, lc) {
		if id == old.cfg.NodeName {
			t.Fatalf("removed dead server %s was re-added", id)
		}
	}
	waitUntil(t, 10*time.Second, "s4 has the jobs", func() bool {
		j, _ := s4.raft.State().JobByID(nil, "after")
		return j != nil
	})

	// remove-peer of a live server is refused: the leader would add it
	// back at once. With force it is removed and kept out while it runs;
	// once it stops, its tombstone goes, so a restart would join again.
	_, err = oc.Do("DELETE", "/v1/operator/raft/peers", map[string][]string{"id": {"s4"}}, nil, nil)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(se.Message, "--force") {
		t.Fatalf("remove-peer of a live server: %v, want 409 naming --force", err)
	}
	if _, err := oc.Do("DELETE", "/v1/operator/raft/peers", map[string][]string{"id": {"s4"}, "force": {"true"}}, nil, nil); err != nil {
		t.Fatalf("remove-peer --force: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // the leader reconciles every second
	if ids := peerIDs(t, lc); len(ids) != 2 || slices.Contains(ids, "s4") {
		t.Fatalf("raft peers %v after forced removal of live s4", ids)
	}
	if ts := leader.raft.State().ServerTombstones(); len(ts) != 1 || ts[0].ServerID != "s4" {
		t.Fatalf("tombstones %v", ts)
	}
	if err := s4.Shutdown(); err != nil {
		t.Logf("shutdown s4: %v", err)
	}
	waitUntil(t, 15*time.Second, "s4's tombstone cleared once it stopped", func() bool {
		return len(leader.raft.State().ServerTombstones()) == 0
	})
}

// A follower whose state has not caught up with a node's registration
// finds that node on the leader, so the agent proxy does not answer 404
// for a node the CLI has just seen through a consistent read.
func TestFollowerResolvesNodeOnLeader(t *testing.T) {
	s1 := startServer(t, clusterConfig(t, "s1", 3))
	s2 := startServer(t, clusterConfig(t, "s2", 3, s1.GossipAddr()))
	s3 := startServer(t, clusterConfig(t, "s3", 3, s2.GossipAddr()))
	servers := []*Server{s1, s2, s3}
	leader := findLeader(t, servers)
	var follower *Server
	for _, s := range servers {
		if s != leader {
			follower = s
			break
		}
	}
	n := simNode("fresh", 1000, 1000)
	n.HTTPAddr = "127.0.0.1:1"
	registerNodes(t, client(t, leader), n)

	lagging := func(ref string) (*api.Node, error) {
		return nil, notFound("node %q not found (give its ID, a unique ID prefix, or its name)", ref)
	}
	ctx := context.Background()
	got, err := follower.nodeOrLeader(ctx, "", n.Name, lagging)
	if err != nil {
		t.Fatalf("follower asking the leader: %v", err)
	}
	if got.ID != n.ID || got.HTTPAddr != n.HTTPAddr {
		t.Fatalf("leader answered node %+v, want ID %s at %s", got, n.ID, n.HTTPAddr)
	}
	// A node the leader does not know either stays a 404.
	_, err = follower.nodeOrLeader(ctx, "", "nope", lagging)
	var he *echo.HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusNotFound {
		t.Fatalf("unknown node: %v, want a 404", err)
	}
	// The leader never asks itself.
	if _, err := leader.nodeOrLeader(ctx, "", n.Name, lagging); !errors.As(err, &he) || he.Code != http.StatusNotFound {
		t.Fatalf("leader with a lagging lookup: %v, want its own 404", err)
	}
	// The route end to end through the follower: the node's agent address
	// is dialled (nothing listens there), so the answer is 502, not 404.
	if code, _, body := rawRequest(t, follower, "GET", "/v1/nodes/fresh/agent/version", ""); code != http.StatusBadGateway {
		t.Fatalf("proxy through the follower: %d %s, want 502", code, body)
	}
}
