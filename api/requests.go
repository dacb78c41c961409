package api

// Request and response bodies of the server's HTTP API. Routes (all JSON;
// every response carries the X-Berth-Index header; a GET with
// ?index=N&wait=DURATION blocks until the state passes index N):
//
//	GET    /v1/jobs                         []*Job
//	POST   /v1/jobs                         JobRegisterRequest → JobRegisterResponse
//	GET    /v1/jobs/{id}                    *Job
//	DELETE /v1/jobs/{id}[?purge=true]       JobDeregisterResponse
//	GET    /v1/jobs/{id}/allocations        []*Allocation
//	POST   /v1/jobs/{id}/plan               JobRegisterRequest → JobPlanResponse (dry run)
//	GET    /v1/allocations                  []*Allocation
//	GET    /v1/allocations/{id}             *Allocation
//	PUT    /v1/allocations/status           AllocUpdateRequest → WriteResponse (agents)
//	GET    /v1/evaluations                  []*Evaluation
//	GET    /v1/evaluations/{id}             *Evaluation
//	GET    /v1/nodes                        []*Node
//	GET    /v1/nodes/{id}                   *Node (ID or unique prefix, or name)
//	POST   /v1/nodes/register               NodeRegisterRequest → NodeRegisterResponse
//	PUT    /v1/nodes/{id}/heartbeat         → NodeRegisterResponse
//	GET    /v1/nodes/{id}/allocations       []*Allocation (agents block on this)
//	POST   /v1/nodes/{id}/drain             NodeDrainRequest → WriteResponse
//	POST   /v1/nodes/{id}/eligibility       NodeEligibilityRequest → WriteResponse
//	GET    /v1/status/leader                "IP:PORT" (the leader's Raft address)
//	GET    /v1/status/peers                 []string
//	GET    /v1/operator/raft/peers          []RaftPeer
//	DELETE /v1/operator/raft/peers?id=ID    WriteResponse
//	GET    /v1/members                      []Member
//	GET    /v1/metrics                      Prometheus text
//	GET    /v1/agent/health                 Health
//
// Errors are {"error": "..."} with a 4xx or 5xx status.

// HeaderIndex is the response header that carries the state index a read
// observed, for use as the next blocking query's index.
const HeaderIndex = "X-Berth-Index"

// JobRegisterRequest submits or updates a job.
type JobRegisterRequest struct {
	Job *Job `json:"job"`
}

// JobRegisterResponse acknowledges a job: once it is returned, the job is
// committed in Raft and will not be lost.
type JobRegisterResponse struct {
	EvalID         string   `json:"eval_id"`
	JobModifyIndex uint64   `json:"job_modify_index"`
	Index          uint64   `json:"index"`
	Warnings       []string `json:"warnings,omitempty"`
}

// JobDeregisterResponse acknowledges a stop.
type JobDeregisterResponse struct {
	EvalID string `json:"eval_id"`
	Index  uint64 `json:"index"`
}

// JobPlanResponse says what registering a job would do, without doing it.
type JobPlanResponse struct {
	Placements map[string]int    `json:"placements"`       // group → new allocations
	Stops      map[string]int    `json:"stops,omitempty"`  // group → allocations stopped
	Failed     map[string]string `json:"failed,omitempty"` // group → why not all copies fit
	Nodes      map[string]int    `json:"nodes,omitempty"`  // node name → new allocations
}

// AllocUpdateRequest carries agents' reports. Only ID, ClientStatus,
// ClientDescription and TaskStates of each allocation are read.
type AllocUpdateRequest struct {
	Allocs []*Allocation `json:"allocs"`
}

// WriteResponse is the answer to a write with nothing else to say.
type WriteResponse struct {
	Index uint64 `json:"index"`
}

// NodeRegisterRequest registers or re-registers an agent's node.
type NodeRegisterRequest struct {
	Node *Node `json:"node"`
}

// NodeRegisterResponse tells the agent how often to heartbeat.
type NodeRegisterResponse struct {
	HeartbeatTTL Duration `json:"heartbeat_ttl"`
	Index        uint64   `json:"index"`
}

// NodeDrainRequest turns a node's drain on or off.
type NodeDrainRequest struct {
	Enable bool `json:"enable"`
}

// NodeEligibilityRequest marks a node eligible or not for new placements.
type NodeEligibilityRequest struct {
	Eligible bool `json:"eligible"`
}

// RaftPeer is one server in the Raft configuration.
type RaftPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// Member is one member of the gossip pool.
type Member struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"` // gossip host:port
	Role       string `json:"role"` // server or agent
	Status     string `json:"status"`
	HTTPAddr   string `json:"http_addr,omitempty"`
	RaftAddr   string `json:"raft_addr,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	Leader     bool   `json:"leader,omitempty"`
}

// Health is the answer of /v1/agent/health.
type Health struct {
	OK      bool   `json:"ok"`
	Role    string `json:"role,omitempty"`
	Leader  string `json:"leader,omitempty"`
	Version string `json:"version,omitempty"`
}
