package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/hashicorp/memberlist"
)

// Roles a member can advertise.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// Member statuses as reported in api.Member.Status.
const (
	StatusAlive   = "alive"
	StatusSuspect = "suspect"
	StatusFailed  = "failed"
	StatusLeft    = "left"
)

// Errors returned by this package.
var (
	// ErrMetaTooLarge means the encoded Meta exceeds memberlist's limit;
	// shorten the addresses or the datacenter name.
	ErrMetaTooLarge = errors.New("gossip: member metadata exceeds 512 bytes")
	// ErrNoName means Config.Name was empty; every member needs a unique name.
	ErrNoName = errors.New("gossip: member name is required")
	// ErrShutdown means the pool has been shut down.
	ErrShutdown = errors.New("gossip: pool is shut down")
)

// Meta is what a member tells the others about itself. It travels as JSON
// in memberlist's node metadata, so it must stay small.
type Meta struct {
	Role       string `json:"r"`
	HTTPAddr   string `json:"h,omitempty"`
	RaftAddr   string `json:"ra,omitempty"`
	Datacenter string `json:"dc,omitempty"`
	NodeID     string `json:"n,omitempty"`
	// ServerID is the Raft server ID of a server member.
	ServerID string `json:"s,omitempty"`
	// Leaving is set by Leave just before the member departs, so that
	// others can tell a graceful leave from a failure (memberlist's
	// leave notification does not say which).
	Leaving bool `json:"l,omitempty"`
}

func (m Meta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("gossip: encode metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrMetaTooLarge, len(b))
	}
	return b, nil
}

func decodeMeta(b []byte) Meta {
	var m Meta
	if len(b) > 0 {
		// A member with undecodable metadata is shown with an empty role
		// rather than dropped: it is still a live peer in the pool.
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// Config configures a pool member.
type Config struct {
	// Name is unique in the pool (the server's or node's name).
	Name string
	// BindAddr is the IP to listen on ("" means 127.0.0.1).
	BindAddr string
	// Port is the gossip port (TCP and UDP); 0 picks a free one.
	Port int
	// AdvertiseAddr is the IP others reach this member on; "" lets
	// memberlist pick one (BindAddr unless it is 0.0.0.0).
	AdvertiseAddr string
	// Join lists host:port addresses of existing members. If none answers,
	// the pool keeps retrying in the background until one does.
	Join []string
	Meta Meta
	// Logger receives memberlist's logs at debug level.
	Logger *slog.Logger
	// RetryJoinInterval is the pause between background join attempts
	// (default 1s).
	RetryJoinInterval time.Duration
	// Keyring, when set, encrypts and authenticates all gossip: a node
	// without one of its keys cannot join or be heard (LoadKeyring).
	Keyring *Keyring
}

// EventType says what happened to a member.
type EventType int

// Event types.
const (
	EventJoin EventType = iota + 1
	EventLeave
	EventUpdate
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventUpdate:
		return "update"
	}
	return "unknown"
}

// Event reports a membership change. For EventLeave, Member.Status tells a
// graceful leave ("left") from a failure ("failed").
type Event struct {
	Type   EventType
	Member api.Member
	Meta   Meta
}

// Peer is a member together with its full metadata.
type Peer struct {
	api.Member
	Meta Meta
}

// Pool is a running member of the gossip pool. Its methods are safe for
// concurrent use.
type Pool struct {
	ml     *memberlist.Memberlist
	log    *slog.Logger
	name   string
	events chan Event

	mu       sync.Mutex
	meta     []byte
	members  map[string]Peer
	queue    []Event
	queueSig chan struct{}
	joined   bool

	kr keyringState

	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// maxQueuedEvents bounds the events held for a slow reader; beyond it the
// oldest are dropped (Members() stays authoritative).
const maxQueuedEvents = 4096

// Start creates the local member, listens, and joins cfg.Join.
func Start(cfg Config) (*Pool, error) {
	if cfg.Name == "" {
		return nil, ErrNoName
	}
	meta, err := cfg.Meta.encode()
	if err != nil {
		return nil, err
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RetryJoinInterval <= 0 {
		cfg.RetryJoinInterval = time.Second
	}
	p := &Pool{
		log:      cfg.Logger,
		name:     cfg.Name,
		events:   make(chan Event),
		meta:     meta,
		members:  map[string]Peer{},
		queueSig: make(chan struct{}, 1),
		done:     make(chan struct{}),
		kr:       keyringState{ring: cfg.Keyring, pending: map[string]chan keyringReply{}},
	}
	mc := memberlist.DefaultLANConfig()
	tune(mc)
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.Port
	mc.AdvertisePort = cfg.Port
	if cfg.AdvertiseAddr != "" {
		mc.AdvertiseAddr = cfg.AdvertiseAddr
	}
	if cfg.Keyring != nil {
		mc.Keyring = cfg.Keyring.ring
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = (*delegate)(p)
	mc.Events = (*eventDelegate)(p)
	mc.Logger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen on %s: %w (is the gossip port in use? choose another with --gossip-port)",
			net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port)), err)
	}
	p.ml = ml
	p.wg.Add(1)
	go p.deliver()
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			p.log.Warn("gossip join failed, retrying in the background", "join", cfg.Join, "err", err)
			p.wg.Add(1)
			go p.retryJoin(cfg.Join, cfg.RetryJoinInterval)
		} else {
			p.setJoined()
		}
	}
	return p, nil
}

