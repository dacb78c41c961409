package network

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Errors returned by this package.
var (
	// ErrNotSupported: container networking needs Linux.
	ErrNotSupported = errors.New("network: not supported on this platform (Linux only)")
	// ErrBadSubnet: the subnet is not an IPv4 prefix this package can use.
	ErrBadSubnet = errors.New("network: bad subnet")
	// ErrSubnetInUse: the lease file holds leases of another subnet; remove
	// those containers (or the file) before changing the subnet.
	ErrSubnetInUse = errors.New("network: subnet changed while leases exist")
	// ErrExhausted: every address of the subnet is leased; remove
	// containers or use a larger subnet.
	ErrExhausted = errors.New("network: no free address in the subnet")
	// ErrCorrupt: a state file cannot be decoded.
	ErrCorrupt = errors.New("network: state file is corrupt")
	// ErrBadPort: a published port is malformed.
	ErrBadPort = errors.New("network: bad published port")
	// ErrNoFirewall: neither iptables nor iptables-legacy can list the nat
	// table; install iptables.
	ErrNoFirewall = errors.New("network: no working iptables binary (install iptables)")
	// ErrNoNetwork: no network has that name; see `berth network ls`.
	ErrNoNetwork = errors.New("network: no such network")
	// ErrNetworkExists: a network with that name exists; pick another name.
	ErrNetworkExists = errors.New("network: a network with that name already exists")
	// ErrNetworkInUse: containers are on the network; remove them first.
	ErrNetworkInUse = errors.New("network: network has containers; remove them first")
	// ErrBadName: the name is not usable for a network.
	ErrBadName = errors.New("network: bad network name")
	// ErrNoSubnet: no free /24 is left in the user network pool; give --subnet.
	ErrNoSubnet = errors.New("network: no free subnet in the pool; give one with --subnet")
)

// Defaults.
const (
	DefaultBridge = "berth0"
	// DefaultSubnet is the node's bridge subnet when BERTH_BRIDGE_SUBNET is
	// unset. It avoids the pools of docker (172.17.0.0/16), podman
	// (10.88.0.0/16, 10.89.0.0/16) and the usual Kubernetes pod and
	// service ranges; a bridge is not made on a subnet that overlaps an
	// address already on the host.
	DefaultSubnet = "10.209.0.0/24"
	// SubnetEnv names the environment variable that overrides DefaultSubnet.
	SubnetEnv = "BERTH_BRIDGE_SUBNET"
	// DefaultNetnsDir is where namespace files are bind-mounted.
	DefaultNetnsDir = "/run/berth/netns"
	// BridgeEnv names the environment variable that overrides DefaultBridge.
	BridgeEnv = "BERTH_BRIDGE"
)

// Config describes one bridge network.
type Config struct {
	// DataDir holds the state under network/: leases, endpoint records,
	// the generated resolv.conf and hosts files.
	DataDir string
	// NetnsDir holds the namespace files, one directory per data
	// directory; default DefaultNetnsDir. It lies outside DataDir so that
	// removing a data directory is never blocked by a mount; a directory
	// whose data directory is gone is swept by the next New on the host.
	NetnsDir string
	// Bridge is the bridge's name; default $BERTH_BRIDGE or DefaultBridge.
	Bridge string
	// Subnet is the bridge's IPv4 prefix; default $BERTH_BRIDGE_SUBNET or
	// DefaultSubnet.
	Subnet string
	// ResolvConf is the host's resolver file copied into containers;
	// default /etc/resolv.conf.
	ResolvConf string
	// DNS runs an embedded resolver on the bridge address (port 53) that
	// answers the network's container names and aliases and forwards the
	// rest to the host's resolvers; containers get it as their nameserver.
	// User networks have it, the default bridge does not (as in docker).
	DNS bool
	// Isolate names bridges this network's containers must not reach
	// (other than through published ports); user networks list the
	// default bridge. Every user network's bridge is isolated anyway.
	Isolate []string
}

// Port is one published port.
type Port struct {
	HostIP        string `json:"host_ip,omitempty"` // empty: every host address
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
	Protocol      string `json:"protocol,omitempty"` // tcp (default) or udp
}

// Request asks for one container's endpoint.
type Request struct {
	ID       string   // container ID; names the endpoint
	Name     string   // container name, written to /etc/hosts
	Hostname string   // written to /etc/hosts
	Aliases  []string // more names for the embedded resolver (DNS networks)
	Ports    []Port
}

