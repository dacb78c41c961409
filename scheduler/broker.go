package scheduler

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
)

// EvalBroker hands evaluations to workers in priority order (higher
// Priority first, then earliest virtual deadline first) with at-least-once
// delivery:
// a dequeued evaluation must be Acked, or it is delivered again after a
// Nack or once its deadline passes (see RedeliverExpired).
//
// At most one evaluation per job is out at a time (ready or unacked);
// others for the same job wait until it is acked, so two workers never
// reconcile the same job concurrently.
//
// Within a priority the order is shortest first, with aging: an
// evaluation's virtual deadline is the time it was enqueued plus its cost
// (see SetCost) times costUnit, capped at maxCostDelay. A small job (one
// copy) goes ahead of a large one enqueued less than the difference
// before it. costUnit is far above the real cost of placing one
// allocation (well under a millisecond), so in practice a count=1 job
// overtakes every bulk job in the queue instead of waiting for those
// that happened to arrive a little earlier, while a large job waits at
// most maxCostDelay longer than plain FIFO would make it (no
// starvation). Without a cost function every cost is zero and the order
// is first-in first-out.
//
// All methods are safe for concurrent use. Dequeue blocks; the rest do not.
// Time is an input: Dequeue and RedeliverExpired take the current time so
// that redelivery is tested without sleeping.
type EvalBroker struct {
	mu        sync.Mutex
	enabled   bool
	timeout   time.Duration
	seq       uint64
	ready     evalHeap
	unack     map[string]*unacked
	known     map[string]bool              // eval IDs anywhere in the broker
	jobBusy   map[string]string            // job ID → eval ID ready or unacked
	waiting   map[string][]*api.Evaluation // job ID → evals waiting for the busy one
	wake      chan struct{}
	delivered map[string]int // eval ID → deliveries so far
	cost      func(*api.Evaluation) int
	now       func() time.Time
	waited    func(time.Duration) // metrics hook: enqueue → dequeue; may be nil
}

// costUnit is how much later an evaluation's virtual deadline is per unit
// of cost (one allocation asked for).
const costUnit = 10 * time.Millisecond

// maxCostDelay caps the head start that cheaper evaluations get over an
// expensive one.
const maxCostDelay = 2 * time.Second

type unacked struct {
	eval     *api.Evaluation
	token    string
	deadline time.Time
}

type queued struct {
	eval     *api.Evaluation
	deadline int64 // virtual deadline, unix nanoseconds
	seq      uint64
	since    time.Time // when it became ready
}

type evalHeap []queued

func (h evalHeap) Len() int { return len(h) }
func (h evalHeap) Less(i, j int) bool {
	if h[i].eval.Priority != h[j].eval.Priority {
		return h[i].eval.Priority > h[j].eval.Priority
	}
	if h[i].deadline != h[j].deadline {
		return h[i].deadline < h[j].deadline
	}
	return h[i].seq < h[j].seq
}
func (h evalHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evalHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *evalHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	*h = old[:n-1]
	return x
}

// NewEvalBroker returns a disabled broker whose deliveries expire after
// timeout unless acked.
func NewEvalBroker(timeout time.Duration) *EvalBroker {
	b := &EvalBroker{timeout: timeout, wake: make(chan struct{}), now: time.Now}
	b.reset()
	return b
}

// SetCost sets the function that estimates an evaluation's work (the
// server passes the number of allocations its job asks for). It is called
// under the broker's lock, once per enqueue, and must not call the broker.
// Call it before the broker is used.
func (b *EvalBroker) SetCost(cost func(*api.Evaluation) int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cost = cost
}

func (b *EvalBroker) reset() {
	b.ready = nil
	b.unack = map[string]*unacked{}
	b.known = map[string]bool{}
	b.jobBusy = map[string]string{}
	b.waiting = map[string][]*api.Evaluation{}
	b.delivered = map[string]int{}
}

// SetEnabled turns the broker on (the server became leader) or off (it
// lost leadership). Turning it off drops every evaluation it holds; the
// next leader restores pending ones from the state store.
func (b *EvalBroker) SetEnabled(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.enabled = on
	if !on {
		b.reset()
	}
	b.signal()
}

// signal wakes every blocked Dequeue; callers hold mu.
func (b *EvalBroker) signal() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// Enqueue adds evaluations. An evaluation already held (by ID) is ignored,
// which makes restoring from state and redelivery idempotent.
func (b *EvalBroker) Enqueue(evals ...*api.Evaluation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.enabled {
		return
	}
	added := false
	for _, e := range evals {
		if e == nil || b.known[e.ID] {
			continue
		}
		b.known[e.ID] = true
		if _, busy := b.jobBusy[e.JobID]; busy {
			b.waiting[e.JobID] = append(b.waiting[e.JobID], e)
			continue
		}
		b.push(e)
		added = true
	}
	if added {
		b.signal()
	}
}

