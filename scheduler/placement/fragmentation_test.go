package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/berth-dev/berth/api"
)

// fragmentationRun submits 1/2/4/8-GPU jobs one at a time (a fixed
// pseudo-random mix: 40% 1, 30% 2, 20% 4, 10% 8 GPUs) to 100 nodes with
// 8 GPUs each, and returns the fraction of GPUs in use when the first
// 8-GPU job cannot be placed. With lifetimes, each job finishes after a
// pseudo-random number of submissions, so the cluster churns the way a
// shared training cluster does; without, jobs never end.
func fragmentationRun(t *testing.T, firstFit, lifetimes bool) (used float64, submitted int) {
	t.Helper()
	const nodesN, perNode = 100, 8
	var nodes []*api.Node
	for i := 0; i < nodesN; i++ {
		n := mkNode(fmt.Sprintf("gpu-%03d", i), 128000, 1<<20, withGPUs("H100", perNode, 81920))
		for d := range n.Resources.GPUs {
			n.Resources.GPUs[d].NUMANode = d / 4
		}
		nodes = append(nodes, n)
	}
	st := newFakeState(nodes)
	rng := rand.New(rand.NewPCG(2026, 6))
	ends := map[int][]string{} // submission step → jobs finishing then
	inUse := 0
	gpusOf := map[string]int{}
	for step := 0; step < 100000; step++ {
		for _, id := range ends[step] {
			st.removeJob(id) // finished and garbage-collected
			inUse -= gpusOf[id]
		}
		size := 1
		switch r := rng.IntN(10); {
		case r < 4:
			size = 1
		case r < 7:
			size = 2
		case r < 9:
			size = 4
		default:
			size = 8
		}
		job := gpuJob(fmt.Sprintf("job-%05d", step), 1, api.GPURequest{Count: size})
		job.Groups[0].Tasks[0].Resources.CPU = 1000
		p, err := Schedule(st, evalFor(job), job, Options{firstFit: firstFit, NewID: counterIDs(job.ID)})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.FailedGroups) > 0 {
			if size == perNode {
				return float64(inUse) / float64(nodesN*perNode), step + 1
			}
			continue
		}
		st.apply(p)
		inUse += size
		gpusOf[job.ID] = size
		if lifetimes {
			life := 50 + rng.IntN(400)
			ends[step+life] = append(ends[step+life], job.ID)
		}
	}
	t.Fatal("no 8-GPU job ever failed")
	return 0, 0
}

// TestGPUFragmentationExperiment compares the fragmentation-aware best fit
// with a naive first fit (lowest node ID that fits) on the question of
// issue 6: how full is the cluster when the first 8-GPU job no longer fits?
func TestGPUFragmentationExperiment(t *testing.T) {
	if testing.Short() {
		t.Skip("experiment takes a few seconds; skipped with -short")
	}
	for _, tc := range []struct {
		name      string
		lifetimes bool
	}{
		{name: "jobs never end", lifetimes: false},
		{name: "jobs end after 50-450 submissions", lifetimes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			best, nb := fragmentationRun(t, false, tc.lifetimes)
			first, nf := fragmentationRun(t, true, tc.lifetimes)
			t.Logf("GPUs in use when the first 8-GPU job failed: best fit %.1f%% (after %d jobs), first fit %.1f%% (after %d jobs)",
				100*best, nb, 100*first, nf)
			if best < first {
				t.Errorf("best fit %.3f < first fit %.3f", best, first)
			}
		})
	}
}
