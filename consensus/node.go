package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/berth-dev/berth/api"
)

// Defaults for Config's Raft timing. They fail over within about 1.5 s on
// loopback (a follower notices the silent leader after 0.6–1.2 s and wins
// the election in one round trip) while tolerating the scheduling hiccups of
// a busy two-core machine, where 50 ms heartbeats still arrive well inside
// the lease.
const (
	DefaultHeartbeatTimeout   = 600 * time.Millisecond
	DefaultElectionTimeout    = 600 * time.Millisecond
	DefaultLeaderLeaseTimeout = 500 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond

	// membershipTimeout bounds AddVoter and RemoveServer.
	membershipTimeout = 10 * time.Second
)

// Config configures a Raft server node. NodeID and DataDir are required, and
// BindAddr unless Transport is set.
type Config struct {
	// NodeID is the stable server ID. The caller persists it (or derives
	// it from the data directory): a server that comes back under another
	// ID is a new member.
	NodeID string
	// DataDir holds raft/: raft.db (raft-boltdb/v2 log and stable store)
	// and snapshots/.
	DataDir string
	// BindAddr is the host:port of the Raft TCP transport.
	BindAddr string
	// AdvertiseAddr is the address other servers dial; it defaults to
	// BindAddr and must not be an unspecified address such as 0.0.0.0.
	AdvertiseAddr string
	// Bootstrap makes the node bootstrap a single-server cluster of itself
	// when no Raft state exists yet. Existing state is always recovered.
	Bootstrap bool
	// Logger receives the node's and Raft's logs; nil means slog.Default().
	Logger *slog.Logger
	// Transport replaces the TCP transport (tests pass
	// raft.NewInmemTransport); BindAddr is then unused. The caller closes
	// it after Shutdown.
	Transport raft.Transport
	// ServerTLS and ClientTLS, when both are set, wrap the TCP transport
	// in mutual TLS: ServerTLS for the connections other servers open to
	// this one, ClientTLS for those it opens (both should accept server
	// certificates only).
	ServerTLS *tls.Config
	ClientTLS *tls.Config

	// Raft timing; zero means the Default* constants above.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// Snapshot policy; zero means Raft's defaults (a snapshot every 8192
	// entries checked every 120 s, keeping 10240 entries after it).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
}

// Node is one Raft server: the replicated log on disk, the FSM and its state
// store. All methods are safe for concurrent use.
type Node struct {
	raft      *raft.Raft
	fsm       *FSM
	store     *raftboltdb.BoltStore
	transport raft.Transport
	ownsTrans bool
	logger    *slog.Logger

	shutdownOnce sync.Once
	shutdownErr  error
}

