package placement

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

func TestScheduleAlgorithmChoice(t *testing.T) {
	tests := []struct {
		name      string
		algorithm string
		want      string
	}{
		{name: "binpack fills the busy node", algorithm: "", want: "busy"},
		{name: "binpack explicit", algorithm: AlgorithmBinpack, want: "busy"},
		{name: "spread picks the idle node", algorithm: AlgorithmSpread, want: "idle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			busy, idle := mkNode("busy", 4000, 8192), mkNode("idle", 4000, 8192)
			other := mkJob("other", 1, 2000, 4096)
			st := newFakeState([]*api.Node{busy, idle}, existing("o1", other, "g", 0, busy))
			p := schedule(t, st, mkJob("web", 1, 500, 256), Options{Algorithm: tc.algorithm})
			if got := placedNodes(p); got[tc.want] != 1 {
				t.Fatalf("placed %v, want on %s", got, tc.want)
			}
		})
	}
}

func TestScheduleAntiAffinitySpreadsCopies(t *testing.T) {
	nodes := []*api.Node{mkNode("n1", 8000, 16384), mkNode("n2", 8000, 16384), mkNode("n3", 8000, 16384)}
	p := schedule(t, newFakeState(nodes), mkJob("web", 3, 500, 256), Options{})
	if got := placedNodes(p); !reflect.DeepEqual(got, map[string]int{"n1": 1, "n2": 1, "n3": 1}) {
		t.Fatalf("placed %v, want one copy per node", got)
	}
	var names []string
	for _, a := range allPlaced(p) {
		names = append(names, a.Name)
		if a.DesiredStatus != api.AllocDesiredRun || a.ClientStatus != api.AllocClientPending || a.Job == nil || a.EvalID != "eval-web" {
			t.Errorf("alloc %s: desired %q client %q job %v eval %q", a.Name, a.DesiredStatus, a.ClientStatus, a.Job != nil, a.EvalID)
		}
	}
	if !reflect.DeepEqual(names, []string{"web.g[0]", "web.g[1]", "web.g[2]"}) {
		t.Errorf("names %v", names)
	}
}

func TestScheduleConstraints(t *testing.T) {
	nodes := []*api.Node{
		mkNode("a", 4000, 8192, withLabel("rack", "r1"), withAttr("kernel.version", "5.4.0")),
		mkNode("b", 4000, 8192, withLabel("rack", "r2"), withAttr("kernel.version", "6.1.0")),
		mkNode("c", 4000, 8192, withLabel("rack", "r1"), withAttr("kernel.version", "6.6.1")),
	}
	tests := []struct {
		name  string
		cons  []api.Constraint
		count int
		want  map[string]int
		fail  string
	}{
		{name: "equal", cons: []api.Constraint{{Attribute: "${node.label.rack}", Operator: "=", Value: "r2"}}, count: 1, want: map[string]int{"b": 1}},
		{name: "not equal", cons: []api.Constraint{{Attribute: "${node.label.rack}", Operator: "!=", Value: "r1"}}, count: 1, want: map[string]int{"b": 1}},
		{name: "regexp", cons: []api.Constraint{{Attribute: "${node.id}", Operator: "regexp", Value: "^[ac]$"}}, count: 2, want: map[string]int{"a": 1, "c": 1}},
		{name: "version", cons: []api.Constraint{{Attribute: "${attr.kernel.version}", Operator: "version", Value: ">= 6.0, < 6.5"}}, count: 1, want: map[string]int{"b": 1}},
		{name: "set_contains", cons: []api.Constraint{{Attribute: "${node.label.rack}", Operator: "set_contains", Value: "r1"}}, count: 2, want: map[string]int{"a": 1, "c": 1}},
		{name: "distinct_hosts", cons: []api.Constraint{{Operator: "distinct_hosts"}}, count: 4, want: map[string]int{"a": 1, "b": 1, "c": 1},
			fail: "1 of 4 copies unplaced: 3 nodes: distinct_hosts: node already runs a copy of the job"},
		{name: "unmet", cons: []api.Constraint{{Attribute: "${node.label.rack}", Operator: "=", Value: "r9"}}, count: 1, want: map[string]int{},
			fail: "1 of 1 copies unplaced: 2 nodes: constraint ${node.label.rack} = r9 not met; 1 node: constraint ${node.label.rack} = r9 not met"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := mkJob("web", tc.count, 100, 64)
			job.Constraints = tc.cons
			p := schedule(t, newFakeState(nodes), job, Options{})
			if got := placedNodes(p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("placed %v, want %v", got, tc.want)
			}
			if tc.fail == "" && len(p.FailedGroups) > 0 {
				t.Errorf("unexpected failure %v", p.FailedGroups)
			}
			if tc.name == "unmet" {
				// Every node is ruled out by the one constraint: the reason is counted once.
				tc.fail = "1 of 1 copies unplaced: 3 nodes: constraint ${node.label.rack} = r9 not met"
			}
			if tc.fail != "" && p.FailedGroups["g"] != tc.fail {
				t.Errorf("failed %q, want %q", p.FailedGroups["g"], tc.fail)
			}
		})
	}
}

