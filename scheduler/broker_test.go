package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

func ev(id, job string, prio int) *api.Evaluation {
	return &api.Evaluation{ID: id, JobID: job, Priority: prio, Status: api.EvalStatusPending}
}

func dequeueNow(t *testing.T, b *EvalBroker) (*api.Evaluation, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	e, tok, err := b.Dequeue(ctx)
	if err != nil {
		t.Fatalf("dequeue: %v", err)
	}
	return e, tok
}

func expectEmpty(t *testing.T, b *EvalBroker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if e, _, err := b.Dequeue(ctx); err == nil {
		t.Fatalf("expected nothing ready, got %s", e.ID)
	}
}

func TestBrokerPriorityOrder(t *testing.T) {
	tests := []struct {
		name  string
		evals []*api.Evaluation
		want  []string
	}{
		{"higher priority first", []*api.Evaluation{ev("a", "j1", 10), ev("b", "j2", 90), ev("c", "j3", 50)}, []string{"b", "c", "a"}},
		{"fifo within a priority", []*api.Evaluation{ev("a", "j1", 50), ev("b", "j2", 50), ev("c", "j3", 50)}, []string{"a", "b", "c"}},
		{"mixed", []*api.Evaluation{ev("a", "j1", 50), ev("b", "j2", 70), ev("c", "j3", 50), ev("d", "j4", 70)}, []string{"b", "d", "a", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewEvalBroker(time.Minute)
			b.SetEnabled(true)
			b.Enqueue(tc.evals...)
			for _, want := range tc.want {
				e, tok := dequeueNow(t, b)
				if e.ID != want {
					t.Fatalf("got %s, want %s", e.ID, want)
				}
				if err := b.Ack(e.ID, tok); err != nil {
					t.Fatal(err)
				}
			}
			expectEmpty(t, b)
		})
	}
}

func TestBrokerOneEvalPerJob(t *testing.T) {
	b := NewEvalBroker(time.Minute)
	b.SetEnabled(true)
	b.Enqueue(ev("a1", "a", 50), ev("a2", "a", 90), ev("b1", "b", 10))
	e1, tok1 := dequeueNow(t, b)
	if e1.ID != "a1" {
		t.Fatalf("first = %s, want a1", e1.ID)
	}
	// a2 has a higher priority but must wait: job a is in flight.
	e2, tok2 := dequeueNow(t, b)
	if e2.ID != "b1" {
		t.Fatalf("second = %s, want b1 (a2 must wait for a1)", e2.ID)
	}
	expectEmpty(t, b)
	if s := b.Stats(); s.Waiting != 1 || s.Unacked != 2 {
		t.Fatalf("stats = %+v", s)
	}
	if err := b.Ack(e1.ID, tok1); err != nil {
		t.Fatal(err)
	}
	e3, _ := dequeueNow(t, b)
	if e3.ID != "a2" {
		t.Fatalf("after ack, got %s, want a2", e3.ID)
	}
	if err := b.Ack(e2.ID, tok2); err != nil {
		t.Fatal(err)
	}
	// Duplicates by ID are ignored.
	b.Enqueue(ev("a2", "a", 90))
	if s := b.Stats(); s.Ready != 0 || s.Waiting != 0 {
		t.Fatalf("duplicate was queued: %+v", s)
	}
}

func TestBrokerRedelivery(t *testing.T) {
	b := NewEvalBroker(10 * time.Second)
	b.SetEnabled(true)
	b.Enqueue(ev("e", "j", 50))
	e, tok := dequeueNow(t, b)
	deadline, ok := b.deadlineOf(e.ID)
	if !ok {
		t.Fatal("eval not outstanding")
	}
	if n := b.RedeliverExpired(deadline.Add(-time.Millisecond)); n != 0 {
		t.Fatalf("redelivered %d before the deadline", n)
	}
	if n := b.RedeliverExpired(deadline.Add(time.Millisecond)); n != 1 {
		t.Fatalf("redelivered %d after the deadline, want 1", n)
	}
	// The old token is dead; the eval comes out again with a new one.
	if err := b.Ack(e.ID, tok); !errors.Is(err, ErrUnknownEval) {
		t.Fatalf("ack with stale token: %v", err)
	}
	e2, tok2 := dequeueNow(t, b)
	if e2.ID != "e" || tok2 == tok {
		t.Fatalf("redelivered %s with token %s (old %s)", e2.ID, tok2, tok)
	}
	// Nack puts it back at once.
	if err := b.Nack(e2.ID, tok2); err != nil {
		t.Fatal(err)
	}
	e3, tok3 := dequeueNow(t, b)
	if err := b.Ack(e3.ID, tok3); err != nil {
		t.Fatal(err)
	}
	expectEmpty(t, b)
}