// Open starts a Raft server with its state in cfg.DataDir/raft. A node that
// has Raft state on disk recovers it (its latest snapshot, then its log as
// the cluster commits it) and rejoins its cluster; a new node with
// cfg.Bootstrap set bootstraps a one-server cluster; a new node without it
// waits to be added by a leader (AddVoter) or bootstrapped (Bootstrap).
func Open(cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("consensus: Config.NodeID is empty; give each server a stable ID")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("consensus: Config.DataDir is empty; say where Raft keeps its state")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	hl := newHCLogger(logger, "raft")

	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus: create raft directory: %w", err)
	}
	dbPath := filepath.Join(dir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        dbPath,
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("consensus: open %s: it is locked; is another berth server using this data directory?", dbPath)
		}
		return nil, fmt.Errorf("consensus: open raft log %s: %w", dbPath, err)
	}
	n := &Node{store: store, logger: logger, fsm: NewFSM(logger)}
	fail := func(err error) (*Node, error) {
		if n.ownsTrans {
			n.transport.(*raft.NetworkTransport).Close()
		}
		store.Close()
		return nil, err
	}

	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fail(fmt.Errorf("consensus: create log cache: %w", err))
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl.Named("snapshot"))
	if err != nil {
		return fail(fmt.Errorf("consensus: open snapshot store in %s: %w", dir, err))
	}

	n.transport = cfg.Transport
	if n.transport == nil {
		if cfg.BindAddr == "" {
			return fail(errors.New("consensus: Config.BindAddr is empty; give the Raft transport a host:port"))
		}
		adv := cfg.AdvertiseAddr
		if adv == "" {
			adv = cfg.BindAddr
		}
		tcpAddr, err := net.ResolveTCPAddr("tcp", adv)
		if err != nil {
			return fail(fmt.Errorf("consensus: resolve raft advertise address %q: %w", adv, err))
		}
		var advAddr net.Addr = tcpAddr
		if tcpAddr.Port == 0 {
			advAddr = nil // bound to a random port: advertise what the listener got
		}
		var trans *raft.NetworkTransport
		if cfg.ServerTLS != nil && cfg.ClientTLS != nil {
			trans, err = newTLSTransport(cfg.BindAddr, advAddr, cfg.ServerTLS, cfg.ClientTLS, hl.Named("transport"))
		} else {
			trans, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, advAddr, 3, 10*time.Second, hl.Named("transport"))
		}
		if err != nil {
			return fail(fmt.Errorf("consensus: listen for raft on %s: %w", cfg.BindAddr, err))
		}
		n.transport, n.ownsTrans = trans, true
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = orDefault(cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	rc.ElectionTimeout = orDefault(cfg.ElectionTimeout, DefaultElectionTimeout)
	rc.LeaderLeaseTimeout = orDefault(cfg.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	rc.CommitTimeout = orDefault(cfg.CommitTimeout, DefaultCommitTimeout)
	// Concurrent Apply calls (HTTP writes, the plan applier's pipelined
	// commits) queue without blocking one another, and the leader takes
	// up to MaxAppendEntries of them into one disk write.
	rc.BatchApplyCh = true
	if cfg.SnapshotThreshold != 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval != 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs != 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return fail(fmt.Errorf("consensus: invalid raft config: %w", err))
	}

	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("consensus: read raft state in %s: %w", dir, err))
	}
	if cfg.Bootstrap && !existing {
		conf := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: n.transport.LocalAddr(),
		}}}
		if err := raft.BootstrapCluster(rc, logs, store, snaps, n.transport, conf); err != nil {
			return fail(fmt.Errorf("consensus: bootstrap single-server cluster: %w", err))
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, n.transport)
	if err != nil {
		return fail(fmt.Errorf("consensus: start raft: %w", err))
	}
	n.raft = r
	logger.Info("raft started", "node", cfg.NodeID, "addr", string(n.transport.LocalAddr()),
		"recovered", existing, "bootstrap", cfg.Bootstrap && !existing)
	return n, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// State returns the replicated state store. It is the same store for the
// node's lifetime; snapshot restores swap its contents.
func (n *Node) State() *StateStore { return n.fsm.state }

// Apply commits one write: it encodes req (a pointer to the request struct
// that t names) as a log entry and waits until the FSM has applied it on
// this node. timeout bounds the wait to enqueue the entry (0: no limit);
// once enqueued, the wait ends with the commit or with leadership loss
// (a leader that cannot reach a quorum steps down within
// LeaderLeaseTimeout). It returns the entry's Raft index, and the FSM's
// error if the FSM refused the request (ErrJobNotFound, ErrNodeNotFound,
// ErrInvalidRequest). On a follower it fails with ErrNotLeader.
func (n *Node) Apply(t MessageType, req any, timeout time.Duration) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, n.notLeader()
	}
	data, err := encodeEntry(t, req)
	if err != nil {
		return 0, err
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return 0, n.raftErr(fmt.Sprintf("apply %s", t), err)
	}
	if err, ok := f.Response().(error); ok {
		return f.Index(), err
	}
	return f.Index(), nil
}

func (n *Node) notLeader() error {
	if addr := n.LeaderAddr(); addr != "" {
		return fmt.Errorf("%w: the leader is %s", ErrNotLeader, addr)
	}
	return fmt.Errorf("%w: no leader is known yet", ErrNotLeader)
}

// raftErr maps raft's errors onto the package's sentinels.
func (n *Node) raftErr(op string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return n.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w (%s)", ErrLeadershipLost, op)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w (%s)", ErrTimeout, op)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w (%s)", ErrShutdown, op)
	}
	return fmt.Errorf("consensus: %s: %w", op, err)
}

// IsLeader reports whether this node is the leader right now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// LeaderAddr returns the Raft address of the current leader, or "" when
// none is known.
func (n *Node) LeaderAddr() string {
	addr, _ := n.raft.LeaderWithID()
	return string(addr)
}

// LeaderID returns the server ID of the current leader, or "".
func (n *Node) LeaderID() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// LeaderCh delivers true when this node becomes leader and false when it
// stops being leader. It has one consumer (the server's leadership loop)
// and a buffer of one: a slow consumer may miss a flap, and sees only the
// latest transition.
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// Addr returns the Raft address this node advertises (useful after binding
// port 0).
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