// tune sets timings for fast failure detection on a LAN or loopback: probe
// every 500ms and declare a silent member failed after about 1-2s.
func tune(mc *memberlist.Config) {
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.SuspicionMult = 2
	mc.SuspicionMaxTimeoutMult = 2
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 10 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.IndirectChecks = 2
	mc.GossipToTheDeadTime = 10 * time.Second
	// A restarted member may come back on a new address under the same
	// name; accept it once the old incarnation has been dead a moment.
	mc.DeadNodeReclaimTime = time.Second
	mc.AwarenessMaxMultiplier = 4
}

func (p *Pool) setJoined() {
	p.mu.Lock()
	p.joined = true
	p.mu.Unlock()
}

func (p *Pool) retryJoin(addrs []string, every time.Duration) {
	defer p.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		if _, err := p.ml.Join(addrs); err != nil {
			p.log.Debug("gossip join retry failed", "join", addrs, "err", err)
			continue
		}
		p.log.Info("gossip joined", "join", addrs)
		p.setJoined()
		return
	}
}

// Join contacts the given host:port addresses and merges their pools. It
// returns how many were reached.
func (p *Pool) Join(addrs []string) (int, error) {
	n, err := p.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("gossip: join %v: %w", addrs, err)
	}
	p.setJoined()
	return n, nil
}

// Name is the local member's name.
func (p *Pool) Name() string { return p.name }

