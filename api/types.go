package api

import (
	"encoding/json"
	"fmt"
	"iter"
	"time"
)

// Job types.
const (
	JobTypeService = "service"
	JobTypeBatch   = "batch"
	JobTypeSystem  = "system"
)

// Job statuses, derived by the server from the job's allocations.
const (
	JobStatusPending = "pending"
	JobStatusRunning = "running"
	JobStatusDead    = "dead"
)

// Job is the unit a user submits: groups of tasks to place on nodes.
// ID is the job's name; names are unique in the cluster.
type Job struct {
	ID          string            `json:"id,omitempty"`
	Name        string            `json:"name"`
	Type        string            `json:"type,omitempty"`
	Priority    int               `json:"priority,omitempty"`
	Datacenters []string          `json:"datacenters,omitempty"`
	Constraints []Constraint      `json:"constraints,omitempty"`
	Affinities  []Affinity        `json:"affinities,omitempty"`
	Spreads     []Spread          `json:"spread,omitempty"`
	Groups      []*Group          `json:"groups"`
	Meta        map[string]string `json:"meta,omitempty"`

	// Set by the server.
	Stop           bool   `json:"stop,omitempty"`
	Status         string `json:"status,omitempty"`
	Version        uint64 `json:"version,omitempty"`
	SubmitTime     int64  `json:"submit_time,omitempty"` // unix nanoseconds, stamped by the HTTP layer, never by the FSM
	CreateIndex    uint64 `json:"create_index,omitempty"`
	ModifyIndex    uint64 `json:"modify_index,omitempty"`
	JobModifyIndex uint64 `json:"job_modify_index,omitempty"`
}

// Tasks yields every task of the job with its group, passing over null
// groups and tasks (a job read from the wire may hold them until it is
// validated).
func (j *Job) Tasks() iter.Seq2[*Group, *Task] {
	return func(yield func(*Group, *Task) bool) {
		if j == nil {
			return
		}
		for _, g := range j.Groups {
			if g == nil {
				continue
			}
			for _, t := range g.Tasks {
				if t != nil && !yield(g, t) {
					return
				}
			}
		}
	}
}

// Group is a set of tasks placed together on one node, Count times.
type Group struct {
	Name        string         `json:"name"`
	Count       int            `json:"count,omitempty"`
	Constraints []Constraint   `json:"constraints,omitempty"`
	Affinities  []Affinity     `json:"affinities,omitempty"`
	Spreads     []Spread       `json:"spread,omitempty"`
	Restart     *RestartPolicy `json:"restart,omitempty"`
	// Reschedule bounds how often a failed copy is placed again (on any
	// node) after its restarts are used up. nil takes the job type's
	// default.
	Reschedule *ReschedulePolicy `json:"reschedule,omitempty"`
	Gang       bool              `json:"gang,omitempty"` // place all Count copies at once or none
	Tasks      []*Task           `json:"tasks"`
}

// Restart modes.
const (
	RestartModeFail  = "fail"
	RestartModeDelay = "delay"
)

// RestartPolicy says how the agent restarts a failed task in place.
type RestartPolicy struct {
	Attempts int      `json:"attempts"`
	Interval Duration `json:"interval,omitempty"`
	Delay    Duration `json:"delay,omitempty"`
	Mode     string   `json:"mode,omitempty"`
	// OnSuccess restarts a task that exited 0 too (docker's --restart always).
	OnSuccess bool `json:"on_success,omitempty"`
}

// ReschedulePolicy bounds replacing failed copies of a group.
type ReschedulePolicy struct {
	// Attempts is how many times a failed copy is replaced; 0 never
	// replaces it (docker run semantics).
	Attempts int `json:"attempts"`
}

