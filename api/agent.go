package api

// The agent's HTTP API. Agents serve it on their own port (9473); servers
// proxy it so the CLI only ever talks to a server:
//
//	server: ANY /v1/nodes/{node}/agent/{rest...}  →  agent: /v1/{rest...}
//
// {node} is a node ID, unique ID prefix, or name. Agent routes:
//
//	GET    /v1/health                         Health
//	GET    /v1/metrics                        Prometheus text (berth_gpu_* and the process's own)
//	GET    /v1/gpus                           GPU samples as JSON (gpu.Stat)
//	GET    /v1/containers                     []ContainerInfo
//	GET    /v1/containers/{id}                ContainerInfo (ID, unique prefix, or name)
//	GET    /v1/containers/{id}/logs           stream of LogEntry JSON lines; ?follow=1&tail=N&since=RFC3339
//	GET    /v1/containers/{id}/wait           ExitResult (blocks until the container exits)
//	GET    /v1/containers/{id}/stats          ContainerStats
//	POST   /v1/containers/{id}/kill?signal=S  (S: name such as SIGTERM/TERM or a number)
//	POST   /v1/containers/{id}/exec           ExecRequest → stream of ExecFrame JSON lines
//	GET    /v1/images                         []Image
//	GET    /v1/images/{ref}                   ImageInspect
//	POST   /v1/images/import?name=N           body: rootfs tar → Image
//	POST   /v1/images/load                    body: docker/OCI archive → []Image
//	POST   /v1/images/tag                     ImageTagRequest
//	DELETE /v1/images/{ref}?force=1           ImageRemoveResponse
//	POST   /v1/images/pull                    ImagePullRequest → stream of ImageProgress JSON lines, the last with Image or Error
//	POST   /v1/images/push                    ImagePushRequest → stream of ImageProgress JSON lines, the last with Done or Error
//	GET    /v1/images/{ref}/history           []ImageHistory, newest first
//	GET    /v1/images/save?ref=R&ref=…        docker-compatible image archive (application/x-tar)
//	POST   /v1/images/prune?all=1             PruneReport (images no container uses: dangling, or all with all=1)
//	GET    /v1/volumes                        []Volume
//	POST   /v1/volumes                        VolumeCreateRequest → Volume
//	GET    /v1/volumes/{name}                 Volume
//	DELETE /v1/volumes/{name}?force=1
//	POST   /v1/volumes/prune                  PruneReport
//	POST   /v1/system/prune?all=1&volumes=1   PruneReport
//	GET    /v1/networks                       []Network (the default bridge first)
//	POST   /v1/networks                       NetworkCreateRequest → Network
//	GET    /v1/networks/{name}                Network
//	DELETE /v1/networks/{name}                (409 while containers use it)
//	POST   /v1/networks/prune                 PruneReport (user networks without containers)
//
// Errors are {"error": "..."} with a 4xx or 5xx status, as on the server.

// Container states as reported by agents.
const (
	ContainerCreated = "created"
	ContainerRunning = "running"
	ContainerExited  = "exited"
)

// ContainerInfo describes one container on an agent.
type ContainerInfo struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Image      string            `json:"image"`
	ImageID    string            `json:"image_id,omitempty"`
	Command    []string          `json:"command"`
	AllocID    string            `json:"alloc_id,omitempty"`
	Task       string            `json:"task,omitempty"`
	Node       string            `json:"node,omitempty"`
	State      string            `json:"state"`
	Pid        int               `json:"pid,omitempty"`
	ExitCode   int               `json:"exit_code"`
	OOMKilled  bool              `json:"oom_killed,omitempty"`
	Error      string            `json:"error,omitempty"`
	CreatedAt  int64             `json:"created_at"` // unix nanoseconds
	StartedAt  int64             `json:"started_at,omitempty"`
	FinishedAt int64             `json:"finished_at,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	User       string            `json:"user,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	Mounts     []MountInfo       `json:"mounts,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Resources  Resources         `json:"resources"`
	Ports      []AllocPort       `json:"ports,omitempty"`
}

// MountInfo is one mount of a container.
type MountInfo struct {
	Type        string `json:"type"` // volume or bind
	Name        string `json:"name,omitempty"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"read_only,omitempty"`
}

// LogEntry is one line of a container's output, as the shim records it.
type LogEntry struct {
	Time   string `json:"t"`      // RFC 3339 with nanoseconds
	Stream string `json:"stream"` // stdout or stderr
	Log    string `json:"log"`    // the line, with its newline
}

// ExitResult is a container's final status.
type ExitResult struct {
	ExitCode  int    `json:"exit_code"`
	OOMKilled bool   `json:"oom_killed,omitempty"`
	Error     string `json:"error,omitempty"`
}

// ContainerStats is a snapshot of a container's resource use.
type ContainerStats struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	CPUUsageNanos uint64 `json:"cpu_usage_nanos"`
	MemoryUsage   uint64 `json:"memory_usage"`
	MemoryLimit   uint64 `json:"memory_limit"`
	Pids          uint64 `json:"pids"`
	ReadTime      int64  `json:"read_time"` // unix nanoseconds
}

