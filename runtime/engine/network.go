package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/network"
)

// netState is the node's networks, or why they could not be opened (then
// bridge and user networks fail with that reason and the other modes work).
type netState struct {
	nets *network.Networks
	err  error
	// members holds a link per container whose endpoint is its
	// allocation's (all tasks of an allocation share one network
	// namespace, as in a Nomad group): members/<container ID> → key.
	members string
	mu      sync.Mutex // serialises joining and leaving shared endpoints
}

// openNetwork opens the bridge network's state under dataDir (bridge
// $BERTH_BRIDGE or berth0, subnet $BERTH_BRIDGE_SUBNET or 10.209.0.0/24)
// and tears down the endpoints of containers that no longer exist, which a
// crash between a container's removal and its network's teardown leaves.
// It changes nothing else: the bridge is made by the first container that
// needs it.
func openNetwork(dataDir string, ctrs *container.Manager) *netState {
	m, err := network.OpenNetworks(network.Config{DataDir: dataDir})
	if err != nil {
		return &netState{err: err}
	}
	ns := &netState{nets: m, members: filepath.Join(dataDir, "network", "members")}
	if err := os.MkdirAll(ns.members, 0o700); err != nil {
		return &netState{err: err}
	}
	if list, err := ctrs.List(); err == nil {
		exists := map[string]bool{}
		live := make([]string, 0, len(list))
		for _, c := range list {
			exists[c.ID] = true
			live = append(live, c.ID)
			if key, err := os.Readlink(filepath.Join(ns.members, c.ID)); err == nil {
				live = append(live, key)
			}
		}
		if ents, err := os.ReadDir(ns.members); err == nil {
			for _, ent := range ents {
				if !exists[ent.Name()] {
					_ = os.Remove(filepath.Join(ns.members, ent.Name()))
				}
			}
		}
		if err := m.Reconcile(live); err != nil {
			slog.Warn("network: reconcile left something behind", "err", err)
		}
	}
	return ns
}

// endpointKey names the endpoint a task's container uses: its
// allocation's on that network, so that all tasks of an allocation share
// one namespace (and one set of published ports), or its own.
func endpointKey(req *TaskRequest, network string) string {
	if req.AllocID == "" {
		return req.ID
	}
	if network == "" {
		network = "bridge"
	}
	key := "alloc-" + req.AllocID + "." + network
	if !container.ValidID(key) {
		return req.ID
	}
	return key
}

// Network is the node's default bridge network; nil when it could not be
// opened.
func (e *Engine) Network() *network.Manager {
	if e.net == nil || e.net.nets == nil {
		return nil
	}
	return e.net.nets.Default()
}

// Networks is the node's networks (default bridge and user networks); nil
// when they could not be opened.
func (e *Engine) Networks() *network.Networks {
	if e.net == nil {
		return nil
	}
	return e.net.nets
}

// setupNetwork prepares the container's network for mode (a task's
// --network: "", bridge, none, host or a user network) and sets
// spec.Network: "none", "host" or the path of a prepared network
// namespace. Published ports (req.Ports) are set up here too.
func (e *Engine) setupNetwork(ctx context.Context, req *TaskRequest, spec *container.Spec) error {
	switch mode := req.Task.Network; mode {
	case "none":
		spec.Network = "none"
	case "host":
		spec.Network = "host"
	default:
		if ref, ok := strings.CutPrefix(mode, "container:"); ok {
			return e.shareNetwork(ref, spec)
		}
		if e.net == nil {
			if mode != "" && mode != network.BridgeNetwork {
				return fmt.Errorf("%w %q: use bridge, none or host", ErrBadNetwork, mode)
			}
			// An Engine not made by Open has no network state: its
			// containers get an empty namespace with only lo.
			spec.Network = "none"
			return nil
		}
		if e.net.err != nil {
			return fmt.Errorf("%w %s: %w", ErrBadNetwork, mode, e.net.err)
		}
		m, err := e.net.nets.Get(mode)
		if err != nil {
			return fmt.Errorf("%w: %w (use bridge, none, host or a network from berth network ls)", ErrBadNetwork, err)
		}
		key := endpointKey(req, mode)
		e.net.mu.Lock()
		defer e.net.mu.Unlock()
		ep, err := m.Setup(ctx, network.Request{
			ID: key, Name: req.Name, Aliases: req.Task.NetworkAliases, Hostname: spec.Hostname, Ports: networkPorts(req.Ports),
		})
		if err != nil {
			return err
		}
		if key != req.ID {
			link := filepath.Join(e.net.members, req.ID)
			_ = os.Remove(link)
			if err := os.Symlink(key, link); err != nil {
				return fmt.Errorf("engine: network member %s: %w", req.ID, err)
			}
		}
		spec.Network = ep.Netns
		addFileMount(spec, ep.ResolvConf, "/etc/resolv.conf")
		addFileMount(spec, ep.Hosts, "/etc/hosts")
	}
	return nil
}

