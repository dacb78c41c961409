package placement

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// benchState is a read-only State over prebuilt indexes, the way a memdb
// snapshot serves them (sorted by ID, no copying).
type benchState struct {
	nodes  []*api.Node
	byNode map[string][]*api.Allocation
	byJob  map[string][]*api.Allocation
}

var _ State = (*benchState)(nil)

func (s *benchState) Nodes() []*api.Node                       { return s.nodes }
func (s *benchState) AllocsByNode(id string) []*api.Allocation { return s.byNode[id] }
func (s *benchState) AllocsByJob(id string) []*api.Allocation  { return s.byJob[id] }

// newBenchState builds 5,000 nodes with realistic capacities (8-64 cores,
// 32-512 GiB, one in ten with 8 H100s) and about 50,000 running
// allocations of 5,000 jobs (count 10, 250-2000 millicores, 256-4096 MiB;
// one in ten GPU nodes has half its GPUs taken).
func newBenchState(nodesN, jobsN int) *benchState {
	rng := rand.New(rand.NewPCG(5000, 50000))
	st := &benchState{byNode: map[string][]*api.Allocation{}, byJob: map[string][]*api.Allocation{}}
	cores := []int{8, 16, 32, 64}
	mems := []int{32, 64, 128, 256, 512}
	for i := 0; i < nodesN; i++ {
		n := mkNode(fmt.Sprintf("node-%05d", i), cores[rng.IntN(len(cores))]*1000, mems[rng.IntN(len(mems))]*1024,
			withLabel("rack", fmt.Sprintf("r%02d", i%40)), withAttr("kernel.version", "6.1.0"))
		if i%10 == 0 {
			withGPUs("NVIDIA H100 80GB HBM3", 8, 81559)(n)
		}
		st.nodes = append(st.nodes, n)
	}
	id := 0
	for j := 0; j < jobsN; j++ {
		job := mkJob(fmt.Sprintf("job-%05d", j), 10, 250*(1+rng.IntN(8)), 256*(1+rng.IntN(16)))
		for k := 0; k < 10; k++ {
			n := st.nodes[rng.IntN(len(st.nodes))]
			id++
			a := existing(fmt.Sprintf("alloc-%06d", id), job, "g", k, n)
			u := newNodeUsage(n)
			for _, x := range st.byNode[n.ID] {
				u.add(x)
			}
			if u.cpu+a.Resources.CPU > n.Resources.CPU || u.mem+a.Resources.MemoryMB > n.Resources.MemoryMB {
				continue // keep the state valid: no node overcommitted
			}
			if len(n.Resources.GPUs) > 0 && len(st.byNode[n.ID]) == 0 && rng.IntN(10) == 0 {
				a.GPUs = []string{n.Resources.GPUs[0].UUID, n.Resources.GPUs[1].UUID, n.Resources.GPUs[2].UUID, n.Resources.GPUs[3].UUID}
			}
			st.byNode[n.ID] = append(st.byNode[n.ID], a)
			st.byJob[job.ID] = append(st.byJob[job.ID], a)
		}
	}
	return st
}

// BenchmarkSchedule5000Nodes schedules a new count=10 job on 5,000 nodes
// holding ~50,000 allocations and reports placements per second.
func BenchmarkSchedule5000Nodes(b *testing.B) {
	st := newBenchState(5000, 5000)
	allocs := 0
	for _, as := range st.byNode {
		allocs += len(as)
	}
	b.Logf("%d nodes, %d existing allocations", len(st.nodes), allocs)
	cases := []struct {
		name string
		job  func(i int) *api.Job
	}{
		{name: "service-count10", job: func(i int) *api.Job { return mkJob(fmt.Sprintf("bench-%d", i), 10, 500, 512) }},
		{name: "constrained-count10", job: func(i int) *api.Job {
			j := mkJob(fmt.Sprintf("bench-%d", i), 10, 500, 512)
			j.Constraints = []api.Constraint{{Attribute: "${node.label.rack}", Operator: "regexp", Value: "^r0[0-3]$"}}
			return j
		}},
		{name: "gpu-count10", job: func(i int) *api.Job {
			return gpuJob(fmt.Sprintf("bench-%d", i), 10, api.GPURequest{Count: 1, Model: "H100"})
		}},
		{name: "service-count1000", job: func(i int) *api.Job { return mkJob(fmt.Sprintf("bench-%d", i), 1000, 100, 128) }},
		{name: "system", job: func(i int) *api.Job {
			j := mkJob(fmt.Sprintf("bench-%d", i), 1, 10, 16)
			j.Type = api.JobTypeSystem
			return j
		}},
	}
	// The server keeps node usage across evaluations (UsageCache); the
	// state here never changes, so "cached" shows the hit path.
	var all []struct {
		name  string
		job   func(i int) *api.Job
		cache *UsageCache
	}
	for _, tc := range cases {
		all = append(all, struct {
			name  string
			job   func(i int) *api.Job
			cache *UsageCache
		}{tc.name, tc.job, nil}, struct {
			name  string
			job   func(i int) *api.Job
			cache *UsageCache
		}{tc.name + "/cached", tc.job, NewUsageCache(0)})
	}
	for _, tc := range all {
		b.Run(tc.name, func(b *testing.B) {
			placed := 0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				job := tc.job(i)
				p, err := Schedule(st, evalFor(job), job, Options{NewID: counterIDs(job.ID), Cache: tc.cache})
				if err != nil {
					b.Fatal(err)
				}
				if len(p.FailedGroups) > 0 && !strings.HasPrefix(tc.name, "system") { // full nodes cannot take a system copy
					b.Fatalf("failed: %v", p.FailedGroups)
				}
				placed += countAllocs(p.NodeAllocation)
			}
			b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
		})
	}
}