// Task is one container.
type Task struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	// Command replaces the image's Cmd; Entrypoint replaces its Entrypoint.
	// A nil Entrypoint (JSON null or absent) keeps the image's value, an
	// empty one ([]) clears it.
	Command    []string          `json:"command,omitempty"`
	Entrypoint []string          `json:"entrypoint"`
	Env        map[string]string `json:"env,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	User       string            `json:"user,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Resources  Resources         `json:"resources,omitempty"`
	Ports      []Port            `json:"ports,omitempty"`
	Volumes    []string          `json:"volumes,omitempty"` // NAME:/path[:ro] or /host:/path[:ro]
	Network    string            `json:"network,omitempty"` // bridge|none|host|NAME|container:ID
	// NetworkAliases are more names the task answers to on a user network.
	NetworkAliases []string `json:"network_aliases,omitempty"`
	StopTimeout    Duration `json:"stop_timeout,omitempty"`
	StopSignal     string   `json:"stop_signal,omitempty"`
	CapAdd         []string `json:"cap_add,omitempty"`
	CapDrop        []string `json:"cap_drop,omitempty"`
	Tty            bool     `json:"tty,omitempty"`
	Interactive    bool     `json:"interactive,omitempty"`
	// Auth is the registry credential for pulling Image (a job spec's
	// "auth: {username, password}" or an identity token; the CLI fills
	// it from the submitter's login). The servers keep its password and
	// tokens in their Raft log and snapshots sealed with the secrets key
	// (in the clear only when a server has no key), hand them only to
	// the node that runs the task (GET /v1/nodes/{id}/allocations) and
	// show them redacted everywhere else.
	Auth *RegistryAuth `json:"auth,omitempty"`
	// Privileged runs the container with every capability and device
	// (docker's --privileged). With ACLs on, submitting it needs the
	// privileged right on the job.
	Privileged bool `json:"privileged,omitempty"`
	// Secrets are cluster secrets mounted as files (see TaskSecret).
	Secrets []TaskSecret `json:"secrets,omitempty"`
	// ReadOnly makes the root filesystem read-only (--read-only); /dev,
	// /proc, /sys, volumes and Tmpfs mounts stay as they are.
	ReadOnly bool `json:"read_only,omitempty"`
	// Tmpfs mounts a tmpfs at each PATH[:OPTIONS], such as
	// "/run:size=64m" (--tmpfs).
	Tmpfs []string `json:"tmpfs,omitempty"`
	// NoNewPrivileges stops setuid binaries and file capabilities from
	// raising privileges (--security-opt no-new-privileges).
	NoNewPrivileges bool `json:"no_new_privileges,omitempty"`
	// Seccomp is the system call filter: empty for Docker's default
	// profile, "unconfined" for none, or a profile in Docker's JSON
	// format (--security-opt seccomp=unconfined|FILE).
	Seccomp string `json:"seccomp,omitempty"`
	// Userns "private" maps root in the container to an unprivileged
	// range of host IDs (--userns); empty or "host" shares the host's.
	Userns string `json:"userns,omitempty"`
}

// Resources asks for capacity. CPU is in millicores, Memory in MiB.
type Resources struct {
	CPU       int         `json:"cpu,omitempty"`
	MemoryMB  int         `json:"memory,omitempty"`
	PidsLimit int         `json:"pids_limit,omitempty"`
	GPUs      *GPURequest `json:"gpus,omitempty"`
}

// GPURequest asks for GPUs on one node.
type GPURequest struct {
	Count        int    `json:"count"`
	Model        string `json:"model,omitempty"` // exact, or a regexp
	MinMemoryMiB int    `json:"min_memory_mib,omitempty"`
	MIGProfile   string `json:"mig_profile,omitempty"`
	Topology     string `json:"topology,omitempty"` // "" or "nvlink"
}

// Port is a port a task listens on. To is the container port; Static is a
// fixed host port (a node resource); zero Static means a dynamic one.
type Port struct {
	Name     string `json:"name,omitempty"`
	To       int    `json:"to"`
	Static   int    `json:"static,omitempty"`
	Protocol string `json:"protocol,omitempty"` // tcp (default) or udp
	HostIP   string `json:"host_ip,omitempty"`
}

// Constraint operators.
const (
	OpEqual         = "="
	OpNotEqual      = "!="
	OpRegexp        = "regexp"
	OpVersion       = "version"
	OpSetContains   = "set_contains"
	OpDistinctHosts = "distinct_hosts"
)

