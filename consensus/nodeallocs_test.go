package consensus

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/berth-dev/berth/api"
)

// checkNodeAllocs compares both per-node lists (the snapshot's radix
// tree and the store's node_allocs rows, both derived) with a walk of the
// whole allocs table.
func checkNodeAllocs(t *testing.T, s *StateStore, nodes []string) {
	t.Helper()
	snap := s.Snapshot()
	all, err := s.Allocs(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		var want []*api.Allocation
		for _, a := range all { // in ID order
			if a.NodeID == n {
				want = append(want, a)
			}
		}
		rows, err := s.AllocsByNode(nil, n)
		if err != nil {
			t.Fatal(err)
		}
		for src, got := range map[string][]*api.Allocation{"snapshot": snap.AllocsByNode(n), "store": rows} {
			if len(got) != len(want) {
				t.Fatalf("node %s: %s lists %d allocations, the allocs table %d", n, src, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("node %s: %s allocation %d is %s (%p), the table has %s (%p)", n, src, i, got[i].ID, got[i], want[i].ID, want[i])
				}
			}
		}
	}
}

func TestSnapshotAllocsByNodeFollowsEveryWrite(t *testing.T) {
	f := NewFSM(testLogger(t))
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := []string{"n1", "n2", "n3", "n4"}
	jobs := []string{"j1", "j2", "j3"}
	idx := uint64(0)
	apply := func(typ MessageType, req any) {
		idx++
		if err := f.ApplyEntry(idx, typ, req); err != nil {
			t.Fatalf("apply %s at %d: %v", typ, idx, err)
		}
	}
	for _, n := range nodes {
		apply(NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode(n)})
	}
	var allocIDs []string
	for step := 0; step < 400; step++ {
		jobID := jobs[rng.IntN(len(jobs))]
		switch op := rng.IntN(10); {
		case op < 5: // place or move allocations
			if getJob(t, f.State(), jobID) == nil {
				apply(JobRegisterRequestType, &JobRegisterRequest{Job: testJob(jobID, 3)})
			}
			job := getJob(t, f.State(), jobID)
			var allocs []*api.Allocation
			for i := 0; i < 1+rng.IntN(4); i++ {
				id := fmt.Sprintf("a%03d", rng.IntN(60))
				if a := getAlloc(t, f.State(), id); a != nil && a.JobID != jobID {
					continue
				}
				allocs = append(allocs, testAlloc(id, job, nodes[rng.IntN(len(nodes))]))
				allocIDs = append(allocIDs, id)
			}
			apply(PlanApplyRequestType, &PlanApplyRequest{Allocs: allocs, EvalID: "e"})
		case op < 8 && len(allocIDs) > 0: // client update
			id := allocIDs[rng.IntN(len(allocIDs))]
			apply(AllocClientUpdateRequestType, &AllocClientUpdateRequest{Allocs: []*api.Allocation{{ID: id, ClientStatus: api.AllocClientRunning}}})
		default: // purge a job
			if getJob(t, f.State(), jobID) != nil {
				apply(JobDeregisterRequestType, &JobDeregisterRequest{JobID: jobID, Purge: true})
			}
		}
		checkNodeAllocs(t, f.State(), nodes)
	}

	restored := NewFSM(testLogger(t))
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, f)))); err != nil {
		t.Fatal(err)
	}
	snap := restored.State().Snapshot()
	for _, n := range nodes {
		want, _ := f.State().AllocsByNode(nil, n)
		got := snap.AllocsByNode(n)
		if len(got) != len(want) {
			t.Fatalf("restored node %s: %d allocations, want %d", n, len(got), len(want))
		}
		for i := range want {
			if got[i].ID != want[i].ID || got[i].ModifyIndex != want[i].ModifyIndex {
				t.Fatalf("restored node %s: allocation %d is %s, want %s", n, i, got[i].ID, want[i].ID)
			}
		}
	}
	checkNodeAllocs(t, restored.State(), nodes)
}
