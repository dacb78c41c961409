// Package placement is berth's scheduling algorithm: a pure function from
// a read-only cluster snapshot and a job to a plan. It does no I/O, reads
// no clock, draws no random numbers and starts no goroutines, so the same
// inputs always give the same plan, and the whole package is tested with
// static fakes.
//
// The server uses it in three places:
//
//   - At the HTTP edge, before Raft: Canonicalize fills a job's defaults,
//     then ValidateJob refuses a bad spec with an error that names the
//     field ("groups[0].tasks[1].resources.memory: must be >= 0").
//   - In a worker: Schedule(snapshot, eval, job, opts) reconciles the job
//     with the cluster and returns a Plan (allocations to place, to stop,
//     to preempt, and per group why copies could not be placed).
//   - In the plan applier: Fits re-verifies each node of a plan against
//     the newest state, so no node is ever overcommitted even when several
//     workers plan at once.
//
// Schedule first reconciles (reconcile.go): missing copies are placed by
// index name (job.group[i]); a stopped or removed job has all its copies
// stopped; a lowered count stops the highest indexes; a changed task spec
// stops each copy and places a new one with the same name; copies on down
// nodes are marked lost and replaced (batch copies that completed are
// left alone); copies on draining nodes migrate (service and system);
// failed service copies are replaced with PreviousAllocation set, up to
// a cap of failures along the chain (10 for service, 1 for batch, in place
// of Nomad's clock-based reschedule delays); a system job gets exactly one
// copy per ready, eligible node that matches it.
//
// Then each copy goes through a chain of small iterators (see README.md):
// feasibility filters, then a fit that checks cpu, memory, host ports and
// GPUs against the node's capacity minus its live allocations (including
// those placed earlier in the same plan) and assigns devices and ports,
// then scoring links: binpack or spread, job anti-affinity, affinities,
// spread over an attribute, and the fragmentation-aware GPU best fit. The
// best score wins, ties going to the lowest node ID.
//
// Speed: per-node usage is built lazily from State.AllocsByNode the first
// time a node is looked at and kept up to date as the plan grows, and a
// placement compares at most max(2, ceil(log2 N)) fitting nodes (Nomad's
// limit) unless the group asks for GPUs or has affinities or spreads, when
// it looks at all of them. Instead of Nomad's random shuffle, the walk
// over the ID-sorted nodes starts at an offset derived from the
// evaluation ID (FNV-1a), and each placement continues where the previous
// one stopped.
//
// Resources: cpu is in millicores and memory in MiB. Tasks ask for no
// disk, so node disk capacity is not checked. Static host ports are node
// resources (per protocol); dynamic ports get the lowest free port in
// 20000-32000. GPUs are assigned per device UUID; MIG instances are
// devices of their own, and a GPU split into MIG instances is not.
//
// Preemption (Options.PreemptionEnabled): when no node fits a copy, the
// scheduler looks for the smallest set of allocations of jobs at least
// PreemptionPriorityGap lower in priority whose eviction makes it fit on
// one node, and records them in Plan.NodePreemptions.
package placement
