package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/image"
	"github.com/berth-dev/berth/runtime/volume"
)

// Errors returned by the engine.
var (
	// ErrImageNotFound means the task's image is not in this node's store.
	ErrImageNotFound = errors.New("engine: image not found on this node")
	// ErrNoCommand means neither the image nor the task names a command.
	ErrNoCommand = errors.New("engine: no command to run: the image has no Entrypoint or Cmd; give one")
	// ErrBadNetwork means the task asks for a network mode this node lacks.
	ErrBadNetwork = errors.New("engine: unsupported network mode")
)

// DefaultStopTimeout is docker's grace period between the stop signal and
// SIGKILL.
const DefaultStopTimeout = 10 * time.Second

// Engine is one node's runtime. Its methods are safe for concurrent use;
// they do file I/O and start processes, so they may block.
type Engine struct {
	Images     *image.Store
	Containers *container.Manager
	Volumes    *volume.Store
	// InsecureRegistries are registries (host:port) reached over plain
	// HTTP or with unverified TLS; set before use.
	InsecureRegistries []string
	metaDir            string
	mu                 sync.Mutex // serialises meta writes with volume acquire/release
	net                *netState  // the bridge network (network.go)
}

// Open opens (creating if needed) the runtime state under dataDir:
// images/, containers/, volumes/ and engine/.
func Open(dataDir string) (*Engine, error) {
	cg, err := cgroups.New()
	if err != nil {
		return nil, fmt.Errorf("engine: cgroups: %w", err)
	}
	images, err := image.Open(filepath.Join(dataDir, "images"))
	if err != nil {
		return nil, err
	}
	ctrs, err := container.NewManager(filepath.Join(dataDir, "containers"), cg)
	if err != nil {
		return nil, err
	}
	vols, err := volume.Open(filepath.Join(dataDir, "volumes"))
	if err != nil {
		return nil, err
	}
	metaDir := filepath.Join(dataDir, "engine")
	if err := os.MkdirAll(metaDir, 0o700); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return &Engine{Images: images, Containers: ctrs, Volumes: vols, metaDir: metaDir, net: openNetwork(dataDir, ctrs)}, nil
}

// TaskRequest asks for one task's container.
type TaskRequest struct {
	ID       string // container ID
	Name     string // container name (the job's name for one-task jobs)
	AllocID  string
	Task     *api.Task
	Ports    []api.AllocPort
	GPUs     []string // device UUIDs assigned to the allocation
	Hostname string
}

// meta is what the engine remembers about a container beyond its spec.
type meta struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Image     string            `json:"image"`
	ImageID   string            `json:"image_id"`
	Command   []string          `json:"command"`
	AllocID   string            `json:"alloc_id,omitempty"`
	Task      string            `json:"task,omitempty"`
	Mounts    []api.MountInfo   `json:"mounts,omitempty"`
	Anonymous []string          `json:"anonymous,omitempty"` // anonymous volumes removed with the container
	Labels    map[string]string `json:"labels,omitempty"`
	Resources api.Resources     `json:"resources"`
	Ports     []api.AllocPort   `json:"ports,omitempty"`
	CreatedAt int64             `json:"created_at"`
}

