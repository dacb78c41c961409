package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Built-in network names, which user networks cannot take.
const (
	BridgeNetwork = "bridge"
	// UserPool is where user networks get a /24 when no subnet is given.
	UserPool = "10.210.0.0/16"
	// userBridgePrefix starts every user network's bridge name.
	userBridgePrefix = "bn"
)

// Info describes one network.
type Info struct {
	Name       string   `json:"name"`
	Bridge     string   `json:"bridge"`
	Subnet     string   `json:"subnet"`
	Gateway    string   `json:"gateway"`
	Builtin    bool     `json:"builtin,omitempty"`
	DNS        bool     `json:"dns,omitempty"`
	Containers []string `json:"containers"`
	CreatedAt  int64    `json:"created_at,omitempty"` // unix nanoseconds
}

type netDef struct {
	Name      string `json:"name"`
	Subnet    string `json:"subnet"`
	Bridge    string `json:"bridge"`
	CreatedAt int64  `json:"created_at"`
}

// Networks is a node's networks: the default bridge and the user networks
// made with Create, each with a bridge, a subnet and an embedded resolver
// of its own. Containers on different user networks cannot reach each
// other. Definitions live under DATA/network/nets/NAME/. Its methods are
// safe for concurrent use.
type Networks struct {
	dataDir string
	def     *Manager
	mu      sync.Mutex
	user    map[string]*Manager
	defs    map[string]netDef
}

// OpenNetworks opens the default bridge (cfg) and every user network
// defined under cfg.DataDir.
func OpenNetworks(cfg Config) (*Networks, error) {
	def, err := New(cfg)
	if err != nil {
		return nil, err
	}
	n := &Networks{dataDir: def.cfg.DataDir, def: def, user: map[string]*Manager{}, defs: map[string]netDef{}}
	ents, err := os.ReadDir(n.netsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("network: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(n.netsDir(), e.Name(), "network.json"))
		if err != nil {
			continue
		}
		var d netDef
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("%w: network %s: %v", ErrCorrupt, e.Name(), err)
		}
		m, err := n.open(d)
		if err != nil {
			return nil, err
		}
		n.user[d.Name], n.defs[d.Name] = m, d
	}
	return n, nil
}

func (n *Networks) netsDir() string { return filepath.Join(n.dataDir, "network", "nets") }

func (n *Networks) open(d netDef) (*Manager, error) {
	return New(Config{DataDir: filepath.Join(n.netsDir(), d.Name), Bridge: d.Bridge, Subnet: d.Subnet,
		NetnsDir: n.def.cfg.NetnsDir, ResolvConf: n.def.cfg.ResolvConf, DNS: true, Isolate: []string{n.def.cfg.Bridge}})
}

// Default is the default bridge network.
func (n *Networks) Default() *Manager { return n.def }

// Get returns the network called name ("bridge" or "" is the default).
func (n *Networks) Get(name string) (*Manager, error) {
	if name == "" || name == BridgeNetwork {
		return n.def, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.user[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoNetwork, name)
	}
	return m, nil
}

// ValidName reports whether name can name a user network.
func ValidName(name string) bool {
	switch name {
	case "", BridgeNetwork, "none", "host", "default":
		return false
	}
	if len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Create defines a user network; subnet "" takes the next free /24 of
// UserPool. Its bridge is made when its first container starts.
func (n *Networks) Create(name, subnet string) (*Info, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("%w %q: use [a-zA-Z0-9][a-zA-Z0-9_.-]* up to 64 bytes, not bridge, none or host", ErrBadName, name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.user[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrNetworkExists, name)
	}
	var p netip.Prefix
	if subnet != "" {
		var err error
		if p, err = netip.ParsePrefix(subnet); err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadSubnet, subnet, err)
		}
		p = p.Masked()
		if other := n.overlapping(p); other != "" {
			return nil, fmt.Errorf("%w: %s overlaps network %s", ErrBadSubnet, p, other)
		}
	} else {
		pool := netip.MustParsePrefix(UserPool)
		for i := 0; i < 256 && !p.IsValid(); i++ {
			c := netip.PrefixFrom(netip.AddrFrom4([4]byte{pool.Addr().As4()[0], pool.Addr().As4()[1], byte(i), 0}), 24)
			if n.overlapping(c) == "" && !subnetOnHost(c) {
				p = c
			}
		}
		if !p.IsValid() {
			return nil, ErrNoSubnet
		}
	}
	h := sha256.Sum256([]byte(n.dataDir + "\x00" + name))
	d := netDef{Name: name, Subnet: p.String(), Bridge: userBridgePrefix + hex.EncodeToString(h[:6]), CreatedAt: time.Now().UnixNano()}
	dir := filepath.Join(n.netsDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	m, err := n.open(d)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b, _ := json.Marshal(d)
	if err := writeFileAtomic(filepath.Join(dir, "network.json"), b); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	n.user[name], n.defs[name] = m, d
	return n.info(name, m), nil
}

