package scheduler

import (
	"sort"
	"sync"
	"time"
)

// heartbeatTracker is the pure part of node failure detection: it holds a
// deadline per node and reports the nodes whose deadline has passed. It
// owns no clock; the leader's loop passes the time in. Safe for
// concurrent use.
type heartbeatTracker struct {
	mu        sync.Mutex
	ttl       time.Duration
	deadlines map[string]time.Time
}

func newHeartbeatTracker(ttl time.Duration) *heartbeatTracker {
	return &heartbeatTracker{ttl: ttl, deadlines: map[string]time.Time{}}
}

// Reset records a heartbeat from node at now: it is declared down if no
// other heartbeat arrives within the TTL.
func (h *heartbeatTracker) Reset(nodeID string, now time.Time) {
	h.ResetWithGrace(nodeID, now, 0)
}

// ResetWithGrace is Reset with extra time, used when a new leader takes
// over nodes that were heartbeating to the old one.
func (h *heartbeatTracker) ResetWithGrace(nodeID string, now time.Time, grace time.Duration) {
	h.mu.Lock()
	h.deadlines[nodeID] = now.Add(h.ttl + grace)
	h.mu.Unlock()
}

// Expedite moves node's deadline forward to at (if that is sooner), for a
// node whose agent the gossip pool declared failed: the node goes down at
// at unless a heartbeat arrives first (an agent that is only restarting).
func (h *heartbeatTracker) Expedite(nodeID string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d, ok := h.deadlines[nodeID]; !ok || at.Before(d) {
		h.deadlines[nodeID] = at
	}
}

// Remove stops tracking node (it is down, deregistered, or we lost
// leadership).
func (h *heartbeatTracker) Remove(nodeID string) {
	h.mu.Lock()
	delete(h.deadlines, nodeID)
	h.mu.Unlock()
}

// Clear stops tracking every node.
func (h *heartbeatTracker) Clear() {
	h.mu.Lock()
	h.deadlines = map[string]time.Time{}
	h.mu.Unlock()
}

// Expired returns, sorted, the nodes whose deadline is before now and
// stops tracking them.
func (h *heartbeatTracker) Expired(now time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, d := range h.deadlines {
		if d.Before(now) {
			out = append(out, id)
			delete(h.deadlines, id)
		}
	}
	sort.Strings(out)
	return out
}

// Tracked reports whether node has a pending deadline.
func (h *heartbeatTracker) Tracked(nodeID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.deadlines[nodeID]
	return ok
}