// Create makes (but does not start) the container for a task.
func (e *Engine) Create(ctx context.Context, req *TaskRequest) (*api.ContainerInfo, error) {
	t := req.Task
	img, err := e.resolveImage(ctx, t.Image, t.Auth)
	if err != nil {
		return nil, err
	}
	layers, err := e.Images.LayerDirs(img)
	if err != nil {
		return nil, err
	}
	args := container.CombineArgs(img.Config.Entrypoint, img.Config.Cmd, t.Entrypoint, t.Command, t.Entrypoint != nil)
	if len(args) == 0 {
		return nil, ErrNoCommand
	}
	m := &meta{
		ID: req.ID, Name: req.Name, Image: t.Image, ImageID: img.ID, Command: args,
		AllocID: req.AllocID, Task: t.Name, Labels: t.Labels, Resources: t.Resources,
		Ports: req.Ports, CreatedAt: time.Now().UnixNano(),
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	mounts, err := e.acquireMounts(req.ID, t.Volumes, m)
	if err != nil {
		return nil, err
	}
	smounts, err := e.secretMounts(req.ID, t.Secrets) // secrets.go
	if err != nil {
		e.releaseMounts(m)
		return nil, err
	}
	mounts = append(mounts, smounts...)
	stopSignal := t.StopSignal
	if stopSignal == "" {
		stopSignal = img.Config.StopSignal
	}
	stopTimeout := time.Duration(t.StopTimeout)
	if stopTimeout <= 0 {
		stopTimeout = DefaultStopTimeout
	}
	hostname := req.Hostname
	if hostname == "" && len(req.ID) >= 12 {
		hostname = req.ID[:12]
	}
	spec := &container.Spec{
		ID:          req.ID,
		Name:        req.Name,
		Layers:      layers,
		Args:        args,
		Env:         mergeEnv(img.Config.Env, t.Env, hostname),
		Cwd:         firstNonEmpty(t.WorkingDir, img.Config.WorkingDir, "/"),
		User:        firstNonEmpty(t.User, img.Config.User),
		Hostname:    hostname,
		Mounts:      mounts,
		Resources:   resources(t.Resources),
		CapAdd:      t.CapAdd,
		CapDrop:     t.CapDrop,
		StopSignal:  stopSignal,
		StopTimeout: stopTimeout,
		Tty:         t.Tty,
		OpenStdin:   t.Interactive,
	}
	if err := applySecurity(req, spec); err != nil { // security.go
		e.releaseMounts(m)
		return nil, err
	}
	if err := e.applyGPUs(req.GPUs, spec); err != nil {
		e.releaseMounts(m)
		return nil, err
	}
	if err := e.setupNetwork(ctx, req, spec); err != nil {
		e.releaseMounts(m)
		return nil, err
	}
	if _, err := e.Containers.Create(spec); err != nil {
		_ = e.teardownNetwork(req.ID)
		e.releaseMounts(m)
		return nil, err
	}
	if err := e.writeMeta(m); err != nil {
		_ = e.Containers.Remove(req.ID, true)
		_ = e.teardownNetwork(req.ID)
		e.releaseMounts(m)
		return nil, err
	}
	return e.Info(req.ID)
}

// acquireMounts resolves -v specs: named volumes are acquired for the
// container (created if missing), anonymous ones created, bind sources
// checked. On error everything acquired so far is released.
func (e *Engine) acquireMounts(id string, specs []string, m *meta) ([]container.Mount, error) {
	var out []container.Mount
	for _, s := range specs {
		pm, err := volume.ParseMount(s)
		if err != nil {
			e.releaseMounts(m)
			return nil, err
		}
		switch pm.Type {
		case "bind":
			if _, err := os.Stat(pm.Source); err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					e.releaseMounts(m)
					return nil, fmt.Errorf("engine: bind mount source %s: %w", pm.Source, err)
				}
				if err := os.MkdirAll(pm.Source, 0o755); err != nil {
					e.releaseMounts(m)
					return nil, fmt.Errorf("engine: bind mount source %s: %w", pm.Source, err)
				}
			}
			out = append(out, container.Mount{Type: "bind", Source: pm.Source, Destination: pm.Destination, ReadOnly: pm.ReadOnly})
			m.Mounts = append(m.Mounts, api.MountInfo{Type: "bind", Source: pm.Source, Destination: pm.Destination, ReadOnly: pm.ReadOnly})
		default:
			name := pm.Source
			anonymous := name == ""
			if anonymous {
				v, err := e.Volumes.Create("", nil)
				if err != nil {
					e.releaseMounts(m)
					return nil, err
				}
				name = v.Name
				m.Anonymous = append(m.Anonymous, name)
			}
			v, err := e.Volumes.Acquire(name, id)
			if err != nil {
				e.releaseMounts(m)
				return nil, err
			}
			out = append(out, container.Mount{Type: "bind", Source: v.Mountpoint, Destination: pm.Destination, ReadOnly: pm.ReadOnly})
			m.Mounts = append(m.Mounts, api.MountInfo{Type: "volume", Name: name, Source: v.Mountpoint, Destination: pm.Destination, ReadOnly: pm.ReadOnly})
		}
	}
	return out, nil
}

func (e *Engine) releaseMounts(m *meta) {
	e.removeSecrets(m.ID)
	for _, mi := range m.Mounts {
		if mi.Type == "volume" {
			_ = e.Volumes.Release(mi.Name, m.ID)
		}
	}
	for _, name := range m.Anonymous {
		_ = e.Volumes.Remove(name, false)
	}
}

// resources turns a task's request into cgroup limits: memory is a hard
// limit, CPU millicores a CFS quota (docker's --cpus) with matching shares.
func resources(r api.Resources) cgroups.Resources {
	var out cgroups.Resources
	if r.MemoryMB > 0 {
		out.MemoryLimit = int64(r.MemoryMB) << 20
	}
	if r.CPU > 0 {
		out.CPUQuota, out.CPUPeriod = cgroups.CPUQuota(float64(r.CPU) / 1000)
		out.CPUShares = uint64(r.CPU) * 1024 / 1000
		if out.CPUShares < 2 {
			out.CPUShares = 2
		}
	}
	if r.PidsLimit > 0 {
		out.PidsLimit = int64(r.PidsLimit)
	}
	return out
}

