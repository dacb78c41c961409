package scheduler

import "errors"

// Errors of the server role. Check them with errors.Is; the HTTP API maps
// them to status codes (ErrNoLeader is a 503).
var (
	// ErrNoDataDir means Config.DataDir is empty; set --data-dir.
	ErrNoDataDir = errors.New("scheduler: data directory is required (--data-dir)")
	// ErrInsecure means a server would listen on a non-loopback address
	// without TLS; give --ca-file, --cert-file and --key-file, or
	// --insecure to accept the risk.
	ErrInsecure = errors.New("scheduler: refusing to listen on a non-loopback address without TLS (give --ca-file, --cert-file and --key-file, or --insecure)")
	// ErrBadConfig wraps any other invalid setting.
	ErrBadConfig = errors.New("scheduler: invalid configuration")
	// ErrNoLeader means the cluster has no leader right now; retry once a
	// quorum of servers is up.
	ErrNoLeader = errors.New("scheduler: no cluster leader (is a quorum of servers up?); retry shortly")
	// ErrBrokerDisabled means the broker is off because this server is not
	// the leader; evaluations are only processed on the leader.
	ErrBrokerDisabled = errors.New("scheduler: eval broker disabled (not the leader)")
	// ErrUnknownEval means an Ack or Nack named an evaluation that is not
	// outstanding, or used a stale token after the eval was redelivered.
	ErrUnknownEval = errors.New("scheduler: evaluation is not outstanding with this token")

	// errApplierStopped means the plan applier stopped (leadership lost or
	// shutdown) before it handled a plan; the worker nacks its evaluation.
	errApplierStopped = errors.New("scheduler: plan applier stopped (leadership lost?)")
)
