package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/berth-dev/berth/api"
)

const waitTimeout = 15 * time.Second

// waitFor polls cond until it holds; it fails the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeader waits until exactly one of nodes is leader and returns it.
func waitLeader(t *testing.T, nodes ...*Node) *Node {
	t.Helper()
	var leader *Node
	waitFor(t, "a leader", func() bool {
		leader = nil
		count := 0
		for _, n := range nodes {
			if n.IsLeader() {
				leader = n
				count++
			}
		}
		return count == 1
	})
	return leader
}

func hasJob(n *Node, id string) bool {
	j, err := n.State().JobByID(nil, id)
	return err == nil && j != nil
}

func registerJob(t *testing.T, n *Node, id string) uint64 {
	t.Helper()
	idx, err := n.Apply(JobRegisterRequestType, &JobRegisterRequest{Job: testJob(id, 1), Eval: testEval("eval-"+id, id)}, 5*time.Second)
	if err != nil {
		t.Fatalf("register %s on %s: %v", id, n.Addr(), err)
	}
	return idx
}

// inmemCluster runs n servers with their Raft state on real disks and
// raft's in-memory transport between them, so tests can cut the network.
type inmemCluster struct {
	nodes []*Node
	trans []*raft.InmemTransport
}

func newInmemCluster(t *testing.T, n int, bootstrapAll bool) *inmemCluster {
	logger := testLogger(t)
	c := &inmemCluster{}
	for range n {
		_, tr := raft.NewInmemTransport("")
		c.trans = append(c.trans, tr)
	}
	c.heal()
	var servers []raft.Server
	for i, tr := range c.trans {
		id := fmt.Sprintf("s%d", i)
		node, err := Open(Config{NodeID: id, DataDir: t.TempDir(), Transport: tr, Logger: logger.With("server", id)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Shutdown() })
		c.nodes = append(c.nodes, node)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: tr.LocalAddr()})
	}
	if !bootstrapAll {
		servers = servers[:1]
	}
	if err := c.nodes[0].Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	return c
}

// isolate cuts node i off from every other node, both ways.
func (c *inmemCluster) isolate(i int) {
	c.trans[i].DisconnectAll()
	for j, tr := range c.trans {
		if j != i {
			tr.Disconnect(c.trans[i].LocalAddr())
		}
	}
}

// heal connects every pair of nodes.
func (c *inmemCluster) heal() {
	for i, a := range c.trans {
		for j, b := range c.trans {
			if i != j {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
}

func (c *inmemCluster) index(n *Node) int {
	for i, m := range c.nodes {
		if m == n {
			return i
		}
	}
	panic("node not in cluster")
}

func TestClusterElectsAndFailsOver(t *testing.T) {
	c := newInmemCluster(t, 3, true)
	leader := waitLeader(t, c.nodes...)
	for _, n := range c.nodes {
		if n == leader {
			continue
		}
		_, err := n.Apply(JobRegisterRequestType, &JobRegisterRequest{Job: testJob("x", 1)}, time.Second)
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("Apply on a follower: err = %v, want ErrNotLeader", err)
		}
		waitFor(t, "followers to learn the leader", func() bool { return n.LeaderAddr() == leader.Addr() })
	}
	idx := registerJob(t, leader, "web")
	if idx == 0 {
		t.Fatal("Apply returned index 0")
	}
	if err := leader.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitFor(t, "the job to replicate", func() bool { return hasJob(n, "web") })
	}
	peers, err := leader.Peers()
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, p := range peers {
		if p.Leader {
			leaders++
			if p.Address != leader.Addr() {
				t.Fatalf("peer %s marked leader, but the leader is %s", p.Address, leader.Addr())
			}
		}
		if !p.Voter {
			t.Fatalf("peer %s is not a voter", p.ID)
		}
	}
	if len(peers) != 3 || leaders != 1 {
		t.Fatalf("peers %+v", peers)
	}
	if st := leader.Stats()["state"]; st != "Leader" {
		t.Fatalf("stats state = %q", st)
	}

	// Kill the leader; the others elect a new one that still has the job.
	old := c.index(leader)
	start := time.Now()
	if err := leader.Shutdown(); err != nil {
		t.Fatal(err)
	}
	c.isolate(old)
	var rest []*Node
	for i, n := range c.nodes {
		if i != old {
			rest = append(rest, n)
		}
	}
	newLeader := waitLeader(t, rest...)
	t.Logf("failover took %v", time.Since(start))
	if !hasJob(newLeader, "web") {
		t.Fatal("the new leader lost an acknowledged job")
	}
	registerJob(t, newLeader, "after-failover")
	for _, n := range rest {
		waitFor(t, "the post-failover write to replicate", func() bool { return hasJob(n, "after-failover") })
	}
}

func TestMinorityPartitionCannotCommit(t *testing.T) {
	c := newInmemCluster(t, 3, true)
	leader := waitLeader(t, c.nodes...)
	registerJob(t, leader, "before")
	for _, n := range c.nodes {
		waitFor(t, "the first write to replicate", func() bool { return hasJob(n, "before") })
	}

	// Cut the leader off: alone it is a minority.
	old := c.index(leader)
	c.isolate(old)
	_, err := leader.Apply(JobRegisterRequestType, &JobRegisterRequest{Job: testJob("lost", 1)}, 2*time.Second)
	if !errors.Is(err, ErrLeadershipLost) && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) {
		t.Fatalf("Apply in a minority: err = %v, want leadership lost, not leader or timeout", err)
	}
	var majority []*Node
	for i, n := range c.nodes {
		if i != old {
			majority = append(majority, n)
		}
	}
	newLeader := waitLeader(t, majority...)
	registerJob(t, newLeader, "during")
	if leader.IsLeader() {
		t.Fatal("the isolated server still believes it leads")
	}
	if hasJob(leader, "during") {
		t.Fatal("the isolated server saw a write it could not have received")
	}

	c.heal()
	waitFor(t, "the healed server to catch up", func() bool { return hasJob(leader, "during") })
	final := waitLeader(t, c.nodes...)
	registerJob(t, final, "after")
	for _, n := range c.nodes {
		waitFor(t, "every server to apply the last write", func() bool { return hasJob(n, "after") })
		if hasJob(n, "lost") {
			t.Fatalf("server %s applied the write refused in the minority", n.Addr())
		}
	}
	for _, n := range c.nodes[1:] {
		compareStores(t, c.nodes[0].State(), n.State())
	}
}