// mergeEnv puts the task's variables over the image's, in a stable order,
// and supplies PATH and HOSTNAME the way docker does.
func mergeEnv(imageEnv []string, taskEnv map[string]string, hostname string) []string {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if hostname != "" {
		set("HOSTNAME", hostname)
	}
	for _, kv := range imageEnv {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	keys := make([]string, 0, len(taskEnv))
	for k := range taskEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, taskEnv[k])
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// Start starts a created container.
func (e *Engine) Start(id string) error { return e.Containers.Start(id) }

// Wait blocks until the container exits, also for a container started by an
// earlier agent process.
func (e *Engine) Wait(ctx context.Context, id string) (*container.ExitStatus, error) {
	return e.Containers.Wait(ctx, id)
}

// Stop sends the stop signal, waits up to timeout (the container's own stop
// timeout when timeout < 0) and then kills.
func (e *Engine) Stop(id string, timeout time.Duration) error {
	if timeout < 0 {
		timeout = DefaultStopTimeout
		if c, err := e.Containers.Get(id); err == nil && c.Spec != nil && c.Spec.StopTimeout > 0 {
			timeout = c.Spec.StopTimeout
		}
	}
	return e.Containers.Stop(id, timeout)
}

// Kill sends a signal to the container's process.
func (e *Engine) Kill(id string, sig syscall.Signal) error { return e.Containers.Kill(id, sig) }

// Remove deletes a container and releases its volumes (removing anonymous
// ones). A running container is refused unless force is set.
func (e *Engine) Remove(id string, force bool) error {
	c, err := e.Containers.Get(id)
	if err != nil {
		return err
	}
	if err := e.Containers.Remove(c.ID, force); err != nil {
		return err
	}
	if err := e.teardownNetwork(c.ID); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if m, err := e.readMeta(c.ID); err == nil {
		e.releaseMounts(m)
	}
	_ = os.Remove(e.metaPath(c.ID))
	return nil
}

// Info describes one container (ID, unique prefix or name).
func (e *Engine) Info(id string) (*api.ContainerInfo, error) {
	c, err := e.Containers.Get(id)
	if err != nil {
		return nil, err
	}
	m, err := e.readMeta(c.ID)
	if err != nil {
		m = &meta{ID: c.ID, Name: c.Name}
	}
	return info(c, m), nil
}

// List describes every container on this node.
func (e *Engine) List() ([]*api.ContainerInfo, error) {
	cs, err := e.Containers.List()
	if err != nil {
		return nil, err
	}
	out := make([]*api.ContainerInfo, 0, len(cs))
	for _, c := range cs {
		m, err := e.readMeta(c.ID)
		if err != nil {
			m = &meta{ID: c.ID, Name: c.Name}
		}
		out = append(out, info(c, m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt > out[j].CreatedAt })
	return out, nil
}

func info(c *container.Container, m *meta) *api.ContainerInfo {
	ci := &api.ContainerInfo{
		ID: c.ID, Name: c.Name, Image: m.Image, ImageID: m.ImageID, Command: m.Command,
		AllocID: m.AllocID, Task: m.Task, State: c.State.Status, Pid: c.State.Pid,
		ExitCode: c.State.ExitCode, OOMKilled: c.State.OOMKilled, Error: c.State.Error,
		CreatedAt: m.CreatedAt, Mounts: m.Mounts, Labels: m.Labels, Resources: m.Resources, Ports: m.Ports,
	}
	if !c.State.StartedAt.IsZero() {
		ci.StartedAt = c.State.StartedAt.UnixNano()
	}
	if !c.State.FinishedAt.IsZero() {
		ci.FinishedAt = c.State.FinishedAt.UnixNano()
	}
	if s := c.Spec; s != nil {
		ci.Env, ci.WorkingDir, ci.User, ci.Hostname = s.Env, s.Cwd, s.User, s.Hostname
		if len(ci.Command) == 0 {
			ci.Command = s.Args
		}
	}
	return ci
}

func (e *Engine) metaPath(id string) string { return filepath.Join(e.metaDir, id+".json") }

func (e *Engine) writeMeta(m *meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := e.metaPath(m.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("engine: write container record: %w", err)
	}
	return os.Rename(tmp, e.metaPath(m.ID))
}

func (e *Engine) readMeta(id string) (*meta, error) {
	b, err := os.ReadFile(e.metaPath(id))
	if err != nil {
		return nil, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("engine: container record %s: %w", id, err)
	}
	return &m, nil
}
