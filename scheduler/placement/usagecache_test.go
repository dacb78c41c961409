package placement

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// cowState is a State that never changes a list in place: every write
// builds new lists for the nodes and jobs it touches, as the consensus
// state store does. That is what UsageCache relies on.
type cowState struct {
	nodes  []*api.Node
	byNode map[string][]*api.Allocation
	byJob  map[string][]*api.Allocation
}

func (s *cowState) Nodes() []*api.Node                       { return s.nodes }
func (s *cowState) AllocsByNode(id string) []*api.Allocation { return s.byNode[id] }
func (s *cowState) AllocsByJob(id string) []*api.Allocation  { return s.byJob[id] }

// upsert stores a copy of a, replacing the allocation with its ID.
func (s *cowState) upsert(a *api.Allocation) {
	cp := *a
	put := func(m map[string][]*api.Allocation, key string) {
		list := slices.Clone(m[key]) // a new array: readers keep the old one
		i, found := slices.BinarySearchFunc(list, cp.ID, func(x *api.Allocation, id string) int { return strings.Compare(x.ID, id) })
		if found {
			list[i] = &cp
		} else {
			list = slices.Insert(list, i, &cp)
		}
		m[key] = list
	}
	put(s.byNode, cp.NodeID)
	put(s.byJob, cp.JobID)
}

func (s *cowState) apply(p *Plan) {
	for _, m := range []map[string][]*api.Allocation{p.NodeUpdate, p.NodePreemptions, p.NodeAllocation} {
		for _, id := range sortedKeys(m) {
			for _, a := range m[id] {
				s.upsert(a)
			}
		}
	}
}

func sortedKeys(m map[string][]*api.Allocation) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestUsageCacheGivesTheSamePlans runs a sequence of evaluations (new
// jobs, GPU jobs, agents reporting allocations finished, a job update and
// a stop) and schedules each twice on the same state, with and without
// the cache: the plans must be identical, and the cache must be used.
func TestUsageCacheGivesTheSamePlans(t *testing.T) {
	st := &cowState{byNode: map[string][]*api.Allocation{}, byJob: map[string][]*api.Allocation{}}
	for i := 0; i < 60; i++ {
		var opts []nodeOpt
		if i%6 == 0 {
			opts = append(opts, withGPUs("NVIDIA H100 80GB HBM3", 4, 81559))
		}
		st.nodes = append(st.nodes, mkNode(fmt.Sprintf("node-%03d", i), 4000+2000*(i%3), 8192, opts...))
	}
	cache := NewUsageCache(16) // small: generations turn over during the test
	jobs := map[string]*api.Job{}
	schedule := func(step string, job *api.Job) {
		t.Helper()
		ev := evalFor(job)
		ev.ID = "eval-" + step
		without, err := Schedule(st, ev, job, Options{NewID: counterIDs(step)})
		if err != nil {
			t.Fatalf("%s without cache: %v", step, err)
		}
		with, err := Schedule(st, ev, job, Options{NewID: counterIDs(step), Cache: cache})
		if err != nil {
			t.Fatalf("%s with cache: %v", step, err)
		}
		a, _ := json.Marshal(without)
		b, _ := json.Marshal(with)
		if string(a) != string(b) {
			t.Fatalf("%s: plans differ\nwithout cache: %s\nwith cache:    %s", step, a, b)
		}
		st.apply(with)
	}
	for i := 0; i < 40; i++ {
		var job *api.Job
		if i%5 == 4 {
			job = gpuJob(fmt.Sprintf("gpu-%d", i), 3, api.GPURequest{Count: 1 + i%2})
		} else {
			job = mkJob(fmt.Sprintf("job-%d", i), 6, 250*(1+i%4), 256*(1+i%3))
		}
		jobs[job.ID] = job
		schedule(fmt.Sprintf("place-%d", i), job)
		if i%7 == 6 {
			// An agent reports every copy of an earlier job finished:
			// the node lists keep their length and first element, but
			// those copies no longer hold anything.
			for _, a := range st.byJob[fmt.Sprintf("job-%d", i-1)] {
				cp := *a
				cp.ClientStatus = api.AllocClientComplete
				st.upsert(&cp)
			}
		}
	}
	updated := mkJob("job-0", 6, 1500, 1024)
	updated.Version, updated.JobModifyIndex = 2, 2
	schedule("update", updated)
	stopped := *jobs["job-1"]
	stopped.Stop = true
	schedule("stop", &stopped)
	schedule("after-stop", mkJob("late", 10, 500, 512))

	if hits, _ := cache.Stats(); hits == 0 {
		t.Fatal("the cache was never hit")
	}
}

// TestUsageCacheCopiesBeforeChange checks that a plan changes its own
// copy of a cached usage, never the cached one, and that changing a
// shared usage in place is caught.
func TestUsageCacheCopiesBeforeChange(t *testing.T) {
	n := mkNode("n", 8000, 8192)
	job := mkJob("j", 2, 1000, 1000)
	list := []*api.Allocation{existing("a1", job, "g", 0, n)}
	cache := NewUsageCache(0)
	st := &cowState{nodes: []*api.Node{n}, byNode: map[string][]*api.Allocation{n.ID: list}, byJob: map[string][]*api.Allocation{}}
	c := newEvalContext(st, evalFor(job), job, newPlan("e", job), Options{Cache: cache})
	if u := c.usageOf(n); !u.shared || u != cache.get(n, list) {
		t.Fatal("an unchanged node should use the cached usage itself")
	}
	u := c.mutableUsage(n.ID)
	u.add(existing("a2", job, "g", 1, n))
	u.remove(list[0])
	if c.usageOf(n) != u {
		t.Fatal("the plan does not see its own copy")
	}
	again := cache.get(n, list)
	if again.cpu != 1000 || len(again.allocs) != 1 || again.allocs[0].ID != "a1" {
		t.Fatalf("cached usage changed: cpu %d, allocs %d", again.cpu, len(again.allocs))
	}
	if u.cpu != 1000 || len(u.allocs) != 1 || u.allocs[0].ID != "a2" {
		t.Fatalf("changed usage: cpu %d, allocs %v", u.cpu, u.allocs)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("changing a shared usage in place did not panic")
		}
	}()
	again.add(existing("a3", job, "g", 2, n))
}