func TestMembershipChanges(t *testing.T) {
	c := newInmemCluster(t, 3, false) // only s0 is in the configuration
	leader := waitLeader(t, c.nodes[0])
	if leader != c.nodes[0] {
		t.Fatal("the bootstrapped server did not lead")
	}
	registerJob(t, leader, "web")
	if err := c.nodes[1].AddVoter("s2", string(c.trans[2].LocalAddr())); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a non-member: err = %v, want ErrNotLeader", err)
	}
	for i := 1; i < 3; i++ {
		if err := leader.AddVoter(fmt.Sprintf("s%d", i), string(c.trans[i].LocalAddr())); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		waitFor(t, "new servers to receive the state", func() bool { return hasJob(n, "web") })
	}
	if err := c.nodes[2].Bootstrap([]raft.Server{{ID: "s2", Address: c.trans[2].LocalAddr()}}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("Bootstrap of a member: err = %v, want ErrAlreadyBootstrapped", err)
	}
	peers, err := leader.Peers()
	if err != nil || len(peers) != 3 {
		t.Fatalf("peers %+v, %v", peers, err)
	}
	if err := leader.RemoveServer("s2"); err != nil {
		t.Fatal(err)
	}
	peers, err = leader.Peers()
	if err != nil || len(peers) != 2 {
		t.Fatalf("peers after remove %+v, %v", peers, err)
	}
	registerJob(t, leader, "after-remove")
	waitFor(t, "the remaining follower to apply", func() bool { return hasJob(c.nodes[1], "after-remove") })
}

