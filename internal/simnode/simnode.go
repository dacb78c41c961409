package simnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
)

// ErrNoClient means Config.Client was nil.
var ErrNoClient = errors.New("simnode: Config.Client is required")

// Config describes a simulated fleet.
type Config struct {
	Client     *api.Client
	Count      int
	NamePrefix string // node names are NamePrefix + index; default "sim-"
	Datacenter string // default "dc1"
	// Resources gives node i its capacity; default: Realistic.
	Resources func(i int) api.NodeResources
	// Labels gives node i its labels; default: rack r<i%4>.
	Labels func(i int) map[string]string
	// Ack reports allocations placed on the nodes as running (and stopped
	// ones as complete), through PUT /v1/allocations/status.
	Ack bool
	// RegisterConcurrency bounds parallel registrations; default 32.
	RegisterConcurrency int
	Logger              *slog.Logger
}

// Realistic is a fleet mix of cloud-like machines: most are 8-32 cores,
// every tenth has 8 GPUs (alternately H100 80GB and A100 40GB).
func Realistic(i int) api.NodeResources {
	switch {
	case i%10 == 9:
		model, mem := "NVIDIA H100 80GB HBM3", 81559
		if i%20 == 19 {
			model, mem = "NVIDIA A100-SXM4-40GB", 40960
		}
		gpus := make([]api.GPUDevice, 8)
		for g := range gpus {
			gpus[g] = api.GPUDevice{
				UUID: fmt.Sprintf("GPU-%08x-%04x", i, g), Index: g, Model: model, MemoryMiB: mem,
				Healthy: true, NUMANode: g / 4, PCIBusID: fmt.Sprintf("0000:%02x:00.0", 0x10+g),
			}
		}
		return api.NodeResources{CPU: 96000, MemoryMB: 1 << 20, DiskMB: 4 << 20, GPUs: gpus}
	case i%10 < 5:
		return api.NodeResources{CPU: 16000, MemoryMB: 64 << 10, DiskMB: 500 << 10}
	case i%10 < 8:
		return api.NodeResources{CPU: 32000, MemoryMB: 128 << 10, DiskMB: 1 << 20}
	default:
		return api.NodeResources{CPU: 8000, MemoryMB: 32 << 10, DiskMB: 200 << 10}
	}
}

// Fleet is a running set of simulated nodes. Its methods are safe for
// concurrent use.
type Fleet struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *slog.Logger

	mu       sync.Mutex
	nodes    []*api.Node
	silenced map[string]context.CancelFunc // node ID → stops its loops
	acked    int
	hbErrors int
}

// Start registers cfg.Count nodes and starts heartbeating them (and
// acknowledging their allocations when cfg.Ack). It returns once every node
// is registered; a registration error stops the fleet and is returned.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Client == nil {
		return nil, ErrNoClient
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "sim-"
	}
	if cfg.Datacenter == "" {
		cfg.Datacenter = "dc1"
	}
	if cfg.Resources == nil {
		cfg.Resources = Realistic
	}
	if cfg.Labels == nil {
		cfg.Labels = func(i int) map[string]string { return map[string]string{"rack": "r" + strconv.Itoa(i%4)} }
	}
	if cfg.RegisterConcurrency <= 0 {
		cfg.RegisterConcurrency = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	fctx, cancel := context.WithCancel(ctx)
	f := &Fleet{cfg: cfg, ctx: fctx, cancel: cancel, log: cfg.Logger, silenced: map[string]context.CancelFunc{}}
	f.nodes = make([]*api.Node, cfg.Count)
	for i := range f.nodes {
		res := cfg.Resources(i)
		f.nodes[i] = &api.Node{
			ID:         newID(),
			Name:       cfg.NamePrefix + strconv.Itoa(i),
			Datacenter: cfg.Datacenter,
			HTTPAddr:   "127.0.0.1:0",
			Status:     api.NodeStatusReady,
			Attributes: map[string]string{
				"kernel.name": "linux", "os.name": "debian", "cpu.arch": "amd64",
				"cpu.cores": strconv.Itoa(res.CPU / 1000), "cgroup.version": "1",
			},
			Labels:    cfg.Labels(i),
			Resources: res,
		}
	}

	// Each node starts heartbeating as soon as its own registration is
	// acknowledged, as an agent does: a node registered early in a burst
	// gets the short TTL of a small cluster and would otherwise miss it
	// while the rest of the fleet registers.
	nctxs := make([]context.Context, cfg.Count)
	for i, n := range f.nodes {
		nctx, ncancel := context.WithCancel(fctx)
		nctxs[i] = nctx
		f.silenced[n.ID] = ncancel
	}
	sem := make(chan struct{}, cfg.RegisterConcurrency)
	errc := make(chan error, cfg.Count)
	var rwg sync.WaitGroup
	for i, n := range f.nodes {
		rwg.Add(1)
		sem <- struct{}{}
		go func() {
			defer rwg.Done()
			defer func() { <-sem }()
			resp, err := f.client().Nodes().Register(n)
			if err != nil {
				errc <- fmt.Errorf("simnode: register node %s: %w", n.Name, err)
				return
			}
			f.wg.Add(1)
			go f.heartbeat(nctxs[i], n, time.Duration(resp.HeartbeatTTL))
		}()
	}
	rwg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		cancel()
		f.wg.Wait()
		return nil, err
	}
	if cfg.Ack {
		for i, n := range f.nodes {
			f.wg.Add(1)
			go f.ackLoop(nctxs[i], n)
		}
	}
	return f, nil
}