// AppliedIndex returns the index of the last entry the FSM applied.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// Bootstrap forms a new cluster of servers (this one among them). Every
// server may call it with the same list; it fails with
// ErrAlreadyBootstrapped where Raft state already exists.
func (n *Node) Bootstrap(servers []raft.Server) error {
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return ErrAlreadyBootstrapped
	}
	if err != nil {
		return fmt.Errorf("consensus: bootstrap cluster: %w", err)
	}
	return nil
}

// AddVoter adds a server to the cluster, or updates its address. Leader
// only.
func (n *Node) AddVoter(id, addr string) error {
	err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipTimeout).Error()
	if err != nil {
		return n.raftErr(fmt.Sprintf("add voter %s at %s", id, addr), err)
	}
	return nil
}

// RemoveServer removes a server from the cluster. Leader only.
func (n *Node) RemoveServer(id string) error {
	err := n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error()
	if err != nil {
		return n.raftErr(fmt.Sprintf("remove server %s", id), err)
	}
	return nil
}

// Peers lists the servers in the latest Raft configuration this node knows,
// marking the current leader.
func (n *Node) Peers() ([]api.RaftPeer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.raftErr("read raft configuration", err)
	}
	_, leader := n.raft.LeaderWithID()
	servers := f.Configuration().Servers
	peers := make([]api.RaftPeer, 0, len(servers))
	for _, s := range servers {
		peers = append(peers, api.RaftPeer{
			ID:      string(s.ID),
			Address: string(s.Address),
			Leader:  s.ID == leader && leader != "",
			Voter:   s.Suffrage == raft.Voter,
		})
	}
	return peers, nil
}

// Barrier waits until every entry committed before it has been applied to
// this node's FSM: a new leader calls it before trusting its state. Leader
// only.
func (n *Node) Barrier(timeout time.Duration) error {
	if err := n.raft.Barrier(timeout).Error(); err != nil {
		return n.raftErr("barrier", err)
	}
	return nil
}

// Stats returns Raft's counters (state, term, last_log_index, applied_index,
// ...), for status endpoints and metrics.
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// Shutdown stops Raft, then closes the transport it opened and the log
// store. It is safe to call more than once.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("consensus: stop raft: %w", err))
		}
		if n.ownsTrans {
			if err := n.transport.(*raft.NetworkTransport).Close(); err != nil {
				errs = append(errs, fmt.Errorf("consensus: close raft transport: %w", err))
			}
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("consensus: close raft log: %w", err))
		}
		n.shutdownErr = errors.Join(errs...)
	})
	return n.shutdownErr
}

// tlsStreamLayer is raft.StreamLayer over mutual TLS. Raft keeps a small
// pool of connections to each peer, so the handshake cost is paid once
// per connection, not per RPC.
type tlsStreamLayer struct {
	net.Listener // a tls.NewListener
	advertise    net.Addr
	client       *tls.Config
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// tlsHandshakeTimeout bounds the handshake of an accepted or dialed
// connection, so a peer that connects and says nothing cannot hold a
// Raft connection goroutine.
const tlsHandshakeTimeout = 10 * time.Second

func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// The handshake runs on Raft's per-connection goroutine (on the first
	// read); the deadline makes it give up on a silent peer.
	_ = c.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	return &handshakeDeadlineConn{Conn: c.(*tls.Conn)}, nil
}

// handshakeDeadlineConn clears the handshake deadline once the handshake
// is done; Raft sets its own deadlines after that.
type handshakeDeadlineConn struct {
	*tls.Conn
	once sync.Once
}

func (c *handshakeDeadlineConn) Read(b []byte) (int, error) {
	var herr error
	c.once.Do(func() {
		if herr = c.Conn.Handshake(); herr == nil {
			_ = c.Conn.SetDeadline(time.Time{})
		}
	})
	if herr != nil {
		return 0, herr
	}
	return c.Conn.Read(b)
}

func (l *tlsStreamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.Listener.Addr()
}

func (l *tlsStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, tlsHandshakeTimeout))
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: d, Config: l.client}).DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("consensus: TLS dial %s: %w", addr, err)
	}
	return c, nil
}

func newTLSTransport(bind string, advertise net.Addr, server, client *tls.Config, logger hclog.Logger) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	layer := &tlsStreamLayer{Listener: tls.NewListener(ln, server), advertise: advertise, client: client}
	if advertise == nil {
		layer.advertise = ln.Addr()
	}
	if a, ok := layer.advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		ln.Close()
		return nil, errors.New("consensus: raft advertise address is unspecified (0.0.0.0); give an advertise address")
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
	}), nil
}
