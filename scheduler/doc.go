// Package scheduler is berth's server role: the Raft-replicated control
// plane that stores jobs, nodes and allocations and, on the leader, turns
// jobs into placements.
//
// A server is started with Run (the `berth server` command) or embedded
// with New, Start and Shutdown (`berth dev`, tests). Around the pure
// placement algorithm in scheduler/placement it runs:
//
//   - the echo HTTP API of api/requests.go, which validates input at the
//     edge, forwards writes from followers to the leader and answers
//     blocking queries;
//   - on the leader only: the eval broker (priorities, at-least-once
//     delivery, one evaluation per job in flight), the workers that call
//     placement.Schedule on a state snapshot, the plan applier that
//     re-checks every node against the newest state before committing
//     (so no node is ever overcommitted), heartbeat timers that mark
//     silent nodes down, and blocked evaluations that are retried when
//     capacity appears;
//   - gossip membership (internal/gossip) for --bootstrap-expect, for
//     mapping the leader's Raft address to its HTTP address, and for
//     noticing dead agents before their heartbeat TTL runs out.
//
// See README.md for the pipeline.
package scheduler
