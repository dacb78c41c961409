package scheduler

import (
	"sort"
	"sync"

	"github.com/berth-dev/berth/api"
)

// blockedEvals holds, per job, the evaluation that could not place
// everything for lack of capacity. When capacity appears (a node registers
// or becomes ready or eligible, or allocations stop) the leader unblocks
// them all and they are evaluated again. Safe for concurrent use.
//
// Capacity may change while a worker plans on an older snapshot; Block
// therefore takes the snapshot's index, and Stale reports evaluations
// blocked on a snapshot older than the latest capacity change, which the
// caller unblocks at once (otherwise they would wait for the next change).
type blockedEvals struct {
	mu            sync.Mutex
	byJob         map[string]blockedEntry
	capacityIndex uint64
}

type blockedEntry struct {
	eval      *api.Evaluation
	snapIndex uint64
}

func newBlockedEvals() *blockedEvals {
	return &blockedEvals{byJob: map[string]blockedEntry{}}
}

// Block records e, planned on a snapshot at snapIndex, as its job's
// blocked evaluation, replacing an older one, which is returned so the
// caller can mark it superseded.
func (b *blockedEvals) Block(e *api.Evaluation, snapIndex uint64) (replaced *api.Evaluation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.byJob[e.JobID]
	b.byJob[e.JobID] = blockedEntry{eval: e, snapIndex: snapIndex}
	if ok && old.eval.ID != e.ID {
		return old.eval
	}
	return nil
}

// Stale reports whether an evaluation was blocked on a snapshot older
// than the last capacity change.
func (b *blockedEvals) Stale() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.byJob {
		if e.snapIndex < b.capacityIndex {
			return true
		}
	}
	return false
}

// Remove forgets the job's blocked evaluation (a newer evaluation of the
// job placed everything) and returns it.
func (b *blockedEvals) Remove(jobID string) *api.Evaluation {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.byJob[jobID]
	if !ok {
		return nil
	}
	delete(b.byJob, jobID)
	return e.eval
}

// Unblock records a capacity change at Raft index (0: no new change) and
// returns every blocked evaluation, highest priority first, forgetting
// them.
func (b *blockedEvals) Unblock(index uint64) []*api.Evaluation {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.capacityIndex = max(b.capacityIndex, index)
	out := make([]*api.Evaluation, 0, len(b.byJob))
	for _, e := range b.byJob {
		out = append(out, e.eval)
	}
	b.byJob = map[string]blockedEntry{}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority > out[j].Priority
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Len is the number of blocked evaluations.
func (b *blockedEvals) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.byJob)
}

// Reset forgets everything (leadership lost).
func (b *blockedEvals) Reset() {
	b.mu.Lock()
	b.byJob = map[string]blockedEntry{}
	b.capacityIndex = 0
	b.mu.Unlock()
}