// ExecRequest runs a process in a running container.
type ExecRequest struct {
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env,omitempty"`
	User       string   `json:"user,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	Stdin      string   `json:"stdin,omitempty"` // fed to the process, then closed
}

// ExecFrame is one line of an exec's output stream. The last frame has
// Exit set.
type ExecFrame struct {
	Stream string `json:"stream,omitempty"` // stdout or stderr
	Data   string `json:"data,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ImageInspect is the detail of one image.
type ImageInspect struct {
	Image
	Config  ImageConfig    `json:"config"`
	Layers  []string       `json:"layers"` // diff IDs, lowest first
	History []ImageHistory `json:"history,omitempty"`
}

// ImageConfig is the run configuration an image carries.
type ImageConfig struct {
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"`
	User         string            `json:"user,omitempty"`
	StopSignal   string            `json:"stop_signal,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"`
	Volumes      []string          `json:"volumes,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// ImageHistory is one entry of an image's history.
type ImageHistory struct {
	Created    int64  `json:"created,omitempty"`
	CreatedBy  string `json:"created_by,omitempty"`
	Comment    string `json:"comment,omitempty"`
	EmptyLayer bool   `json:"empty_layer,omitempty"`
	Size       int64  `json:"size"`
}

// ImageTagRequest adds a name to an image.
type ImageTagRequest struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// ImageRemoveResponse lists what an image removal untagged and deleted.
type ImageRemoveResponse struct {
	Untagged []string `json:"untagged,omitempty"`
	Deleted  []string `json:"deleted,omitempty"`
}

// Volume is a named volume on one node.
type Volume struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Mountpoint string            `json:"mountpoint"`
	CreatedAt  int64             `json:"created_at"` // unix nanoseconds
	Labels     map[string]string `json:"labels,omitempty"`
	UsedBy     []string          `json:"used_by,omitempty"` // container IDs
	Size       int64             `json:"size"`
	Node       string            `json:"node,omitempty"`
}

// VolumeCreateRequest creates a named volume.
type VolumeCreateRequest struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// NetworkCreateRequest creates a user network on a node.
type NetworkCreateRequest struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet,omitempty"` // IPv4 CIDR; default: the next free /24 of 10.210.0.0/16
}

// Network describes one network on a node: the default bridge ("bridge")
// or a user network, whose containers resolve each other by name.
type Network struct {
	Name       string   `json:"name"`
	Driver     string   `json:"driver"` // bridge
	Bridge     string   `json:"bridge"` // the host's bridge interface
	Subnet     string   `json:"subnet"`
	Gateway    string   `json:"gateway"`
	Builtin    bool     `json:"builtin,omitempty"`
	DNS        bool     `json:"dns,omitempty"`
	Containers []string `json:"containers"` // IDs
	CreatedAt  int64    `json:"created_at,omitempty"`
	Node       string   `json:"node,omitempty"`
}

// PruneReport says what a prune removed.
type PruneReport struct {
	Containers     []string `json:"containers,omitempty"`
	Images         []string `json:"images,omitempty"`
	Volumes        []string `json:"volumes,omitempty"`
	Networks       []string `json:"networks,omitempty"`
	SpaceReclaimed int64    `json:"space_reclaimed"`
	Node           string   `json:"node,omitempty"`
}

// RegistryAuth is a registry credential sent with a pull or push (a user
// name and password, or a token). Agents use it for that request only and
// never log or store it; String hides the secrets.
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identity_token,omitempty"`
	RegistryToken string `json:"registry_token,omitempty"`
}

// String hides the secrets.
func (a *RegistryAuth) String() string {
	if a == nil {
		return "RegistryAuth{}"
	}
	return "RegistryAuth{Username: " + a.Username + ", secrets redacted}"
}

// GoString hides the secrets from %#v too.
func (a *RegistryAuth) GoString() string { return a.String() }

// ImagePullRequest pulls an image from its registry into a node's store.
type ImagePullRequest struct {
	Ref      string        `json:"ref"`                // busybox, host:port/repo:tag, repo@sha256:…
	Platform string        `json:"platform,omitempty"` // os/arch[/variant]; default: the node's
	Insecure bool          `json:"insecure,omitempty"` // plain HTTP or unverified TLS
	Auth     *RegistryAuth `json:"auth,omitempty"`
}

// ImagePushRequest pushes a node's image to the registry its name names.
type ImagePushRequest struct {
	Ref      string        `json:"ref"`
	Insecure bool          `json:"insecure,omitempty"`
	Auth     *RegistryAuth `json:"auth,omitempty"`
}

// ImageProgress is one line of a pull or push stream: a layer's progress
// ("Pulling fs layer", "Downloading", "Already exists", "Done";
// "Preparing", "Pushing", "Pushed", "Layer already exists"), or the end:
// Image (pull) or Done (push), or Error.
type ImageProgress struct {
	Layer   string `json:"layer,omitempty"`
	Status  string `json:"status,omitempty"`
	Current int64  `json:"current,omitempty"`
	Total   int64  `json:"total,omitempty"`
	Image   *Image `json:"image,omitempty"`
	Done    bool   `json:"done,omitempty"`
	Error   string `json:"error,omitempty"`
}