// shareNetwork puts the container into the network namespace of container
// ref (--network container:REF), with its resolv.conf and hosts files.
// Nothing is set up for it, so its teardown finds nothing to release.
func (e *Engine) shareNetwork(ref string, spec *container.Spec) error {
	if e.Containers == nil {
		return fmt.Errorf("%w container:%s: this engine has no containers", ErrBadNetwork, ref)
	}
	c, err := e.Containers.Get(ref)
	if err != nil {
		return fmt.Errorf("%w container:%s: %w", ErrBadNetwork, ref, err)
	}
	switch {
	case c.Spec.Network == "host":
		spec.Network = "host"
	case strings.HasPrefix(c.Spec.Network, "/"):
		if _, err := os.Stat(c.Spec.Network); err != nil {
			return fmt.Errorf("%w container:%s: its network namespace is gone: %w", ErrBadNetwork, ref, err)
		}
		spec.Network = c.Spec.Network
		for _, m := range c.Spec.Mounts {
			if m.Destination == "/etc/resolv.conf" || m.Destination == "/etc/hosts" {
				addFileMount(spec, m.Source, m.Destination)
			}
		}
	case c.State.Status == container.StatusRunning && c.State.Pid > 0:
		// A --network none container's namespace lives as long as its
		// process.
		spec.Network = "/proc/" + strconv.Itoa(c.State.Pid) + "/ns/net"
	default:
		return fmt.Errorf("%w container:%s: it has no network namespace to share; start it first", ErrBadNetwork, ref)
	}
	return nil
}

// addFileMount binds a generated file read-only unless the task mounts
// something there itself.
func addFileMount(spec *container.Spec, src, dst string) {
	for _, m := range spec.Mounts {
		if m.Destination == dst {
			return
		}
	}
	spec.Mounts = append(spec.Mounts, container.Mount{Type: "bind", Source: src, Destination: dst, ReadOnly: true})
}

func networkPorts(ps []api.AllocPort) []network.Port {
	out := make([]network.Port, 0, len(ps))
	for _, p := range ps {
		out = append(out, network.Port{HostIP: p.HostIP, HostPort: p.Value, ContainerPort: p.To, Protocol: p.Protocol})
	}
	return out
}

// teardownNetwork releases what setupNetwork made for container id
// (addresses, veths, rules). It is called on removal and must succeed
// when there is nothing to release.
func (e *Engine) teardownNetwork(id string) error {
	if e.net == nil || e.net.nets == nil {
		return nil
	}
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	link := filepath.Join(e.net.members, id)
	key, err := os.Readlink(link)
	if err != nil {
		return e.net.nets.Teardown(id)
	}
	// A shared endpoint goes with the last container that uses it.
	ents, err := os.ReadDir(e.net.members)
	if err != nil {
		return fmt.Errorf("engine: network members: %w", err)
	}
	for _, ent := range ents {
		if ent.Name() == id {
			continue
		}
		if other, err := os.Readlink(filepath.Join(e.net.members, ent.Name())); err == nil && other == key {
			return os.Remove(link)
		}
	}
	if err := e.net.nets.Teardown(key); err != nil {
		return err
	}
	return os.Remove(link)
}