func TestScheduleResourceExhaustion(t *testing.T) {
	nodes := []*api.Node{mkNode("a", 4000, 512), mkNode("b", 4000, 512), mkNode("c", 100, 8192, withLabel("rack", "r2"))}
	job := mkJob("big", 2, 500, 1024)
	p := schedule(t, newFakeState(nodes), job, Options{})
	want := "2 of 2 copies unplaced: 2 nodes: memory exhausted; 1 node: cpu exhausted"
	if p.FailedGroups["g"] != want {
		t.Fatalf("failed %q, want %q", p.FailedGroups["g"], want)
	}
	if !p.IsNoOp() {
		t.Errorf("plan with nothing placed is not a no-op: %v", placedNodes(p))
	}
	// Copies placed earlier in the same plan count against the node.
	one := []*api.Node{mkNode("a", 4000, 1000)}
	p = schedule(t, newFakeState(one), mkJob("fill", 3, 100, 400), Options{})
	if n := len(allPlaced(p)); n != 2 || !strings.Contains(p.FailedGroups["g"], "1 of 3 copies unplaced: 1 node: memory exhausted") {
		t.Fatalf("placed %d, failed %q; want 2 placed and memory named", n, p.FailedGroups["g"])
	}
}

func TestScheduleCountChange(t *testing.T) {
	nodes := []*api.Node{mkNode("a", 8000, 16384), mkNode("b", 8000, 16384)}
	st := newFakeState(nodes)
	job := mkJob("web", 3, 100, 64)
	st.apply(schedule(t, st, job, Options{}))
	if n := len(st.liveAllocs("web")); n != 3 {
		t.Fatalf("%d live, want 3", n)
	}
	// Same job again: nothing to do.
	if p := schedule(t, st, job, Options{}); !p.IsNoOp() {
		t.Fatalf("rescheduling an unchanged job is not a no-op: %+v %+v", placedNodes(p), allStopped(p))
	}
	up := mkJob("web", 5, 100, 64)
	up.Version = 2
	p := schedule(t, st, up, Options{})
	var names []string
	for _, a := range allPlaced(p) {
		names = append(names, a.Name)
	}
	if !reflect.DeepEqual(names, []string{"web.g[3]", "web.g[4]"}) || len(allStopped(p)) != 0 {
		t.Fatalf("count 3→5 placed %v stopped %d, want [web.g[3] web.g[4]] and no stops", names, len(allStopped(p)))
	}
	st.apply(p)
	down := mkJob("web", 2, 100, 64)
	down.Version = 3
	p = schedule(t, st, down, Options{})
	names = nil
	for _, a := range allStopped(p) {
		names = append(names, a.Name)
		if a.DesiredStatus != api.AllocDesiredStop || a.DesiredDescription != "count lowered to 2" {
			t.Errorf("stop %s: %q %q", a.Name, a.DesiredStatus, a.DesiredDescription)
		}
	}
	if !reflect.DeepEqual(names, []string{"web.g[2]", "web.g[3]", "web.g[4]"}) || len(allPlaced(p)) != 0 {
		t.Fatalf("count 5→2 stopped %v placed %d, want the three highest indexes", names, len(allPlaced(p)))
	}
}

