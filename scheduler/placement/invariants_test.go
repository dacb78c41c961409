package placement

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// snapshotJSON renders everything a State holds, to prove Schedule leaves
// it untouched.
func snapshotJSON(t *testing.T, st *fakeState, job *api.Job) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Nodes  []*api.Node
		Allocs []*api.Allocation
		Job    *api.Job
	}{st.Nodes(), st.sorted(func(*api.Allocation) bool { return true }), job})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestScheduleDoesNotModifyState(t *testing.T) {
	down := mkNode("down", 8000, 8192, withGPUs("H100", 2, 81920))
	down.Status = api.NodeStatusDown
	draining := mkNode("drain", 8000, 8192)
	draining.Drain = true
	nodes := []*api.Node{down, draining, mkNode("a", 2000, 2048, withGPUs("H100", 2, 81920)), mkNode("b", 8000, 8192, withGPUs("H100", 4, 81920))}
	low := mkJob("low", 2, 1500, 1500)
	low.Priority = 10
	job := mkJob("web", 4, 1000, 1000)
	job.Priority = 80
	job.Groups[0].Tasks[0].Ports = []api.Port{{To: 80, Static: 80}}
	job.Groups[0].Tasks[0].Resources.GPUs = &api.GPURequest{Count: 1}
	old := mkJob("web", 4, 1000, 1000)
	old.Groups[0].Tasks[0].Image = "old"
	old.Version = 0
	st := newFakeState(nodes,
		existing("w0", old, "g", 0, down), existing("w1", old, "g", 1, draining), existing("w2", job, "g", 7, nodes[3]),
		existing("l0", low, "g", 0, nodes[2]), existing("l1", low, "g", 1, nodes[3]))
	before := snapshotJSON(t, st, job)
	p := schedule(t, st, job, Options{PreemptionEnabled: true})
	if p.IsNoOp() {
		t.Fatal("expected a plan with changes")
	}
	if after := snapshotJSON(t, st, job); after != before {
		t.Fatal("Schedule modified the state or the job it was given")
	}
}

func TestGangRollbackRestoresPreemptions(t *testing.T) {
	n := mkNode("n", 4000, 4096)
	low := mkJob("low", 1, 3000, 1000)
	low.Priority = 10
	st := newFakeState([]*api.Node{n}, existing("victim", low, "g", 0, n))
	job := mkJob("gang", 3, 2000, 1000) // the third copy never fits
	job.Groups[0].Gang = true
	p := schedule(t, st, job, Options{PreemptionEnabled: true})
	if !p.IsNoOp() {
		t.Fatalf("gang that cannot fit left changes: placed %v preempted %v", placedNodes(p), p.NodePreemptions)
	}
	if !strings.HasPrefix(p.FailedGroups["g"], "gang of 3 copies not placed") {
		t.Errorf("failed %q", p.FailedGroups["g"])
	}
	// Without the gang the first copy evicts the victim, the second fits
	// beside it and the third fails.
	job.Groups[0].Gang = false
	p = schedule(t, st, job, Options{PreemptionEnabled: true})
	if len(allPlaced(p)) != 2 || len(p.NodePreemptions["n"]) != 1 || !strings.HasPrefix(p.FailedGroups["g"], "1 of 3 copies unplaced") {
		t.Errorf("placed %d preempted %v", len(allPlaced(p)), p.NodePreemptions)
	}
}

func TestScheduleDefaultIDs(t *testing.T) {
	nodes := []*api.Node{mkNode("a", 8000, 8192)}
	job := mkJob("web", 2, 100, 100)
	var ids [2][]string
	for i := range ids {
		p, err := Schedule(newFakeState(nodes), evalFor(job), job, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range allPlaced(p) {
			ids[i] = append(ids[i], a.ID)
		}
	}
	if fmt.Sprint(ids[0]) != fmt.Sprint(ids[1]) || fmt.Sprint(ids[0]) != "[eval-web-1 eval-web-2]" {
		t.Errorf("default IDs %v and %v, want [eval-web-1 eval-web-2] twice", ids[0], ids[1])
	}
}
