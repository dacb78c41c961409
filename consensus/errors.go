package consensus

import "errors"

// Errors returned by this package. Check them with errors.Is: they are
// usually wrapped with the ID or address involved.
var (
	// ErrNotLeader means the write reached a follower: forward it to the
	// leader (Node.LeaderAddr) and retry.
	ErrNotLeader = errors.New("consensus: not the leader")

	// ErrLeadershipLost means leadership was lost while the write was in
	// flight: it may or may not have been committed, so re-read the state
	// before retrying.
	ErrLeadershipLost = errors.New("consensus: leadership lost while committing; check the state before retrying")

	// ErrTimeout means Raft did not accept or commit the write in time,
	// usually because no quorum is reachable.
	ErrTimeout = errors.New("consensus: timed out waiting for raft; is a quorum of servers up?")

	// ErrShutdown means the node has been shut down.
	ErrShutdown = errors.New("consensus: raft node is shut down")

	// ErrJobNotFound is the FSM's answer to a write about a job that does
	// not exist; nothing was changed.
	ErrJobNotFound = errors.New("consensus: job not found")

	// ErrNodeNotFound is the FSM's answer to a write about a node that does
	// not exist; nothing was changed.
	ErrNodeNotFound = errors.New("consensus: node not found")

	// ErrInvalidRequest is the FSM's answer to a request that lacks a
	// required field (a nil job, an empty ID); nothing was changed. The HTTP
	// layer validates first, so this means a bug in the caller.
	ErrInvalidRequest = errors.New("consensus: invalid request")

	// ErrAlreadyBootstrapped means the node already has Raft state, so it
	// cannot bootstrap a new cluster; it will rejoin its existing one.
	ErrAlreadyBootstrapped = errors.New("consensus: raft state already exists; not bootstrapping")
)