func TestScheduleTaskChangeReplaces(t *testing.T) {
	node := mkNode("a", 1000, 1024)
	st := newFakeState([]*api.Node{node})
	job := mkJob("web", 2, 400, 400)
	st.apply(schedule(t, st, job, Options{}))
	old := st.liveAllocs("web")

	// Only the count-independent, non-task fields change: no replacement.
	same := mkJob("web", 2, 400, 400)
	same.Version = 2
	same.Priority = 70
	if p := schedule(t, st, same, Options{}); !p.IsNoOp() {
		t.Fatalf("a priority change replaced copies: %v", allStopped(p))
	}

	changed := mkJob("web", 2, 400, 400)
	changed.Groups[0].Tasks[0].Image = "busybox:2"
	changed.Version = 3
	p := schedule(t, st, changed, Options{})
	stops, places := allStopped(p), allPlaced(p)
	if len(stops) != 2 || len(places) != 2 {
		t.Fatalf("stopped %d placed %d, want 2 and 2 (the node has room only if the old copies go)", len(stops), len(places))
	}
	for i := range places {
		if places[i].Name != old[i].Name || places[i].Index != old[i].Index || places[i].PreviousAllocation != old[i].ID {
			t.Errorf("replacement %s (prev %s), want name %s prev %s", places[i].Name, places[i].PreviousAllocation, old[i].Name, old[i].ID)
		}
		if !strings.Contains(stops[i].DesiredDescription, "task spec changed") {
			t.Errorf("stop description %q", stops[i].DesiredDescription)
		}
		if places[i].Job.Groups[0].Tasks[0].Image != "busybox:2" {
			t.Errorf("replacement runs %q", places[i].Job.Groups[0].Tasks[0].Image)
		}
	}
}

func TestScheduleJobStop(t *testing.T) {
	nodes := []*api.Node{mkNode("a", 8000, 16384), mkNode("b", 8000, 16384)}
	st := newFakeState(nodes)
	job := mkJob("web", 4, 100, 64)
	st.apply(schedule(t, st, job, Options{}))
	st.setClient(api.AllocClientComplete, func(a *api.Allocation) bool { return a.Index == 3 })
	stopped := *job
	stopped.Stop = true
	tests := []struct {
		name string
		job  *api.Job
		desc string
	}{
		{name: "stop", job: &stopped, desc: "job stopped"},
		{name: "purged", job: nil, desc: "job removed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Schedule(st, evalFor(job), tc.job, Options{})
			if err != nil {
				t.Fatal(err)
			}
			stops := allStopped(p)
			if len(stops) != 3 || len(allPlaced(p)) != 0 {
				t.Fatalf("stopped %d placed %d, want 3 live copies stopped (the completed one is left)", len(stops), len(allPlaced(p)))
			}
			for _, a := range stops {
				if a.DesiredStatus != api.AllocDesiredStop || a.DesiredDescription != tc.desc {
					t.Errorf("%s: %q %q", a.Name, a.DesiredStatus, a.DesiredDescription)
				}
			}
			if p.Job != tc.job {
				t.Errorf("plan job %v, want %v", p.Job, tc.job)
			}
		})
	}
}

