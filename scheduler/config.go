package scheduler

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/tlsutil"
)

// Default ports of a server (DESIGN.md). In Config, 0 means "pick a free
// port", so callers that want the defaults start from DefaultConfig.
const (
	DefaultHTTPPort   = 9470
	DefaultRaftPort   = 9471
	DefaultGossipPort = 9472

	DefaultDatacenter   = "dc1"
	DefaultHeartbeatTTL = 3 * time.Second
	DefaultWorkers      = 2
	DefaultEvalTimeout  = 30 * time.Second

	// maxHeartbeatsPerSecond caps the heartbeat load on the leader: with
	// many nodes the TTL handed to agents grows (nodes / this value).
	maxHeartbeatsPerSecond = 500
)

// Config configures a server. Zero values are replaced by defaults in New,
// except the ports, where 0 picks a free port.
type Config struct {
	// NodeName is the server's name in the gossip pool and its Raft server
	// ID (default: the host name).
	NodeName string
	// DataDir is the berth data directory; Raft state lives in
	// DataDir/server/raft. Required.
	DataDir string
	// BindAddr is the IP every listener binds (default 127.0.0.1).
	BindAddr string
	// AdvertiseAddr is the IP other servers and agents reach this one on
	// (default BindAddr; required when BindAddr is 0.0.0.0).
	AdvertiseAddr string
	// HTTPPort, RaftPort and GossipPort: 0 picks a free port.
	HTTPPort   int
	RaftPort   int
	GossipPort int
	// Join lists gossip addresses (host:port) of any existing members.
	Join []string
	// BootstrapExpect is the number of servers that form a new cluster:
	// once gossip shows that many servers in this datacenter, they all
	// bootstrap Raft with the same list. 1 bootstraps alone at once; 0
	// never bootstraps (the server waits to be added by a leader).
	// Ignored when Raft state already exists.
	BootstrapExpect int
	// Datacenter (default dc1).
	Datacenter string
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// HeartbeatTTL is how long a node may go without a heartbeat before it
	// is marked down (default 3s; it grows with the node count so that the
	// leader sees at most 500 heartbeats a second).
	HeartbeatTTL time.Duration
	// PreemptionEnabled lets higher-priority jobs evict lower-priority
	// allocations when nothing else fits.
	PreemptionEnabled bool
	// Workers is the number of scheduling workers on the leader (default 2).
	Workers int
	// EvalTimeout is how long a worker may hold an evaluation before the
	// broker delivers it again (default 30s).
	EvalTimeout time.Duration
	// TLS, when set, turns on mutual TLS everywhere the server talks: its
	// HTTP API (CLI, agent and server certificates accepted), Raft and
	// forwarding between servers (server certificates only) and its
	// calls to agents (agent certificates only). Its certificate must be
	// a server certificate.
	TLS *tlsutil.Source
	// Insecure allows listening on a non-loopback address without TLS.
	// Without it, New refuses such a configuration (ErrInsecure).
	Insecure bool
	// Encrypt is a base64 gossip key (16, 24 or 32 bytes) that turns on
	// gossip encryption. The keyring is kept in DataDir/server/keyring.json
	// and, once there, wins over Encrypt (it may have been rotated).
	Encrypt string
	// Dev is berth dev's single server on loopback: Raft's timeouts are
	// shortened so the lone server elects itself within a few hundred
	// milliseconds. Not for servers that will have peers.
	Dev bool
	// SecretsKeyFile holds the AES-256 key that seals secrets in Raft;
	// every server must have the same one (default
	// DataDir/server/secrets.key; berth dev makes it). See secret.go.
	SecretsKeyFile string
	// AuditLog is the JSON-lines audit log (default
	// DataDir/server/audit.log). See audit.go.
	AuditLog string
}

// DefaultConfig returns a single-server configuration on the default
// ports, bound to loopback, with its data in dataDir.
func DefaultConfig(dataDir string) Config {
	return Config{
		DataDir:         dataDir,
		BindAddr:        "127.0.0.1",
		HTTPPort:        DefaultHTTPPort,
		RaftPort:        DefaultRaftPort,
		GossipPort:      DefaultGossipPort,
		BootstrapExpect: 1,
		Datacenter:      DefaultDatacenter,
	}
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return ErrNoDataDir
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "server"
		}
		c.NodeName = h
	}
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("%w: bind address %q is not an IP", ErrBadConfig, c.BindAddr)
	}
	if c.TLS == nil && !c.Insecure && !net.ParseIP(c.BindAddr).IsLoopback() {
		return fmt.Errorf("%w: %s is not a loopback address", ErrInsecure, c.BindAddr)
	}
	if c.TLS != nil && c.TLS.Role() != tlsutil.RoleServer {
		return fmt.Errorf("%w: a server needs a server certificate, not a %s certificate", ErrBadConfig, c.TLS.Role())
	}
	if c.AdvertiseAddr == "" {
		if ip := net.ParseIP(c.BindAddr); ip.IsUnspecified() {
			return fmt.Errorf("%w: binding %s needs an advertise address other servers can reach", ErrBadConfig, c.BindAddr)
		}
		c.AdvertiseAddr = c.BindAddr
	}
	for name, p := range map[string]int{"http port": c.HTTPPort, "raft port": c.RaftPort, "gossip port": c.GossipPort} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("%w: %s %d out of range 0-65535", ErrBadConfig, name, p)
		}
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("%w: bootstrap-expect %d must be >= 0", ErrBadConfig, c.BootstrapExpect)
	}
	if c.Datacenter == "" {
		c.Datacenter = DefaultDatacenter
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HeartbeatTTL <= 0 {
		c.HeartbeatTTL = DefaultHeartbeatTTL
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.EvalTimeout <= 0 {
		c.EvalTimeout = DefaultEvalTimeout
	}
	return nil
}