// Constraint filters nodes. Attribute is an interpolated node attribute such
// as ${node.label.rack}, ${attr.kernel.name} or ${node.datacenter}.
type Constraint struct {
	Attribute string `json:"attribute,omitempty"`
	Operator  string `json:"operator,omitempty"`
	Value     string `json:"value,omitempty"`
}

// Affinity prefers nodes; Weight is -100..100.
type Affinity struct {
	Attribute string `json:"attribute"`
	Operator  string `json:"operator,omitempty"`
	Value     string `json:"value"`
	Weight    int    `json:"weight,omitempty"`
}

// Spread spreads allocations across the values of an attribute.
type Spread struct {
	Attribute string `json:"attribute"`
	Weight    int    `json:"weight,omitempty"`
}

// Node statuses and eligibility.
const (
	NodeStatusInit  = "initializing"
	NodeStatusReady = "ready"
	NodeStatusDown  = "down"

	NodeEligible   = "eligible"
	NodeIneligible = "ineligible"
)

// Node is an agent host.
type Node struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Datacenter  string            `json:"datacenter,omitempty"`
	HTTPAddr    string            `json:"http_addr,omitempty"` // agent API, host:port
	Status      string            `json:"status,omitempty"`
	Eligibility string            `json:"eligibility,omitempty"`
	Drain       bool              `json:"drain,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"` // kernel.name, cpu.cores, os.name, cgroup.version, ...
	Labels      map[string]string `json:"labels,omitempty"`
	Resources   NodeResources     `json:"resources"`
	// StatusUpdatedAt is unix nanoseconds, stamped outside the FSM.
	StatusUpdatedAt int64 `json:"status_updated_at,omitempty"`
	// TokenAccessor is the accessor of the ACL token that registered the
	// node (set by the server): only that token, or a management one, may
	// heartbeat it, read its allocations and report their status.
	TokenAccessor string `json:"token_accessor,omitempty"`
	CreateIndex   uint64 `json:"create_index,omitempty"`
	ModifyIndex   uint64 `json:"modify_index,omitempty"`
}

// NodeResources is a node's schedulable capacity.
type NodeResources struct {
	CPU      int         `json:"cpu"`    // millicores
	MemoryMB int         `json:"memory"` // MiB
	DiskMB   int         `json:"disk,omitempty"`
	GPUs     []GPUDevice `json:"gpus,omitempty"`
}

// GPUDevice is one schedulable GPU or MIG instance.
type GPUDevice struct {
	UUID        string   `json:"uuid"`
	Index       int      `json:"index"`
	Model       string   `json:"model"`
	MemoryMiB   int      `json:"memory_mib"`
	Healthy     bool     `json:"healthy"`
	NUMANode    int      `json:"numa_node"`
	PCIBusID    string   `json:"pci_bus_id,omitempty"`
	NVLinkPeers []string `json:"nvlink_peers,omitempty"` // UUIDs
	MIGProfile  string   `json:"mig_profile,omitempty"`
	ParentUUID  string   `json:"parent_uuid,omitempty"` // set for MIG instances
}

// Allocation desired statuses (what the server wants) and client statuses
// (what the agent reports).
const (
	AllocDesiredRun   = "run"
	AllocDesiredStop  = "stop"
	AllocDesiredEvict = "evict"

	AllocClientPending  = "pending"
	AllocClientRunning  = "running"
	AllocClientComplete = "complete"
	AllocClientFailed   = "failed"
	AllocClientLost     = "lost"
)

// Allocation is one copy of a group placed on one node.
type Allocation struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"` // job.group[index]
	JobID     string      `json:"job_id"`
	Job       *Job        `json:"job,omitempty"` // the job version this allocation runs
	Group     string      `json:"group"`
	Index     int         `json:"index"`
	NodeID    string      `json:"node_id"`
	NodeName  string      `json:"node_name,omitempty"`
	EvalID    string      `json:"eval_id,omitempty"`
	Resources Resources   `json:"resources"`      // sum over the group's tasks
	GPUs      []string    `json:"gpus,omitempty"` // assigned device UUIDs
	Ports     []AllocPort `json:"ports,omitempty"`

	DesiredStatus      string `json:"desired_status"`
	DesiredDescription string `json:"desired_description,omitempty"`
	ClientStatus       string `json:"client_status"`
	ClientDescription  string `json:"client_description,omitempty"`

	TaskStates         map[string]*TaskState `json:"task_states,omitempty"`
	PreviousAllocation string                `json:"previous_allocation,omitempty"`

	CreateTime  int64  `json:"create_time,omitempty"` // unix nanoseconds, stamped outside the FSM
	CreateIndex uint64 `json:"create_index,omitempty"`
	ModifyIndex uint64 `json:"modify_index,omitempty"`
}