func TestScheduleDownNode(t *testing.T) {
	tests := []struct {
		name       string
		typ        string
		client     string
		wantPlaced int
	}{
		{name: "service running is replaced", typ: api.JobTypeService, client: api.AllocClientRunning, wantPlaced: 1},
		{name: "batch running is replaced", typ: api.JobTypeBatch, client: api.AllocClientRunning, wantPlaced: 1},
		{name: "batch complete is left alone", typ: api.JobTypeBatch, client: api.AllocClientComplete, wantPlaced: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gone, ok := mkNode("gone", 4000, 4096), mkNode("ok", 4000, 4096)
			gone.Status = api.NodeStatusDown
			job := mkJob("j", 1, 100, 64)
			job.Type = tc.typ
			a := existing("old", job, "g", 0, gone)
			a.ClientStatus = tc.client
			p := schedule(t, newFakeState([]*api.Node{gone, ok}, a), job, Options{})
			placed := allPlaced(p)
			if len(placed) != tc.wantPlaced {
				t.Fatalf("placed %d, want %d (failed %v)", len(placed), tc.wantPlaced, p.FailedGroups)
			}
			if tc.wantPlaced == 0 {
				if !p.IsNoOp() {
					t.Errorf("plan not a no-op: stopped %v", allStopped(p))
				}
				return
			}
			if placed[0].NodeID != "ok" || placed[0].PreviousAllocation != "old" || placed[0].Name != "j.g[0]" {
				t.Errorf("replacement on %s prev %q name %s", placed[0].NodeID, placed[0].PreviousAllocation, placed[0].Name)
			}
			stops := p.NodeUpdate["gone"]
			if len(stops) != 1 || stops[0].ClientStatus != api.AllocClientLost || stops[0].DesiredStatus != api.AllocDesiredStop {
				t.Errorf("lost copy not marked: %+v", stops)
			}
		})
	}
}

func TestScheduleDrainMigrates(t *testing.T) {
	for _, typ := range []string{api.JobTypeService, api.JobTypeBatch} {
		t.Run(typ, func(t *testing.T) {
			draining, ok := mkNode("draining", 4000, 4096), mkNode("ok", 4000, 4096)
			draining.Drain = true
			job := mkJob("j", 2, 100, 64)
			job.Type = typ
			st := newFakeState([]*api.Node{draining, ok}, existing("x0", job, "g", 0, draining), existing("x1", job, "g", 1, ok))
			p := schedule(t, st, job, Options{})
			if typ == api.JobTypeBatch {
				if !p.IsNoOp() {
					t.Fatalf("batch copies on a draining node should run to completion: %v %v", allStopped(p), placedNodes(p))
				}
				return
			}
			placed := allPlaced(p)
			if len(placed) != 1 || placed[0].NodeID != "ok" || placed[0].PreviousAllocation != "x0" || placed[0].Index != 0 {
				t.Fatalf("migration %+v", placed)
			}
			if s := p.NodeUpdate["draining"]; len(s) != 1 || s[0].ID != "x0" || !strings.Contains(s[0].DesiredDescription, "draining") {
				t.Fatalf("stop on draining node %+v", s)
			}
		})
	}
}