// Addr is the local gossip address as host:port (useful with Port 0).
func (p *Pool) Addr() string {
	n := p.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Events delivers membership changes in order. Reading it is optional; the
// pool keeps up to 4096 unread events and drops the oldest beyond that.
func (p *Pool) Events() <-chan Event { return p.events }

// Members lists every member seen so far, the local one included, sorted by
// name. Failed and departed members stay in the list with their status.
func (p *Pool) Members() []api.Member {
	peers := p.Peers()
	out := make([]api.Member, len(peers))
	for i, pe := range peers {
		out[i] = pe.Member
	}
	return out
}

// Peers is Members with each member's metadata.
func (p *Pool) Peers() []Peer {
	p.refreshStatuses()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Peer, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns one member by name.
func (p *Pool) Lookup(name string) (Peer, bool) {
	p.refreshStatuses()
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.members[name]
	return m, ok
}

// refreshStatuses folds memberlist's suspect state into the members map;
// the event delegate only reports alive/dead transitions.
func (p *Pool) refreshStatuses() {
	live := p.ml.Members()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range live {
		m, ok := p.members[n.Name]
		if !ok {
			continue
		}
		switch n.State {
		case memberlist.StateSuspect:
			m.Status = StatusSuspect
		case memberlist.StateAlive:
			m.Status = StatusAlive
		}
		p.members[n.Name] = m
	}
}

// UpdateMeta changes the local member's metadata and gossips it.
func (p *Pool) UpdateMeta(m Meta) error {
	b, err := m.encode()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.meta = b
	p.mu.Unlock()
	if err := p.ml.UpdateNode(5 * time.Second); err != nil {
		return fmt.Errorf("gossip: broadcast metadata: %w", err)
	}
	return nil
}

// Leave announces a graceful departure (others see status "left") and
// waits up to timeout for it to spread. Call Shutdown afterwards.
func (p *Pool) Leave(timeout time.Duration) error {
	p.mu.Lock()
	m := decodeMeta(p.meta)
	p.mu.Unlock()
	m.Leaving = true
	if err := p.UpdateMeta(m); err != nil {
		p.log.Warn("gossip: could not announce leave intent", "err", err)
	}
	if err := p.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Shutdown stops the member without announcing it; others declare it
// failed after the suspicion timeout. It closes the Events channel.
func (p *Pool) Shutdown() error {
	var err error
	p.stopOnce.Do(func() {
		close(p.done)
		err = p.ml.Shutdown()
		p.wg.Wait()
		close(p.events)
	})
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

func (p *Pool) enqueue(ev Event) {
	p.mu.Lock()
	if len(p.queue) >= maxQueuedEvents {
		p.queue = p.queue[1:]
	}
	p.queue = append(p.queue, ev)
	p.mu.Unlock()
	select {
	case p.queueSig <- struct{}{}:
	default:
	}
}

func (p *Pool) deliver() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		var ev Event
		have := len(p.queue) > 0
		if have {
			ev = p.queue[0]
			p.queue = p.queue[1:]
		}
		p.mu.Unlock()
		if !have {
			select {
			case <-p.queueSig:
				continue
			case <-p.done:
				return
			}
		}
		select {
		case p.events <- ev:
		case <-p.done:
			return
		}
	}
}

func (p *Pool) record(n *memberlist.Node, typ EventType) {
	meta := decodeMeta(n.Meta)
	// memberlist does not update n.State before notifying, so the event
	// type and the leave intent decide the status.
	status := StatusAlive
	if typ == EventLeave {
		status = StatusFailed
		if meta.Leaving {
			status = StatusLeft
		}
	}
	m := api.Member{
		Name:       n.Name,
		Addr:       net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Role:       meta.Role,
		Status:     status,
		HTTPAddr:   meta.HTTPAddr,
		RaftAddr:   meta.RaftAddr,
		Datacenter: meta.Datacenter,
	}
	p.mu.Lock()
	p.members[n.Name] = Peer{Member: m, Meta: meta}
	p.mu.Unlock()
	p.log.Debug("gossip member "+typ.String(), "member", n.Name, "status", status, "role", meta.Role)
	p.enqueue(Event{Type: typ, Member: m, Meta: meta})
}

// delegate implements memberlist.Delegate. memberlist calls it from its own
// goroutines; every method must return quickly and never block.
type delegate Pool

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.meta) > limit {
		return nil
	}
	return append([]byte(nil), d.meta...)
}
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) > 0 {
		(*Pool)(d).handleKeyringMsg(b)
	}
}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// eventDelegate implements memberlist.EventDelegate; memberlist calls it
// synchronously with its state lock held, so it only records and queues.
type eventDelegate Pool

var _ memberlist.EventDelegate = (*eventDelegate)(nil)

func (e *eventDelegate) NotifyJoin(n *memberlist.Node)   { (*Pool)(e).record(n, EventJoin) }
func (e *eventDelegate) NotifyLeave(n *memberlist.Node)  { (*Pool)(e).record(n, EventLeave) }
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) { (*Pool)(e).record(n, EventUpdate) }