// Endpoint is a container's place on the network, as recorded on disk.
type Endpoint struct {
	ID       string   `json:"id"`
	Name     string   `json:"name,omitempty"`
	Aliases  []string `json:"aliases,omitempty"`
	Bridge   string   `json:"bridge"`
	Addr     string   `json:"addr"`    // the container's address
	Gateway  string   `json:"gateway"` // the bridge's address
	Prefix   int      `json:"prefix"`
	HostVeth string   `json:"host_veth"`
	// Netns is the bind-mounted namespace file the container joins.
	Netns string `json:"netns"`
	Ports []Port `json:"ports,omitempty"`
	// ResolvConf and Hosts are files to bind read-only onto the
	// container's /etc/resolv.conf and /etc/hosts.
	ResolvConf string `json:"resolv_conf"`
	Hosts      string `json:"hosts"`
}

// Manager runs one bridge network on this node. Its methods are safe for
// concurrent use by many goroutines; they change kernel state and write
// files, so they block for a few milliseconds (more when iptables runs).
type Manager struct {
	cfg    Config
	nsDir  string // this data directory's namespace files
	subnet netip.Prefix
	ipam   *IPAM
	mu     sync.Mutex // serialises endpoint records and the bridge's setup
	sys    sysState   // kernel-side state, see network_linux.go
	dns    *resolver  // nil unless cfg.DNS
}

// New opens the network's state. It changes nothing in the kernel: the
// bridge and its rules are made by the first Setup.
func New(cfg Config) (*Manager, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("network: no data directory")
	}
	if cfg.Bridge == "" {
		cfg.Bridge = os.Getenv(BridgeEnv)
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("network: bridge name %q is longer than 15 bytes", cfg.Bridge)
	}
	if cfg.Subnet == "" {
		cfg.Subnet = os.Getenv(SubnetEnv)
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.NetnsDir == "" {
		cfg.NetnsDir = DefaultNetnsDir
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("network: data directory: %w", err)
	}
	cfg.DataDir = abs
	p, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v (set %s to a prefix such as %s)", ErrBadSubnet, cfg.Subnet, err, SubnetEnv, DefaultSubnet)
	}
	ipam, err := OpenIPAM(filepath.Join(cfg.DataDir, "network", cfg.Bridge+".leases"), p)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(cfg.DataDir))
	nsDir := filepath.Join(cfg.NetnsDir, hex.EncodeToString(h[:8]))
	for _, d := range []string{endpointsDir(cfg), filesDir(cfg), nsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(nsDir, ownerFile), []byte(cfg.DataDir), 0o600); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	sweepNetns(cfg.NetnsDir)
	m := &Manager{cfg: cfg, nsDir: nsDir, subnet: ipam.Subnet(), ipam: ipam}
	if cfg.DNS {
		host, _ := os.ReadFile(cfg.ResolvConf)
		m.dns = newResolver(upstreams(host))
		ids, _ := m.Endpoints()
		for _, id := range ids {
			if ep, err := m.Endpoint(id); err == nil {
				if a, err := netip.ParseAddr(ep.Addr); err == nil {
					m.dns.add(id, a, append([]string{ep.Name}, ep.Aliases...)...)
				}
			}
		}
	}
	return m, nil
}

// Bridge is the bridge's name.
func (m *Manager) Bridge() string { return m.cfg.Bridge }

// Subnet is the bridge's prefix.
func (m *Manager) Subnet() netip.Prefix { return m.subnet }

// Gateway is the bridge's own address, the containers' default route.
func (m *Manager) Gateway() netip.Addr { return m.ipam.Gateway() }

// IPAM is the network's address allocator.
func (m *Manager) IPAM() *IPAM { return m.ipam }

// Endpoint returns container id's recorded endpoint.
func (m *Manager) Endpoint(id string) (*Endpoint, error) {
	if !validID(id) {
		return nil, fmt.Errorf("network: endpoint %q: %w", id, os.ErrNotExist)
	}
	b, err := os.ReadFile(m.endpointPath(id))
	if err != nil {
		return nil, err
	}
	ep := &Endpoint{}
	if err := json.Unmarshal(b, ep); err != nil {
		return nil, fmt.Errorf("%w: endpoint %s: %v", ErrCorrupt, id, err)
	}
	return ep, nil
}