func TestBrokerTouch(t *testing.T) {
	b := NewEvalBroker(10 * time.Second)
	b.SetEnabled(true)
	b.Enqueue(ev("e", "j", 50))
	e, tok := dequeueNow(t, b)
	d0, _ := b.deadlineOf(e.ID)
	later := d0.Add(5 * time.Second)
	if err := b.Touch(e.ID, tok, later); err != nil {
		t.Fatal(err)
	}
	if n := b.RedeliverExpired(d0.Add(time.Second)); n != 0 {
		t.Fatal("touched eval was redelivered")
	}
}

func TestBrokerDisabled(t *testing.T) {
	b := NewEvalBroker(time.Minute)
	b.Enqueue(ev("e", "j", 50)) // dropped: disabled
	if _, _, err := b.Dequeue(context.Background()); !errors.Is(err, ErrBrokerDisabled) {
		t.Fatalf("dequeue on disabled broker: %v", err)
	}
	b.SetEnabled(true)
	done := make(chan error, 1)
	go func() {
		_, _, err := b.Dequeue(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.SetEnabled(false) // wakes the blocked Dequeue
	select {
	case err := <-done:
		if !errors.Is(err, ErrBrokerDisabled) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("blocked dequeue not woken by disable")
	}
}

func TestHeartbeatTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := newHeartbeatTracker(2 * time.Second)
	h.Reset("a", t0)
	h.Reset("b", t0.Add(time.Second))
	h.ResetWithGrace("c", t0, 5*time.Second)
	tests := []struct {
		name string
		at   time.Duration
		want []string
	}{
		{"none before ttl", 1999 * time.Millisecond, nil},
		{"a expires", 2001 * time.Millisecond, []string{"a"}},
		{"a reported once", 2500 * time.Millisecond, nil},
		{"b expires", 3001 * time.Millisecond, []string{"b"}},
		{"c has grace", 6 * time.Second, nil},
		{"c expires", 7001 * time.Millisecond, []string{"c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := h.Expired(t0.Add(tc.at))
			if len(got) != len(tc.want) {
				t.Fatalf("expired = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("expired = %v, want %v", got, tc.want)
				}
			}
		})
	}
	h.Reset("e", t0)
	h.Expedite("e", t0.Add(500*time.Millisecond)) // gossip says its agent failed
	if got := h.Expired(t0.Add(600 * time.Millisecond)); len(got) != 1 || got[0] != "e" {
		t.Fatalf("expedited node not expired: %v", got)
	}
	h.Reset("f", t0)
	h.Expedite("f", t0.Add(time.Hour)) // never postpones
	if got := h.Expired(t0.Add(2001 * time.Millisecond)); len(got) != 1 || got[0] != "f" {
		t.Fatalf("expedite postponed the deadline: %v", got)
	}
	h.Reset("d", t0)
	h.Reset("d", t0.Add(10*time.Second)) // heartbeat pushes the deadline
	if got := h.Expired(t0.Add(11 * time.Second)); len(got) != 0 {
		t.Fatalf("d expired despite heartbeat: %v", got)
	}
}

func TestBlockedEvals(t *testing.T) {
	b := newBlockedEvals()
	if r := b.Block(ev("1", "a", 10), 5, time.Unix(0, 0)); r != nil {
		t.Fatal("nothing to replace")
	}
	b.Block(ev("2", "b", 90), 5, time.Unix(0, 0))
	if r := b.Block(ev("3", "a", 10), 5, time.Unix(0, 0)); r == nil || r.ID != "1" {
		t.Fatalf("replaced = %v, want eval 1", r)
	}
	if e := b.Remove("b"); e == nil || e.ID != "2" {
		t.Fatalf("removed %v", e)
	}
	b.Block(ev("4", "c", 99), 5, time.Unix(0, 0))
	if b.Stale() {
		t.Fatal("stale before any capacity change")
	}
	got := b.Unblock(7)
	if len(got) != 2 || got[0].ID != "4" || got[1].ID != "3" {
		t.Fatalf("unblocked %v", got)
	}
	if b.Len() != 0 {
		t.Fatal("unblock left evals behind")
	}
	// Planned on a snapshot older than the last capacity change: stale.
	b.Block(ev("5", "d", 50), 6, time.Unix(0, 0))
	if !b.Stale() {
		t.Fatal("eval blocked on index 6 after a change at 7 is not stale")
	}
	b.Unblock(0)
	b.Block(ev("6", "d", 50), 7, time.Unix(0, 0))
	if b.Stale() {
		t.Fatal("eval blocked on the newest snapshot is stale")
	}
}

// brokerStep enqueues an evaluation of job at ms milliseconds.
type brokerStep struct {
	at  int
	job string
}

func TestBrokerCheapEvalsOvertakeRecentExpensiveOnes(t *testing.T) {
	cost := map[string]int{"bulk": 50, "mid": 10, "probe": 1, "probe2": 1, "huge": 1_000_000}
	tests := []struct {
		name  string
		steps []brokerStep
		want  []string
	}{
		{"a small job overtakes a bulk job enqueued just before it",
			[]brokerStep{{0, "bulk"}, {10, "probe"}}, []string{"probe", "bulk"}},
		{"a small job overtakes a bulk job that has waited a while",
			[]brokerStep{{0, "bulk"}, {400, "probe"}}, []string{"probe", "bulk"}},
		{"a bulk job enqueued long enough before stays ahead",
			[]brokerStep{{0, "bulk"}, {600, "probe"}}, []string{"bulk", "probe"}},
		{"shortest first among several waiting",
			[]brokerStep{{0, "bulk"}, {1, "mid"}, {2, "probe"}}, []string{"probe", "mid", "bulk"}},
		{"equal costs stay first-in first-out",
			[]brokerStep{{0, "probe"}, {0, "probe2"}}, []string{"probe", "probe2"}},
		{"the head start is capped, so a huge job is not starved",
			[]brokerStep{{0, "huge"}, {int(maxCostDelay/time.Millisecond) + 1, "probe"}}, []string{"huge", "probe"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			now := start
			b := NewEvalBroker(time.Minute)
			b.now = func() time.Time { return now }
			b.SetCost(func(e *api.Evaluation) int { return cost[e.JobID] })
			b.SetEnabled(true)
			for _, s := range tc.steps {
				now = start.Add(time.Duration(s.at) * time.Millisecond)
				b.Enqueue(ev(s.job+"-eval", s.job, 50))
			}
			for _, want := range tc.want {
				e, tok := dequeueNow(t, b)
				if e.JobID != want {
					t.Fatalf("got %s, want %s", e.JobID, want)
				}
				if err := b.Ack(e.ID, tok); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestBlockedEvalsBackoff(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBlockedEvals()
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// Retried after the base delay, then after twice as long each time
	// it is blocked again, up to the cap.
	now := t0
	for i, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second,
		80 * time.Second, 160 * time.Second, blockedRetryMax, blockedRetryMax} {
		b.Block(ev(fmt.Sprintf("e%d", i), "job", 50), 1, now)
		if due := b.Due(now.Add(want - time.Millisecond)); len(due) != 0 {
			t.Fatalf("retry %d: due after %s, before its backoff %s", i, want-time.Millisecond, want)
		}
		due := b.Due(now.Add(want))
		if len(due) != 1 || due[0].ID != fmt.Sprintf("e%d", i) {
			t.Fatalf("retry %d: due at %s = %v", i, want, due)
		}
		if b.Len() != 0 {
			t.Fatal("a due evaluation stayed blocked")
		}
		now = now.Add(want)
	}

	// Placing everything resets the job's backoff.
	b.Remove("job")
	b.Block(ev("again", "job", 50), 1, at(time.Hour))
	if due := b.Due(at(time.Hour + blockedRetryBase)); len(due) != 1 {
		t.Fatalf("after a reset the base delay applies: %v", due)
	}

	// Jobs back off independently; due ones come highest priority first.
	b.Block(ev("lo", "lo", 10), 1, t0)
	b.Block(ev("hi", "hi", 90), 1, t0)
	b.Block(ev("late", "late", 50), 1, at(time.Second))
	due := b.Due(at(blockedRetryBase))
	if len(due) != 2 || due[0].ID != "hi" || due[1].ID != "lo" {
		t.Fatalf("due %v, want hi then lo", due)
	}
	if b.Len() != 1 {
		t.Fatalf("%d blocked, want late only", b.Len())
	}
}