func (b *EvalBroker) push(e *api.Evaluation) {
	b.seq++
	b.jobBusy[e.JobID] = e.ID
	now := b.now()
	deadline := now.UnixNano()
	if b.cost != nil {
		deadline += int64(min(time.Duration(max(b.cost(e), 0))*costUnit, maxCostDelay))
	}
	heap.Push(&b.ready, queued{eval: e, deadline: deadline, seq: b.seq, since: now})
}

// Dequeue blocks until an evaluation is ready and returns it with a token
// for Ack/Nack. It returns ctx's error when ctx ends, and
// ErrBrokerDisabled while the broker is off.
func (b *EvalBroker) Dequeue(ctx context.Context) (*api.Evaluation, string, error) {
	for {
		b.mu.Lock()
		if !b.enabled {
			b.mu.Unlock()
			return nil, "", ErrBrokerDisabled
		}
		if b.ready.Len() > 0 {
			q := heap.Pop(&b.ready).(queued)
			b.delivered[q.eval.ID]++
			tok := fmt.Sprintf("%s/%d", q.eval.ID, b.delivered[q.eval.ID])
			b.unack[q.eval.ID] = &unacked{eval: q.eval, token: tok, deadline: time.Now().Add(b.timeout)}
			waited := b.waited
			b.mu.Unlock()
			if waited != nil {
				waited(b.now().Sub(q.since))
			}
			return q.eval, tok, nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-wake:
		}
	}
}

// Ack marks an evaluation done. The next waiting evaluation of the same
// job, if any, becomes ready.
func (b *EvalBroker) Ack(evalID, token string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.unack[evalID]
	if !ok || u.token != token {
		return fmt.Errorf("ack %s: %w", evalID, ErrUnknownEval)
	}
	delete(b.unack, evalID)
	delete(b.known, evalID)
	delete(b.delivered, evalID)
	jobID := u.eval.JobID
	delete(b.jobBusy, jobID)
	if w := b.waiting[jobID]; len(w) > 0 {
		next := w[0]
		if len(w) == 1 {
			delete(b.waiting, jobID)
		} else {
			b.waiting[jobID] = w[1:]
		}
		b.push(next)
		b.signal()
	}
	return nil
}

// Nack returns an evaluation to the ready queue at once, for a worker that
// could not finish it (for example because a Raft write failed).
func (b *EvalBroker) Nack(evalID, token string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.unack[evalID]
	if !ok || u.token != token {
		return fmt.Errorf("nack %s: %w", evalID, ErrUnknownEval)
	}
	b.requeue(u)
	b.signal()
	return nil
}

// requeue makes an unacked evaluation ready again. It has waited its
// turn already, so it gets no cost delay.
func (b *EvalBroker) requeue(u *unacked) {
	delete(b.unack, u.eval.ID)
	b.seq++
	now := b.now()
	heap.Push(&b.ready, queued{eval: u.eval, deadline: now.UnixNano(), seq: b.seq, since: now})
}

// Touch extends an outstanding evaluation's deadline, for a worker that is
// still busy with it.
func (b *EvalBroker) Touch(evalID, token string, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.unack[evalID]
	if !ok || u.token != token {
		return fmt.Errorf("touch %s: %w", evalID, ErrUnknownEval)
	}
	u.deadline = now.Add(b.timeout)
	return nil
}

// RedeliverExpired makes every evaluation whose deadline is before now
// ready again and returns how many there were. Its old token stops working.
func (b *EvalBroker) RedeliverExpired(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, u := range b.unack {
		if u.deadline.Before(now) {
			b.requeue(u)
			n++
		}
	}
	if n > 0 {
		b.signal()
	}
	return n
}

// BrokerStats counts what the broker holds.
type BrokerStats struct {
	Ready, Unacked, Waiting int
}

// Stats reports the broker's queue sizes.
func (b *EvalBroker) Stats() BrokerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := BrokerStats{Ready: b.ready.Len(), Unacked: len(b.unack)}
	for _, w := range b.waiting {
		s.Waiting += len(w)
	}
	return s
}

// setDeadlineForTest lets tests move an outstanding eval's deadline.
func (b *EvalBroker) deadlineOf(evalID string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.unack[evalID]
	if !ok {
		return time.Time{}, false
	}
	return u.deadline, true
}
