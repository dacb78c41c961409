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
type blockedEvals struct {
	mu    sync.Mutex
	byJob map[string]*api.Evaluation
}

func newBlockedEvals() *blockedEvals {
	return &blockedEvals{byJob: map[string]*api.Evaluation{}}
}

// Block records e as its job's blocked evaluation, replacing an older one,
// which is returned so the caller can mark it superseded.
func (b *blockedEvals) Block(e *api.Evaluation) (replaced *api.Evaluation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.byJob[e.JobID]
	b.byJob[e.JobID] = e
	if old != nil && old.ID != e.ID {
		return old
	}
	return nil
}

// Remove forgets the job's blocked evaluation (a newer evaluation of the
// job placed everything) and returns it.
func (b *blockedEvals) Remove(jobID string) *api.Evaluation {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.byJob[jobID]
	delete(b.byJob, jobID)
	return e
}

// Unblock returns every blocked evaluation, highest priority first, and
// forgets them.
func (b *blockedEvals) Unblock() []*api.Evaluation {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*api.Evaluation, 0, len(b.byJob))
	for _, e := range b.byJob {
		out = append(out, e)
	}
	b.byJob = map[string]*api.Evaluation{}
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
	b.byJob = map[string]*api.Evaluation{}
	b.mu.Unlock()
}