// overlapping names the network whose subnet overlaps p, or "".
func (n *Networks) overlapping(p netip.Prefix) string {
	if n.def.subnet.Overlaps(p) {
		return BridgeNetwork
	}
	for name, m := range n.user {
		if m.subnet.Overlaps(p) {
			return name
		}
	}
	return ""
}

func (n *Networks) info(name string, m *Manager) *Info {
	ids, _ := m.Endpoints()
	if ids == nil {
		ids = []string{}
	}
	sort.Strings(ids)
	return &Info{Name: name, Bridge: m.cfg.Bridge, Subnet: m.subnet.String(), Gateway: m.Gateway().String(),
		Builtin: m == n.def, DNS: m.cfg.DNS, Containers: ids, CreatedAt: n.defs[name].CreatedAt}
}

// Inspect describes one network.
func (n *Networks) Inspect(name string) (*Info, error) {
	m, err := n.Get(name)
	if err != nil {
		return nil, err
	}
	if m == n.def {
		name = BridgeNetwork
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.info(name, m), nil
}

// List describes every network, the default bridge first.
func (n *Networks) List() []*Info {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []*Info{n.info(BridgeNetwork, n.def)}
	names := make([]string, 0, len(n.user))
	for name := range n.user {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out = append(out, n.info(name, n.user[name]))
	}
	return out
}

// Remove deletes a user network with no containers: its bridge, rules,
// resolver and state.
func (n *Networks) Remove(name string) error {
	if name == BridgeNetwork {
		return fmt.Errorf("%w: the default bridge cannot be removed", ErrBadName)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removeLocked(name)
}

func (n *Networks) removeLocked(name string) error {
	m, ok := n.user[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoNetwork, name)
	}
	if ids, _ := m.Endpoints(); len(ids) > 0 {
		return fmt.Errorf("%w: %s has %d", ErrNetworkInUse, name, len(ids))
	}
	if err := m.Remove(); err != nil && !errors.Is(err, ErrNotSupported) {
		return err
	}
	delete(n.user, name)
	delete(n.defs, name)
	if err := os.RemoveAll(filepath.Join(n.netsDir(), name)); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// Prune removes every user network without containers and returns their
// names.
func (n *Networks) Prune() ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var removed []string
	for name, m := range n.user {
		if ids, _ := m.Endpoints(); len(ids) > 0 {
			continue
		}
		if err := n.removeLocked(name); err != nil {
			return removed, err
		}
		removed = append(removed, name)
	}
	sort.Strings(removed)
	return removed, nil
}

func (n *Networks) all() []*Manager {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []*Manager{n.def}
	for _, m := range n.user {
		out = append(out, m)
	}
	return out
}

// Teardown removes container id's endpoint from whichever network has it;
// it succeeds when none has.
func (n *Networks) Teardown(id string) error {
	if !validID(id) {
		return nil
	}
	for _, m := range n.all() {
		if _, err := os.Stat(m.endpointPath(id)); err == nil {
			return m.Teardown(id)
		}
	}
	return n.def.ipam.Release(id)
}

// Reconcile runs Manager.Reconcile on every network.
func (n *Networks) Reconcile(live []string) error {
	var errs []error
	for _, m := range n.all() {
		if err := m.Reconcile(live); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