func TestScheduleRescheduleFailed(t *testing.T) {
	a, b := mkNode("a", 4000, 4096), mkNode("b", 4000, 4096)
	tests := []struct {
		name   string
		typ    string
		chain  int // failed predecessors before the latest
		status string
		policy *api.ReschedulePolicy
		want   bool
	}{
		{name: "policy of 0 never replaces", typ: api.JobTypeBatch, status: api.AllocClientFailed, policy: &api.ReschedulePolicy{Attempts: 0}, want: false},
		{name: "service policy of 0", typ: api.JobTypeService, status: api.AllocClientFailed, policy: &api.ReschedulePolicy{Attempts: 0}, want: false},
		{name: "policy of 3 allows a third", typ: api.JobTypeBatch, chain: 2, status: api.AllocClientFailed, policy: &api.ReschedulePolicy{Attempts: 3}, want: true},
		{name: "policy of 3 refuses a fourth", typ: api.JobTypeBatch, chain: 3, status: api.AllocClientFailed, policy: &api.ReschedulePolicy{Attempts: 3}, want: false},
		{name: "service failed", typ: api.JobTypeService, status: api.AllocClientFailed, want: true},
		{name: "service exited", typ: api.JobTypeService, status: api.AllocClientComplete, want: true},
		{name: "service failed too often", typ: api.JobTypeService, chain: serviceRescheduleLimit, status: api.AllocClientFailed, want: false},
		{name: "batch failed once", typ: api.JobTypeBatch, status: api.AllocClientFailed, want: true},
		{name: "batch failed twice", typ: api.JobTypeBatch, chain: 1, status: api.AllocClientFailed, want: false},
		{name: "batch complete", typ: api.JobTypeBatch, status: api.AllocClientComplete, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := mkJob("j", 1, 100, 64)
			job.Type = tc.typ
			job.Groups[0].Reschedule = tc.policy
			var allocs []*api.Allocation
			prev := ""
			for i := 0; i <= tc.chain; i++ {
				x := existing(fmt.Sprintf("f%02d", i), job, "g", 0, a)
				x.ClientStatus = api.AllocClientFailed
				x.CreateIndex = uint64(10 + i)
				x.PreviousAllocation = prev
				prev = x.ID
				allocs = append(allocs, x)
			}
			allocs[len(allocs)-1].ClientStatus = tc.status
			p := schedule(t, newFakeState([]*api.Node{a, b}, allocs...), job, Options{})
			placed := allPlaced(p)
			if (len(placed) == 1) != tc.want {
				t.Fatalf("placed %d, want replacement=%v", len(placed), tc.want)
			}
			if tc.want && (placed[0].PreviousAllocation != prev || placed[0].NodeID != "b") {
				t.Errorf("replacement prev %q on %s, want prev %q away from a", placed[0].PreviousAllocation, placed[0].NodeID, prev)
			}
		})
	}
}

func TestScheduleSystemJob(t *testing.T) {
	down := mkNode("down", 4000, 4096)
	down.Status = api.NodeStatusDown
	small := mkNode("small", 50, 4096)
	nodes := []*api.Node{mkNode("a", 4000, 4096), mkNode("b", 4000, 4096), mkNode("gpu", 4000, 4096, withLabel("class", "gpu")), down, small}
	job := mkJob("agent", 1, 100, 64)
	job.Type = api.JobTypeSystem
	job.Constraints = []api.Constraint{{Attribute: "${node.label.class}", Operator: "!=", Value: "gpu"}}
	st := newFakeState(nodes)
	p := schedule(t, st, job, Options{})
	if got := placedNodes(p); !reflect.DeepEqual(got, map[string]int{"a": 1, "b": 1}) {
		t.Fatalf("placed %v, want one on a and b", got)
	}
	if got := p.FailedGroups["g"]; got != "1 eligible node could not run a copy: 1 node: cpu exhausted" {
		t.Errorf("failed %q", got)
	}
	st.apply(p)
	if p := schedule(t, st, job, Options{}); !p.IsNoOp() {
		t.Fatalf("second run not a no-op: %v %v", placedNodes(p), allStopped(p))
	}
	// A new node joins; node b starts draining.
	st.nodes = append(st.nodes, mkNode("new", 4000, 4096))
	st.node("b").Drain = true
	p = schedule(t, st, job, Options{})
	if got := placedNodes(p); !reflect.DeepEqual(got, map[string]int{"new": 1}) {
		t.Errorf("placed %v, want one on the new node", got)
	}
	if s := p.NodeUpdate["b"]; len(s) != 1 {
		t.Errorf("draining node's copy not stopped: %v", p.NodeUpdate)
	}
	st.apply(p)
	// Node a goes down: its copy is lost and not replaced elsewhere.
	st.node("a").Status = api.NodeStatusDown
	p = schedule(t, st, job, Options{})
	if s := p.NodeUpdate["a"]; len(s) != 1 || s[0].ClientStatus != api.AllocClientLost || len(allPlaced(p)) != 0 {
		t.Errorf("down node: stops %v placed %v", p.NodeUpdate, placedNodes(p))
	}
	// Task change replaces every copy in place.
	st.node("a").Status = api.NodeStatusReady
	st.node("b").Drain = false
	st.apply(p)
	changed := mkJob("agent", 1, 100, 64)
	changed.Type = api.JobTypeSystem
	changed.Constraints = job.Constraints
	changed.Groups[0].Tasks[0].Env = map[string]string{"A": "1"}
	changed.Version = 2
	p = schedule(t, st, changed, Options{})
	if got := placedNodes(p); !reflect.DeepEqual(got, map[string]int{"a": 1, "b": 1, "new": 1}) {
		t.Errorf("after update placed %v", got)
	}
	if got := len(allStopped(p)); got != 1 {
		t.Errorf("after update stopped %d, want 1 (the copy on new)", got)
	}
}

