package consensus

import (
	"encoding/json"
	"fmt"

	"github.com/berth-dev/berth/api"
)

// MessageType is the first byte of every Raft log entry written by berth. The
// rest of the entry is the JSON encoding of the request struct named beside
// each constant. Values are part of the on-disk format: never renumber them.
type MessageType uint8

// Message types, one per request struct.
const (
	JobRegisterRequestType           MessageType = 1  // JobRegisterRequest
	JobDeregisterRequestType         MessageType = 2  // JobDeregisterRequest
	NodeRegisterRequestType          MessageType = 3  // NodeRegisterRequest
	NodeUpdateStatusRequestType      MessageType = 4  // NodeUpdateStatusRequest
	NodeUpdateEligibilityRequestType MessageType = 5  // NodeUpdateEligibilityRequest
	EvalUpdateRequestType            MessageType = 6  // EvalUpdateRequest
	PlanApplyRequestType             MessageType = 7  // PlanApplyRequest
	AllocClientUpdateRequestType     MessageType = 8  // AllocClientUpdateRequest
	NodeDeregisterRequestType        MessageType = 9  // NodeDeregisterRequest
	ConfigRequestType                MessageType = 10 // SchedulerConfig
)

// String names the message type for logs and panics.
func (t MessageType) String() string {
	switch t {
	case JobRegisterRequestType:
		return "JobRegister"
	case JobDeregisterRequestType:
		return "JobDeregister"
	case NodeRegisterRequestType:
		return "NodeRegister"
	case NodeUpdateStatusRequestType:
		return "NodeUpdateStatus"
	case NodeUpdateEligibilityRequestType:
		return "NodeUpdateEligibility"
	case EvalUpdateRequestType:
		return "EvalUpdate"
	case PlanApplyRequestType:
		return "PlanApply"
	case AllocClientUpdateRequestType:
		return "AllocClientUpdate"
	case NodeDeregisterRequestType:
		return "NodeDeregister"
	case ConfigRequestType:
		return "Config"
	case GCRequestType:
		return "GC"
	case ServerTombstoneRequestType:
		return "ServerTombstone"
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// JobRegisterRequest creates or updates a job and, usually, the evaluation
// that schedules it. Job.SubmitTime must be stamped by the caller. The FSM
// sets Stop=false, CreateIndex on first insert, ModifyIndex and
// JobModifyIndex on every register, and Version: 0 for a new job, +1 when
// the spec (everything but the server-set fields) changed.
type JobRegisterRequest struct {
	Job  *api.Job        `json:"job"`
	Eval *api.Evaluation `json:"eval,omitempty"`
}

// JobDeregisterRequest stops a job (Stop=true) or, with Purge, deletes it.
// Its allocations are left to the scheduler, which the Eval triggers.
type JobDeregisterRequest struct {
	JobID string          `json:"job_id"`
	Purge bool            `json:"purge,omitempty"`
	Eval  *api.Evaluation `json:"eval,omitempty"`
}

// NodeRegisterRequest creates or refreshes a node. A re-registration keeps
// the operator's Drain and, when Node.Eligibility is empty, Eligibility.
type NodeRegisterRequest struct {
	Node  *api.Node         `json:"node"`
	Evals []*api.Evaluation `json:"evals,omitempty"`
}

// NodeUpdateStatusRequest sets a node's status (ready, down, ...).
// UpdatedAt (unix nanoseconds) is stamped by the caller, never by the FSM.
type NodeUpdateStatusRequest struct {
	NodeID    string            `json:"node_id"`
	Status    string            `json:"status"`
	UpdatedAt int64             `json:"updated_at,omitempty"`
	Evals     []*api.Evaluation `json:"evals,omitempty"`
}

// NodeUpdateEligibilityRequest changes scheduling eligibility and/or drain.
// An empty Eligibility leaves it as is; a nil Drain leaves drain as is;
// Drain=true also makes the node ineligible.
type NodeUpdateEligibilityRequest struct {
	NodeID      string            `json:"node_id"`
	Eligibility string            `json:"eligibility,omitempty"`
	Drain       *bool             `json:"drain,omitempty"`
	Evals       []*api.Evaluation `json:"evals,omitempty"`
}

// NodeDeregisterRequest deletes a node. Its allocations stay until the
// scheduler stops or replaces them.
type NodeDeregisterRequest struct {
	NodeID string `json:"node_id"`
}

// EvalUpdateRequest inserts or replaces evaluations.
type EvalUpdateRequest struct {
	Evals []*api.Evaluation `json:"evals"`
}

// PlanApplyRequest commits the part of a plan that the plan applier verified:
// new or updated allocations (full objects) and follow-up evaluations.
// A new allocation gets CreateIndex, ClientStatus pending and DesiredStatus
// run unless set; an existing one keeps its CreateIndex, and its
// ClientStatus/ClientDescription, TaskStates, DesiredStatus and CreateTime
// wherever the plan leaves them empty. An empty EvalID on an allocation
// becomes the request's EvalID. Every allocation gets ModifyIndex.
//
// Job is optional and only shrinks the log entry: an allocation whose Job is
// nil on the wire runs Job (when Job.ID matches its JobID) or, failing that,
// keeps the job of the stored allocation it replaces. Node.Apply strips
// allocation jobs that duplicate Job (or each other) before encoding, so
// callers may simply embed the job in every allocation. Allocations read
// back from the store always have Job set.
type PlanApplyRequest struct {
	Allocs []*api.Allocation `json:"allocs"`
	Evals  []*api.Evaluation `json:"evals,omitempty"`
	EvalID string            `json:"eval_id,omitempty"`
	Job    *api.Job          `json:"job,omitempty"`
}

// AllocClientUpdateRequest carries what agents report about allocations.
// Only ID, ClientStatus, ClientDescription and TaskStates of each allocation
// are read; unknown allocations are skipped.
type AllocClientUpdateRequest struct {
	Allocs []*api.Allocation `json:"allocs"`
	Evals  []*api.Evaluation `json:"evals,omitempty"`
}

// Scheduler algorithms accepted in SchedulerConfig.Algorithm.
const (
	AlgorithmBinpack = "binpack"
	AlgorithmSpread  = "spread"
)

// SchedulerConfig is the cluster-wide scheduler configuration, written with
// ConfigRequestType. The zero value means binpack without preemption.
type SchedulerConfig struct {
	PreemptionEnabled bool   `json:"preemption_enabled"`
	Algorithm         string `json:"algorithm,omitempty"`
	ModifyIndex       uint64 `json:"modify_index,omitempty"` // set by the FSM
}

// encodeEntry builds a log entry: the type byte followed by req as JSON.
func encodeEntry(t MessageType, req any) ([]byte, error) {
	if p, ok := req.(*PlanApplyRequest); ok {
		req = dedupPlanJobs(p)
	}
	buf := make([]byte, 1, 1024)
	buf[0] = byte(t)
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("consensus: encode %s request: %w", t, err)
	}
	return append(buf, body...), nil
}

// dedupPlanJobs returns a copy of p in which no allocation repeats the job
// that the request carries once. p and its allocations are left untouched
// (the caller may still be reading them); stripped allocations are shallow
// copies.
func dedupPlanJobs(p *PlanApplyRequest) *PlanApplyRequest {
	job := p.Job
	if job == nil {
		for _, a := range p.Allocs {
			if a != nil && a.Job != nil {
				job = a.Job
				break
			}
		}
	}
	if job == nil {
		return p
	}
	out := &PlanApplyRequest{Evals: p.Evals, EvalID: p.EvalID, Job: job, Allocs: make([]*api.Allocation, len(p.Allocs))}
	for i, a := range p.Allocs {
		if a != nil && a.Job != nil && a.JobID == job.ID && sameJob(a.Job, job) {
			c := *a
			c.Job = nil
			a = &c
		}
		out.Allocs[i] = a
	}
	return out
}

// sameJob reports whether two job objects are the same job version. Pointer
// equality is the common case: placement embeds one job in every allocation.
func sameJob(a, b *api.Job) bool {
	if a == b {
		return true
	}
	return a.ID == b.ID && a.Version == b.Version && a.JobModifyIndex == b.JobModifyIndex &&
		a.ModifyIndex == b.ModifyIndex && a.Stop == b.Stop
}