func TestSingleServerBootstrapAndRecover(t *testing.T) {
	logger := testLogger(t)
	dir := t.TempDir()
	open := func(addr string) *Node {
		n, err := Open(Config{NodeID: "solo", DataDir: dir, BindAddr: addr, Bootstrap: true, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		return n
	}
	n := open("127.0.0.1:0")
	select {
	case gained := <-n.LeaderCh():
		if !gained {
			t.Fatal("LeaderCh delivered false first")
		}
	case <-time.After(waitTimeout):
		t.Fatal("a bootstrapped single server did not become leader")
	}
	idx := registerJob(t, n, "web")
	idx2, err := n.Apply(JobDeregisterRequestType, &JobDeregisterRequest{JobID: "nope"}, time.Second)
	if !errors.Is(err, ErrJobNotFound) || idx2 <= idx {
		t.Fatalf("refused write: index %d, err %v", idx2, err)
	}
	// Raft answers the future before it records the applied index, so
	// that index may trail the answer for a moment.
	waitFor(t, "the refused entry counted as applied", func() bool { return n.AppliedIndex() >= idx2 })
	if n.State().LatestIndex() != idx {
		t.Fatalf("applied %d, latest %d: a refused entry changed the state's index", n.AppliedIndex(), n.State().LatestIndex())
	}
	addr := n.Addr()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := n.Apply(JobRegisterRequestType, &JobRegisterRequest{Job: testJob("x", 1)}, time.Second); err == nil {
		t.Fatal("Apply after Shutdown succeeded")
	}
	for _, name := range []string{"raft.db", "snapshots"} {
		if _, err := os.Stat(filepath.Join(dir, "raft", name)); err != nil {
			t.Fatal(err)
		}
	}

	// Bootstrap=true again finds the state and recovers it instead.
	n = open(addr)
	waitLeader(t, n)
	waitFor(t, "the job to be recovered", func() bool { return hasJob(n, "web") })
	if j, _ := n.State().JobByID(nil, "web"); j.CreateIndex != idx {
		t.Fatalf("recovered job has CreateIndex %d, want %d", j.CreateIndex, idx)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no node ID", Config{DataDir: t.TempDir(), BindAddr: "127.0.0.1:0"}},
		{"no data dir", Config{NodeID: "a", BindAddr: "127.0.0.1:0"}},
		{"no bind address", Config{NodeID: "a", DataDir: t.TempDir()}},
		{"unadvertisable address", Config{NodeID: "a", DataDir: t.TempDir(), BindAddr: "0.0.0.0:0"}},
		{"lease above heartbeat", Config{NodeID: "a", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0",
			HeartbeatTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = slog.New(slog.DiscardHandler)
			n, err := Open(tc.cfg)
			if err == nil {
				n.Shutdown()
				t.Fatal("Open accepted a bad config")
			}
			t.Log(err)
		})
	}
}

// TestClusterSurvivesFullRestart runs three servers over real TCP on
// loopback, takes snapshots, stops all three and starts them again from the
// same directories: every acknowledged write must come back.
func TestClusterSurvivesFullRestart(t *testing.T) {
	logger := testLogger(t)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	open := func(i int, addr string) *Node {
		id := fmt.Sprintf("s%d", i)
		n, err := Open(Config{
			NodeID: id, DataDir: dirs[i], BindAddr: addr, Bootstrap: i == 0 && addr != "127.0.0.1:0",
			Logger:            logger.With("server", id),
			SnapshotThreshold: 16, SnapshotInterval: 100 * time.Millisecond, TrailingLogs: 8,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		return n
	}
	var nodes []*Node
	var servers []raft.Server
	for i := range dirs {
		n := open(i, "127.0.0.1:0")
		nodes = append(nodes, n)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("s%d", i)), Address: raft.ServerAddress(n.Addr())})
	}
	if err := nodes[0].Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes...)
	const before, after = 40, 5
	var jobIDs []string
	for i := range before {
		id := fmt.Sprintf("job-%03d", i)
		registerJob(t, leader, id)
		jobIDs = append(jobIDs, id)
	}
	job := testJob("job-000", 1)
	if _, err := leader.Apply(PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{testAlloc("a1", job, "n1")}}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, "every server to take a snapshot", func() bool { return n.Stats()["last_snapshot_index"] != "0" })
	}
	for i := range after {
		id := fmt.Sprintf("late-%d", i)
		registerJob(t, leader, id)
		jobIDs = append(jobIDs, id)
	}
	for _, n := range nodes {
		waitFor(t, "every server to apply every write", func() bool { return hasJob(n, jobIDs[len(jobIDs)-1]) })
	}
	want := persist(t, &FSM{state: leader.State()})
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Addr())
		if err := n.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}

	nodes = nodes[:0]
	for i, addr := range addrs {
		nodes = append(nodes, open(i, addr)) // s0 asks to bootstrap: existing state must win
	}
	leader = waitLeader(t, nodes...)
	for _, n := range nodes {
		waitFor(t, "the state to come back", func() bool {
			for _, id := range jobIDs {
				if !hasJob(n, id) {
					return false
				}
			}
			a, _ := n.State().AllocByID(nil, "a1")
			return a != nil
		})
		if got := persist(t, &FSM{state: n.State()}); string(got) != string(want) {
			t.Fatalf("state after restart differs:\n%s", firstDiff(want, got))
		}
	}
	registerJob(t, leader, "after-restart")
}

func TestOpenRefusesALockedDataDir(t *testing.T) {
	logger := testLogger(t)
	dir := t.TempDir()
	n, err := Open(Config{NodeID: "a", DataDir: dir, BindAddr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	second, err := Open(Config{NodeID: "a", DataDir: dir, BindAddr: "127.0.0.1:0", Logger: logger})
	if err == nil {
		second.Shutdown()
		t.Fatal("a second server opened the same data directory")
	}
	if !strings.Contains(err.Error(), "another berth server") {
		t.Fatalf("error does not say what to do: %v", err)
	}
}
