package scheduler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// A node that stops heartbeating is marked down after its TTL and its
// service allocations are placed on another node.
func TestMissedHeartbeatReplacesAllocs(t *testing.T) {
	s, c := startLeader(t, func(cfg *Config) { cfg.HeartbeatTTL = 500 * time.Millisecond })
	registerNodes(t, c, simNode("n1", 4000, 8192))
	hb := heartbeat(t, c, 100*time.Millisecond, "n1", "n2")
	if _, err := c.Jobs().Register(simpleJob("svc", 2, 500, 256)); err != nil {
		t.Fatal(err)
	}
	waitLive(t, c, "svc", 2)
	registerNodes(t, c, simNode("n2", 4000, 8192))

	start := time.Now()
	hb.Silence("n1")
	waitUntil(t, 5*time.Second, "n1 down", func() bool {
		n, _, err := c.Nodes().Info("n1", nil)
		return err == nil && n.Status == api.NodeStatusDown
	})
	t.Logf("node marked down %s after its last heartbeat", time.Since(start))
	var live []*api.Allocation
	waitUntil(t, 5*time.Second, "allocations replaced on n2", func() bool {
		live = liveAllocs(jobAllocs(t, c, "svc"))
		if len(live) != 2 {
			return false
		}
		for _, a := range live {
			if a.NodeID != "n2" {
				return false
			}
		}
		return true
	})
	t.Logf("replaced %s after the last heartbeat", time.Since(start))
	for _, a := range jobAllocs(t, c, "svc") {
		if a.NodeID == "n1" && a.DesiredStatus == api.AllocDesiredRun {
			t.Fatalf("allocation %s on the down node still desired to run", a.ID)
		}
	}
	checkNoOvercommit(t, s)

	// A heartbeat brings the node back to ready.
	if _, err := c.Nodes().Heartbeat("n1"); err != nil {
		t.Fatal(err)
	}
	n, _, _ := c.Nodes().Info("n1", nil)
	if n.Status != api.NodeStatusReady {
		t.Fatalf("after heartbeat n1 is %s", n.Status)
	}
}

// Draining a node moves its service allocations elsewhere; eligibility
// keeps new ones away.
func TestDrainMovesAllocs(t *testing.T) {
	s, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1", "n2")
	if _, err := c.Jobs().Register(simpleJob("svc", 3, 500, 256)); err != nil {
		t.Fatal(err)
	}
	waitLive(t, c, "svc", 3)
	registerNodes(t, c, simNode("n2", 4000, 8192))
	if _, err := c.Nodes().Drain("name-n1", true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "allocations moved to n2", func() bool {
		live := liveAllocs(jobAllocs(t, c, "svc"))
		if len(live) != 3 {
			return false
		}
		for _, a := range live {
			if a.NodeID != "n2" {
				return false
			}
		}
		return true
	})
	n, _, _ := c.Nodes().Info("n1", nil)
	if !n.Drain || n.Eligibility != api.NodeIneligible {
		t.Fatalf("drained node: drain=%v eligibility=%s", n.Drain, n.Eligibility)
	}
	if _, err := c.Nodes().Eligibility("n1", true); !isStatus(err, 409) {
		t.Fatalf("eligible while draining: %v, want 409", err)
	}
	if _, err := c.Nodes().Drain("n1", false); err != nil {
		t.Fatal(err)
	}
	// n2 made ineligible: a new job goes to n1 only.
	if _, err := c.Nodes().Eligibility("n2", false); err != nil {
		t.Fatal(err)
	}
	// An agent re-registering (say, after a restart) does not undo the
	// operator's choice.
	again := simNode("n2", 4000, 8192)
	again.Eligibility = api.NodeEligible
	registerNodes(t, c, again)
	if n, _, _ := c.Nodes().Info("n2", nil); n.Eligibility != api.NodeIneligible {
		t.Fatalf("re-registration made n2 %s", n.Eligibility)
	}
	if _, err := c.Jobs().Register(simpleJob("other", 2, 100, 64)); err != nil {
		t.Fatal(err)
	}
	for _, a := range waitLive(t, c, "other", 2) {
		if a.NodeID != "n1" {
			t.Fatalf("allocation placed on ineligible node %s", a.NodeID)
		}
	}
	checkNoOvercommit(t, s)
}

