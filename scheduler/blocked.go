package scheduler

import (
	"sort"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
)

// Backoff of blocked evaluations: a job's blocked evaluation is retried
// after blockedRetryBase even if no capacity change is seen, then after
// twice as long each time it is blocked again, up to blockedRetryMax.
// Capacity changes that the leader does not see as such (an agent that
// frees resources without reporting it in time, a constraint that now
// matches a node attribute) are thus picked up, at a bounded cost: a job
// that can never be placed is evaluated once per blockedRetryMax.
const (
	blockedRetryBase = 5 * time.Second
	blockedRetryMax  = 5 * time.Minute
)

// blockedRetryDelay is the wait before the retry that follows the given
// number of earlier ones.
func blockedRetryDelay(retries int) time.Duration {
	d := blockedRetryBase
	for i := 0; i < retries && d < blockedRetryMax; i++ {
		d *= 2
	}
	return min(d, blockedRetryMax)
}

// blockedEvals holds, per job, the evaluation that could not place
// everything for lack of capacity. When capacity appears (a node registers
// or becomes ready or eligible, or allocations stop) the leader unblocks
// them all and they are evaluated again; each is also retried on its own
// once its backoff runs out (Due). Safe for concurrent use. Time is an
// input: Block and Due take the current time.
//
// Capacity may change while a worker plans on an older snapshot; Block
// therefore takes the snapshot's index, and Stale reports evaluations
// blocked on a snapshot older than the latest capacity change, which the
// caller unblocks at once (otherwise they would wait for the next change).
type blockedEvals struct {
	mu            sync.Mutex
	byJob         map[string]blockedEntry
	retries       map[string]int // job ID → backoff retries so far
	capacityIndex uint64
}

type blockedEntry struct {
	eval      *api.Evaluation
	snapIndex uint64
	retryAt   time.Time
}

func newBlockedEvals() *blockedEvals {
	return &blockedEvals{byJob: map[string]blockedEntry{}, retries: map[string]int{}}
}

// Block records e, planned on a snapshot at snapIndex, as its job's
// blocked evaluation, replacing an older one, which is returned so the
// caller can mark it superseded. It is retried at the latest after the
// job's current backoff, counted from now.
func (b *blockedEvals) Block(e *api.Evaluation, snapIndex uint64, now time.Time) (replaced *api.Evaluation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.byJob[e.JobID]
	b.byJob[e.JobID] = blockedEntry{eval: e, snapIndex: snapIndex, retryAt: now.Add(blockedRetryDelay(b.retries[e.JobID]))}
	if ok && old.eval.ID != e.ID {
		return old.eval
	}
	return nil
}

// Due removes and returns, highest priority first, the evaluations whose
// backoff ran out by now. Each one's next backoff doubles.
func (b *blockedEvals) Due(now time.Time) []*api.Evaluation {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*api.Evaluation
	for job, e := range b.byJob {
		if !e.retryAt.After(now) {
			out = append(out, e.eval)
			delete(b.byJob, job)
			b.retries[job]++
		}
	}
	sortEvals(out)
	return out
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
// job placed everything) and its backoff, and returns the evaluation.
func (b *blockedEvals) Remove(jobID string) *api.Evaluation {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.retries, jobID)
	e, ok := b.byJob[jobID]
	if !ok {
		return nil
	}
	delete(b.byJob, jobID)
	return e.eval
}

// Unblock records a capacity change at Raft index (0: no new change) and
// returns every blocked evaluation, highest priority first, forgetting
// them. Backoffs are kept: a job that still does not fit after a
// capacity change waits as long as before for its next timed retry.
func (b *blockedEvals) Unblock(index uint64) []*api.Evaluation {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.capacityIndex = max(b.capacityIndex, index)
	out := make([]*api.Evaluation, 0, len(b.byJob))
	for _, e := range b.byJob {
		out = append(out, e.eval)
	}
	b.byJob = map[string]blockedEntry{}
	sortEvals(out)
	return out
}

func sortEvals(evals []*api.Evaluation) {
	sort.Slice(evals, func(i, j int) bool {
		if evals[i].Priority != evals[j].Priority {
			return evals[i].Priority > evals[j].Priority
		}
		return evals[i].ID < evals[j].ID
	})
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
	b.retries = map[string]int{}
	b.capacityIndex = 0
	b.mu.Unlock()
}