// Terminal reports whether the allocation will not run again.
func (a *Allocation) Terminal() bool {
	switch a.ClientStatus {
	case AllocClientComplete, AllocClientFailed, AllocClientLost:
		return true
	}
	return a.DesiredStatus != AllocDesiredRun && a.ClientStatus != AllocClientRunning
}

// AllocPort is a published port as assigned on the node.
type AllocPort struct {
	Label    string `json:"label,omitempty"`
	HostIP   string `json:"host_ip,omitempty"`
	Value    int    `json:"value"` // host port
	To       int    `json:"to"`    // container port
	Protocol string `json:"protocol,omitempty"`
}

// Task states.
const (
	TaskStatePending = "pending"
	TaskStateRunning = "running"
	TaskStateDead    = "dead"
)

// TaskState is what the agent reports about one task's container.
type TaskState struct {
	State       string `json:"state"`
	Failed      bool   `json:"failed,omitempty"`
	ExitCode    int    `json:"exit_code"`
	Signal      int    `json:"signal,omitempty"`
	OOMKilled   bool   `json:"oom_killed,omitempty"`
	Restarts    int    `json:"restarts,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Pid         int    `json:"pid,omitempty"`
	StartedAt   int64  `json:"started_at,omitempty"`
	FinishedAt  int64  `json:"finished_at,omitempty"`
	Message     string `json:"message,omitempty"`
	// Health is the image HEALTHCHECK's verdict while the task runs:
	// "starting", "healthy" or "unhealthy"; empty without a healthcheck.
	Health string `json:"health,omitempty"`
}

// Evaluation statuses and triggers.
const (
	EvalStatusPending  = "pending"
	EvalStatusComplete = "complete"
	EvalStatusFailed   = "failed"
	EvalStatusBlocked  = "blocked"

	EvalTriggerJobRegister   = "job-register"
	EvalTriggerJobDeregister = "job-deregister"
	EvalTriggerNodeUpdate    = "node-update"
	EvalTriggerAllocFailure  = "alloc-failure"
	EvalTriggerNodeDrain     = "node-drain"
)

// Evaluation asks the scheduler to reconcile one job with the cluster.
type Evaluation struct {
	ID                string `json:"id"`
	JobID             string `json:"job_id"`
	Type              string `json:"type"`
	Priority          int    `json:"priority"`
	TriggeredBy       string `json:"triggered_by"`
	NodeID            string `json:"node_id,omitempty"`
	Status            string `json:"status"`
	StatusDescription string `json:"status_description,omitempty"`
	// FailedTGAllocs explains, per group, why copies could not be placed.
	FailedTGAllocs map[string]string `json:"failed_tg_allocs,omitempty"`
	CreateIndex    uint64            `json:"create_index,omitempty"`
	ModifyIndex    uint64            `json:"modify_index,omitempty"`
}

// Image is an image in one node's local store.
type Image struct {
	ID       string   `json:"id"` // sha256:... of the config
	RepoTags []string `json:"repo_tags,omitempty"`
	Digest   string   `json:"digest,omitempty"` // manifest digest, when known
	Size     int64    `json:"size"`
	Created  int64    `json:"created,omitempty"` // unix seconds
	Node     string   `json:"node,omitempty"`
}

// Error is the JSON body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// Duration is a time.Duration that reads "30s" or nanoseconds in JSON and
// writes "30s".
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("invalid duration %s: want a string such as \"30s\"", b)
	}
	*d = Duration(n)
	return nil
}