// Several jobs submitted at once race for the capacity of one node with
// two workers: the node is never overcommitted, what does not fit is
// blocked with a reason, and it is placed once capacity appears.
func TestConcurrentJobsNeverOvercommit(t *testing.T) {
	s, c := startLeader(t, func(cfg *Config) { cfg.Workers = 4 })
	registerNodes(t, c, simNode("n1", 1000, 4096))
	heartbeat(t, c, 200*time.Millisecond, "n1", "n2")
	const jobs = 6
	var wg sync.WaitGroup
	evalIDs := make([]string, jobs)
	for i := 0; i < jobs; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := c.Jobs().Register(simpleJob("j"+string(rune('a'+i)), 1, 300, 100))
			if err != nil {
				t.Error(err)
				return
			}
			evalIDs[i] = r.EvalID
		}(i)
	}
	wg.Wait()
	var placed, blocked int
	waitUntil(t, 10*time.Second, "every evaluation finished", func() bool {
		placed, blocked = 0, 0
		for _, id := range evalIDs {
			e, _, err := c.Evaluations().Info(id, nil)
			if err != nil {
				return false
			}
			switch e.Status {
			case api.EvalStatusComplete:
				placed++
			case api.EvalStatusBlocked:
				blocked++
				if e.StatusDescription == "" && len(e.FailedTGAllocs) == 0 {
					t.Fatalf("blocked eval %s has no reason", e.ID)
				}
			}
		}
		return placed+blocked == jobs
	})
	checkNoOvercommit(t, s)
	if placed != 3 || blocked != 3 {
		t.Fatalf("placed %d blocked %d, want 3 and 3 (1000 millicores / 300)", placed, blocked)
	}
	// New capacity unblocks the rest.
	registerNodes(t, c, simNode("n2", 1000, 4096))
	waitUntil(t, 10*time.Second, "blocked jobs placed on n2", func() bool {
		n := 0
		for i := 0; i < jobs; i++ {
			n += len(liveAllocs(jobAllocs(t, c, "j"+string(rune('a'+i)))))
		}
		return n == jobs
	})
	checkNoOvercommit(t, s)
}

// A service allocation that fails for good (restart policy exhausted on
// the agent) is replaced.
func TestFailedAllocIsReplaced(t *testing.T) {
	_, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1")
	if _, err := c.Jobs().Register(simpleJob("svc", 1, 100, 64)); err != nil {
		t.Fatal(err)
	}
	first := waitLive(t, c, "svc", 1)[0]
	if _, err := c.Allocations().UpdateStatus([]*api.Allocation{{ID: first.ID, ClientStatus: api.AllocClientFailed,
		ClientDescription: "exit code 1, restarts exhausted"}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "replacement", func() bool {
		live := liveAllocs(jobAllocs(t, c, "svc"))
		return len(live) == 1 && live[0].ID != first.ID
	})
}

func TestShutdownIsClean(t *testing.T) {
	cfg := testConfig(t, "solo")
	s := startServer(t, cfg)
	waitUntil(t, 10*time.Second, "leader", s.IsLeader)
	c := client(t, s)
	ack, err := c.Jobs().Register(simpleJob("kept", 1, 100, 64))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Shutdown() }()
	select {
	case err := <-done:
		if err != nil && !strings.Contains(err.Error(), "closed") {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown hung")
	}
	// Restart on the same data: no new bootstrap, state kept.
	cfg.Logger = testLogger(t)
	s2 := startServer(t, cfg)
	waitUntil(t, 10*time.Second, "leader after restart", s2.IsLeader)
	job, _, err := client(t, s2).Jobs().Info("kept", nil)
	if err != nil || job.JobModifyIndex != ack.JobModifyIndex {
		t.Fatalf("acknowledged job after restart: %+v, %v", job, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, Config{}); err == nil {
		t.Fatal("Run without a data dir succeeded")
	}
}

// A system job runs one copy on every eligible node, including nodes that
// register later.
func TestSystemJobFollowsNodes(t *testing.T) {
	_, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1", "n2")
	job := simpleJob("sys", 0, 100, 64)
	job.Type = api.JobTypeSystem
	if _, err := c.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	waitLive(t, c, "sys", 1)
	registerNodes(t, c, simNode("n2", 4000, 8192))
	live := waitLive(t, c, "sys", 2)
	if live[0].NodeID == live[1].NodeID {
		t.Fatalf("both copies on %s", live[0].NodeID)
	}
}

// A batch job whose allocations all finished reads dead.
func TestBatchJobStatus(t *testing.T) {
	_, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1")
	job := simpleJob("once", 2, 100, 64)
	job.Type = api.JobTypeBatch
	if _, err := c.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	var upd []*api.Allocation
	for _, a := range waitLive(t, c, "once", 2) {
		upd = append(upd, &api.Allocation{ID: a.ID, ClientStatus: api.AllocClientComplete,
			TaskStates: map[string]*api.TaskState{"t": {State: api.TaskStateDead, ExitCode: 0}}})
	}
	if _, err := c.Allocations().UpdateStatus(upd); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "batch job dead", func() bool {
		j, _, err := c.Jobs().Info("once", nil)
		return err == nil && j.Status == api.JobStatusDead
	})
	// Completed batch copies are not replaced.
	time.Sleep(300 * time.Millisecond)
	if n := len(liveAllocs(jobAllocs(t, c, "once"))); n != 0 {
		t.Fatalf("%d batch allocations placed again after completing", n)
	}
}