// Endpoints lists the IDs of the recorded endpoints.
func (m *Manager) Endpoints() ([]string, error) {
	ents, err := os.ReadDir(endpointsDir(m.cfg))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Reconcile tears down every recorded endpoint whose container is not in
// live; the agent calls it at start, so a crash between a container's
// removal and its teardown leaks nothing. For the live ones it puts back a
// missing bridge, bridge port or DNAT rule. It returns the first error and
// goes on with the rest.
func (m *Manager) Reconcile(live []string) error {
	keep := make(map[string]bool, len(live))
	for _, id := range live {
		keep[id] = true
	}
	ids, err := m.Endpoints()
	if err != nil {
		return err
	}
	var first error
	for _, id := range ids {
		if keep[id] {
			// A live container's endpoint gets back what a firewall
			// reload or a deleted bridge took from it.
			if ep, err := m.Endpoint(id); err == nil {
				if err := m.restore(ep); err != nil && first == nil {
					first = err
				}
			}
			continue
		}
		if err := m.Teardown(id); err != nil && first == nil {
			first = err
		}
	}
	// Leases without a record (a crash between allocation and the record).
	leases, err := m.ipam.Leases()
	if err != nil && first == nil {
		first = err
	}
	for _, l := range leases {
		if !keep[l.Owner] {
			if _, err := os.Stat(m.endpointPath(l.Owner)); errors.Is(err, os.ErrNotExist) {
				if err := m.ipam.Release(l.Owner); err != nil && first == nil {
					first = err
				}
			}
		}
	}
	return first
}

// ValidatePorts checks published ports: ports 1-65535, tcp or udp, a host
// IP that parses.
func ValidatePorts(ports []Port) error {
	for _, p := range ports {
		if p.HostPort < 1 || p.HostPort > 65535 || p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return fmt.Errorf("%w: %d:%d: ports must be 1-65535", ErrBadPort, p.HostPort, p.ContainerPort)
		}
		switch p.Protocol {
		case "", "tcp", "udp":
		default:
			return fmt.Errorf("%w: protocol %q: use tcp or udp", ErrBadPort, p.Protocol)
		}
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil || !a.Is4() {
				return fmt.Errorf("%w: host IP %q: want an IPv4 address", ErrBadPort, p.HostIP)
			}
		}
	}
	return nil
}

// validID keeps IDs safe as file names: [a-zA-Z0-9][a-zA-Z0-9_.-]*.
func validID(id string) bool {
	return validOwner(id) && id[0] != '.' && id[0] != '_' && id[0] != '-'
}

func endpointsDir(cfg Config) string { return filepath.Join(cfg.DataDir, "network", "endpoints") }
func filesDir(cfg Config) string     { return filepath.Join(cfg.DataDir, "network", "files") }

// ownerFile, in each directory under NetnsDir, names its data directory.
const ownerFile = ".owner"

func (m *Manager) netnsPath(id string) string { return filepath.Join(m.nsDir, id) }

func (m *Manager) endpointPath(id string) string {
	return filepath.Join(endpointsDir(m.cfg), id+".json")
}

func (m *Manager) writeEndpoint(ep *Endpoint) error {
	b, err := json.Marshal(ep)
	if err != nil {
		return err
	}
	return writeFileAtomic(m.endpointPath(ep.ID), b)
}

// hostVethName derives a stable, 15-byte-safe interface name from the
// container ID ("bv" and 12 hex digits of its hash).
func hostVethName(id string) string {
	h := sha256.Sum256([]byte(id))
	return "bv" + hex.EncodeToString(h[:6])
}

// resolvConf is the host's resolver file without loopback nameservers
// (unreachable from a container's namespace), or, with a nameserver given,
// with that one in place of all the host's.
func resolvConf(host []byte, nameserver ...string) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); (err == nil && a.IsLoopback()) || len(nameserver) > 0 {
				continue
			}
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	for _, ns := range nameserver {
		out.WriteString("nameserver " + ns + "\n")
	}
	return out.Bytes()
}

// hostsFile is the container's /etc/hosts.
func hostsFile(addr string, names ...string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	var uniq []string
	seen := map[string]bool{}
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			uniq = append(uniq, n)
		}
	}
	if addr != "" && len(uniq) > 0 {
		fmt.Fprintf(&b, "%s\t%s\n", addr, strings.Join(uniq, " "))
	}
	return b.Bytes()
}