func (f *Fleet) client() *api.Client { return f.cfg.Client.WithContext(f.ctx) }

// Nodes returns the simulated nodes as registered.
func (f *Fleet) Nodes() []*api.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*api.Node(nil), f.nodes...)
}

// Silence stops one node's heartbeats and acknowledgements, as if its host
// died. It reports whether the node was alive.
func (f *Fleet) Silence(nodeID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	cancel, ok := f.silenced[nodeID]
	if ok {
		cancel()
		delete(f.silenced, nodeID)
	}
	return ok
}

// Acked returns how many allocation updates the fleet has reported.
func (f *Fleet) Acked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acked
}

// Stop ends every node's loops and waits for them.
func (f *Fleet) Stop() {
	f.cancel()
	f.wg.Wait()
}

func (f *Fleet) heartbeat(ctx context.Context, n *api.Node, ttl time.Duration) {
	defer f.wg.Done()
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	// Heartbeat twice per TTL, as agents do (the server sizes the TTL for
	// that rate), spread out so thousands of nodes do not beat in lockstep.
	interval := ttl / 2
	t := time.NewTimer(time.Duration(mrand.Int64N(int64(interval))))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := f.cfg.Client.WithContext(ctx).Nodes().Heartbeat(n.ID)
		switch {
		case err != nil && ctx.Err() == nil:
			f.mu.Lock()
			f.hbErrors++
			f.mu.Unlock()
			f.log.Debug("simnode: heartbeat failed", "node", n.Name, "err", err)
			if api.IsNotFound(err) {
				// The server forgot the node (state reset): register again.
				_, _ = f.cfg.Client.WithContext(ctx).Nodes().Register(n)
			}
		case err == nil && resp.HeartbeatTTL > 0:
			interval = time.Duration(resp.HeartbeatTTL) / 2
		}
		t.Reset(interval)
	}
}

func (f *Fleet) ackLoop(ctx context.Context, n *api.Node) {
	defer f.wg.Done()
	c := f.cfg.Client.WithContext(ctx)
	var index uint64
	reported := map[string]string{} // alloc ID → client status reported
	for ctx.Err() == nil {
		allocs, meta, err := c.Nodes().Allocations(n.ID, &api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.log.Debug("simnode: watch allocations failed", "node", n.Name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		prev := index
		if meta.LastIndex > index {
			index = meta.LastIndex
		} else if meta.LastIndex == 0 || meta.LastIndex < index {
			index = 0 // the server's index went back (restored state): start over
		}
		var updates []*api.Allocation
		for _, a := range allocs {
			want := ""
			switch {
			case a.DesiredStatus == api.AllocDesiredRun && (a.ClientStatus == "" || a.ClientStatus == api.AllocClientPending):
				want = api.AllocClientRunning
			case a.DesiredStatus != api.AllocDesiredRun && a.ClientStatus == api.AllocClientRunning:
				want = api.AllocClientComplete
			}
			if want == "" || reported[a.ID] == want {
				continue
			}
			now := time.Now().UnixNano()
			ts := map[string]*api.TaskState{}
			if a.Job != nil {
				for _, g := range a.Job.Groups {
					if g.Name != a.Group {
						continue
					}
					for _, task := range g.Tasks {
						st := &api.TaskState{State: api.TaskStateRunning, StartedAt: now}
						if want != api.AllocClientRunning {
							st = &api.TaskState{State: api.TaskStateDead, FinishedAt: now}
						}
						ts[task.Name] = st
					}
				}
			}
			updates = append(updates, &api.Allocation{ID: a.ID, ClientStatus: want, TaskStates: ts,
				ClientDescription: "simulated by simnode"})
		}
		if len(updates) == 0 {
			continue
		}
		if _, err := c.Allocations().UpdateStatus(updates); err != nil {
			f.log.Debug("simnode: report allocations failed", "node", n.Name, "err", err)
			index = prev // read again at once and retry
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		f.mu.Lock()
		f.acked += len(updates)
		f.mu.Unlock()
		for _, u := range updates {
			reported[u.ID] = u.ClientStatus
		}
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
