// Package consensus is berth's replicated control-plane state: a
// hashicorp/raft node whose log and stable store is raft-boltdb/v2, whose
// snapshots are files, and whose state machine (FSM) keeps jobs,
// evaluations, allocations, nodes and the scheduler configuration in a
// hashicorp/go-memdb StateStore.
//
// # Writing
//
// Only the leader writes, and every write is one Raft log entry: a
// MessageType byte followed by the JSON of the matching request struct
// (JobRegisterRequest, PlanApplyRequest, ...). The scheduler calls
//
//	index, err := node.Apply(consensus.JobRegisterRequestType,
//		&consensus.JobRegisterRequest{Job: job, Eval: eval}, 5*time.Second)
//
// which returns once the entry is committed and applied on this server.
// errors.Is(err, ErrNotLeader) means forward the request to LeaderAddr.
//
// The FSM is deterministic: Apply reads no clock and draws no random
// numbers (times such as Job.SubmitTime arrive inside the request), does no
// I/O, and never lets map order reach the state, so every server holds the
// same state after the same log. Every object written gets the entry's Raft
// index (CreateIndex once, ModifyIndex each time), and the index table keeps
// the last index per table. An entry that cannot be decoded panics: the
// replicated log is broken and continuing would diverge.
//
// # Reading
//
// Objects read from the StateStore are shared and immutable: copy before
// changing (CopyJob, CopyAlloc, CopyNode, CopyEval). StateStore.Snapshot
// gives a frozen, consistent view in O(1); it implements the placement
// algorithm's State interface (Nodes, AllocsByNode, AllocsByJob).
// BlockingQuery re-runs a read until the state passes an index, waking on
// memdb watch channels, which backs the HTTP API's ?index=N&wait=30s.
//
// Snapshot reads a node's allocations from a radix tree that the FSM
// publishes together with the memdb snapshot after every entry (before
// Apply returns), so the placement algorithm's thousands of per-node reads
// per evaluation allocate nothing.
//
// # Garbage collection and tombstones
//
// A GCRequest (written by the leader every few minutes, or at once by
// `berth system gc`) removes finished evaluations, finished allocations of
// stopped jobs and dead batch jobs older than a threshold. Objects carry
// Raft indexes, not times: each GC entry records (its index, the leader's
// time from the request) in a replicated time table, and age is read from
// that table, never from a clock inside Apply. A ServerTombstoneRequest
// keeps a server removed with `remove-peer --force` out of the Raft
// configuration until it stops.
//
// # Snapshots
//
// FSM.Snapshot captures the memdb snapshot pointer; Persist streams it as
// JSON lines (allocation jobs are written once and referenced); Restore
// builds a fresh memdb and swaps it in, closing the old store's abandon
// channel so blocking queries re-run against the new state.
//
// # Tests
//
// Unit tests drive the FSM directly (FSM.ApplyEntry). Cluster tests run real
// Raft nodes on real disks: raft's InmemTransport where a partition must be
// cut and healed, and real TCP on loopback for full restarts.
package consensus
