package placement

import (
	"maps"
	"sync"

	"github.com/berth-dev/berth/api"
)

// UsageCache remembers, across Schedule calls, what the live allocations
// of a node hold, so that a placement does not rebuild it from every
// allocation of every candidate node each time. Building it was most of
// a busy leader's scheduling time: a node's allocation list changes only
// when a plan touches that node, while every evaluation weighs thousands
// of nodes.
//
// An entry is keyed by the node object and the identity of the allocation
// list that State.AllocsByNode returned: the address of its backing array
// and its length. That is sound only for a State whose node objects and
// allocation lists are never changed in place once returned, as the
// consensus state store's are: a changed node or list is a new object and
// simply misses. While an entry holds the array's address, the array
// cannot be freed and reused for another list, so a stale hit is
// impossible. A State that builds a fresh list on every call only misses.
//
// The cache only saves work: Schedule's result is the same with or
// without it. It holds at most about 2×maxEntries entries (two
// generations; the older one is dropped when the newer fills up). Safe for
// concurrent use.
type UsageCache struct {
	mu         sync.Mutex
	cur, old   map[usageKey]*nodeUsage
	maxEntries int
	hits, miss uint64
}

type usageKey struct {
	node  *api.Node
	array **api.Allocation // &list[0]: the backing array, not its first element
	n     int
}

// DefaultUsageCacheEntries is the generation size of NewUsageCache(0):
// room for every node of a large cluster.
const DefaultUsageCacheEntries = 1 << 14

// NewUsageCache returns an empty cache whose generations hold maxEntries
// entries (DefaultUsageCacheEntries when maxEntries <= 0).
func NewUsageCache(maxEntries int) *UsageCache {
	if maxEntries <= 0 {
		maxEntries = DefaultUsageCacheEntries
	}
	return &UsageCache{cur: map[usageKey]*nodeUsage{}, maxEntries: maxEntries}
}

// Stats reports cache hits and misses so far.
func (c *UsageCache) Stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.miss
}

// get returns the cached usage of a node whose allocations are list,
// building and remembering it on a miss. It is shared and read-only
// (shared is set): a caller that wants to change it copies it and calls
// own on the copy.
func (c *UsageCache) get(n *api.Node, list []*api.Allocation) *nodeUsage {
	k := usageKey{node: n, n: len(list)}
	if len(list) > 0 {
		k.array = &list[0]
	}
	c.mu.Lock()
	u := c.cur[k]
	if u == nil {
		if u = c.old[k]; u != nil {
			c.put(k, u)
		}
	}
	if u != nil {
		c.hits++
		c.mu.Unlock()
		return u
	}
	c.miss++
	c.mu.Unlock()

	u = newNodeUsage(n)
	u.allocs = make([]*api.Allocation, 0, len(list))
	for _, a := range list {
		if live(a) {
			u.add(a)
		}
	}
	u.shared = true
	c.mu.Lock()
	c.put(k, u)
	c.mu.Unlock()
	return u
}

// put stores an entry; callers hold mu.
func (c *UsageCache) put(k usageKey, u *nodeUsage) {
	if len(c.cur) >= c.maxEntries {
		c.old, c.cur = c.cur, make(map[usageKey]*nodeUsage, c.maxEntries/2)
	}
	c.cur[k] = u
}

// own makes a copy of a shared usage (cp := *shared) safe to change: the
// ports map is copied and the slices capped at their length, so appends
// copy them; the read-only device tables stay shared.
func (u *nodeUsage) own() {
	if !u.shared {
		return
	}
	u.shared = false
	u.allocs = u.allocs[:len(u.allocs):len(u.allocs)]
	u.gpus = u.gpus[:len(u.gpus):len(u.gpus)]
	if u.ports != nil {
		u.ports = maps.Clone(u.ports)
	}
}