func TestScheduleStaticPorts(t *testing.T) {
	nodes := []*api.Node{mkNode("a", 8000, 16384), mkNode("b", 8000, 16384)}
	st := newFakeState(nodes)
	web := func(name string) *api.Job {
		j := mkJob(name, 1, 100, 64)
		j.Groups[0].Tasks[0].Ports = []api.Port{{Name: "http", To: 80, Static: 8080}, {Name: "admin", To: 9000}}
		Canonicalize(j)
		return j
	}
	p1 := schedule(t, st, web("one"), Options{})
	st.apply(p1)
	p2 := schedule(t, st, web("two"), Options{})
	st.apply(p2)
	a1, a2 := allPlaced(p1), allPlaced(p2)
	if len(a1) != 1 || len(a2) != 1 || a1[0].NodeID == a2[0].NodeID {
		t.Fatalf("two jobs wanting 8080 placed on %v and %v", placedNodes(p1), placedNodes(p2))
	}
	wantPorts := []api.AllocPort{{Label: "http", Value: 8080, To: 80, Protocol: "tcp"}, {Label: "admin", Value: MinDynamicPort, To: 9000, Protocol: "tcp"}}
	if !reflect.DeepEqual(a1[0].Ports, wantPorts) {
		t.Errorf("ports %+v, want %+v", a1[0].Ports, wantPorts)
	}
	p3 := schedule(t, st, web("three"), Options{})
	if got := p3.FailedGroups["g"]; got != "1 of 1 copies unplaced: 2 nodes: port 8080/tcp in use" {
		t.Errorf("third job: %q", got)
	}
	// Dynamic ports on one node do not collide.
	dyn := mkJob("dyn", 3, 100, 64)
	dyn.Groups[0].Tasks[0].Ports = []api.Port{{To: 80}}
	one := newFakeState([]*api.Node{mkNode("a", 8000, 16384)})
	seen := map[int]bool{}
	for _, a := range allPlaced(schedule(t, one, dyn, Options{})) {
		if seen[a.Ports[0].Value] {
			t.Errorf("dynamic port %d assigned twice", a.Ports[0].Value)
		}
		seen[a.Ports[0].Value] = true
	}
}

func TestScheduleErrors(t *testing.T) {
	st := newFakeState(nil)
	job := mkJob("web", 1, 1, 1)
	if _, err := Schedule(st, nil, job, Options{}); !errors.Is(err, ErrNoEvaluation) {
		t.Errorf("nil eval: %v", err)
	}
	if _, err := Schedule(st, &api.Evaluation{ID: "e", JobID: "other"}, job, Options{}); !errors.Is(err, ErrJobMismatch) {
		t.Errorf("mismatch: %v", err)
	}
	bad := mkJob("web", 1, 1, 1)
	bad.Type = "cron"
	if _, err := Schedule(st, evalFor(bad), bad, Options{}); !errors.Is(err, ErrUnknownJobType) {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := Schedule(panicState{}, evalFor(job), job, Options{}); !errors.Is(err, ErrInternal) {
		t.Errorf("panic: %v", err)
	}
}

type panicState struct{}

func (panicState) Nodes() []*api.Node                    { panic("broken snapshot") }
func (panicState) AllocsByNode(string) []*api.Allocation { return nil }
func (panicState) AllocsByJob(string) []*api.Allocation  { return nil }

func TestScheduleAffinityAndSpread(t *testing.T) {
	var nodes []*api.Node
	for i := 0; i < 6; i++ {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%d", i), 16000, 32768, withLabel("rack", fmt.Sprintf("r%d", i%3))))
	}
	t.Run("affinity", func(t *testing.T) {
		job := mkJob("aff", 2, 100, 64)
		job.Affinities = []api.Affinity{{Attribute: "${node.label.rack}", Operator: "=", Value: "r2", Weight: 100}}
		for _, a := range allPlaced(schedule(t, newFakeState(nodes), job, Options{})) {
			if n := newFakeState(nodes).node(a.NodeID); n.Labels["rack"] != "r2" {
				t.Errorf("%s on rack %s, want r2", a.Name, n.Labels["rack"])
			}
		}
	})
	t.Run("spread", func(t *testing.T) {
		job := mkJob("spr", 6, 100, 64)
		job.Spreads = []api.Spread{{Attribute: "${node.label.rack}", Weight: 100}}
		racks := map[string]int{}
		st := newFakeState(nodes)
		for _, a := range allPlaced(schedule(t, st, job, Options{})) {
			racks[st.node(a.NodeID).Labels["rack"]]++
		}
		if !reflect.DeepEqual(racks, map[string]int{"r0": 2, "r1": 2, "r2": 2}) {
			t.Errorf("racks %v, want 2 per rack", racks)
		}
	})
}

func TestScheduleDeterministic(t *testing.T) {
	build := func() (*fakeState, *api.Job) {
		var nodes []*api.Node
		for i := 0; i < 40; i++ {
			opts := []nodeOpt{withLabel("rack", fmt.Sprintf("r%d", i%4))}
			if i%5 == 0 {
				opts = append(opts, withGPUs("H100", 8, 81920))
			}
			nodes = append(nodes, mkNode(fmt.Sprintf("node-%02d", i), 8000+i*100, 16384, opts...))
		}
		other := mkJob("other", 1, 300, 300)
		var allocs []*api.Allocation
		for i := 0; i < 40; i += 3 {
			allocs = append(allocs, existing(fmt.Sprintf("o%02d", i), other, "g", i, nodes[i]))
		}
		job := mkJob("web", 12, 700, 900)
		job.Groups[0].Tasks[0].Ports = []api.Port{{To: 80}}
		gpu := &api.Group{Name: "train", Count: 3, Tasks: []*api.Task{{Name: "t", Image: "x", Resources: api.Resources{CPU: 100, MemoryMB: 100, GPUs: &api.GPURequest{Count: 2}}}}}
		job.Groups = append(job.Groups, gpu)
		return newFakeState(nodes, allocs...), job
	}
	var first *Plan
	for i := 0; i < 5; i++ {
		st, job := build()
		p := schedule(t, st, job, Options{Now: 42, NewID: counterIDs("det")})
		if first == nil {
			first = p
			if len(allPlaced(p)) != 15 {
				t.Fatalf("placed %d, want 15 (%v)", len(allPlaced(p)), p.FailedGroups)
			}
			continue
		}
		if !reflect.DeepEqual(p, first) {
			t.Fatalf("run %d differs from run 0", i)
		}
	}
}
