package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/gossip"
	"github.com/berth-dev/berth/internal/tlsutil"
	"github.com/berth-dev/berth/runtime/engine"
)

type engineTaskRequest = engine.TaskRequest

// Config configures an agent. Zero values take the defaults in DESIGN.md.
type Config struct {
	NodeName   string            // default: the host name
	DataDir    string            // default /var/lib/berth
	Datacenter string            // default dc1
	BindAddr   string            // IP the agent's HTTP API listens on; default 127.0.0.1
	HTTPPort   int               // default 9473; -1 picks a free port
	Servers    []string          // server HTTP addresses (host:port) to register with
	Gossip     *GossipConfig     // join the gossip pool to find servers; nil in dev mode
	Labels     map[string]string // user labels, matched by ${node.label.KEY}
	// InsecureRegistries (host:port) are pulled from over plain HTTP or
	// unverified TLS (--insecure-registry).
	InsecureRegistries []string
	Logger             *slog.Logger
	// TLS, when set, serves the agent API over mutual TLS (only server
	// certificates may call it: the CLI goes through a server's proxy)
	// and calls servers over https with this agent certificate.
	TLS *tlsutil.Source
	// Insecure allows a non-loopback BindAddr without TLS; without it New
	// refuses one (ErrInsecure).
	Insecure bool
	// Encrypt is a base64 gossip key; the keyring is kept in
	// DataDir/agent-keyring.json and wins over Encrypt once it exists.
	Encrypt string
	// Token is the ACL token (a policy with the node capability) the
	// agent sends on register, heartbeat and its allocation watch once
	// the cluster's ACLs are on; default $BERTH_TOKEN.
	Token string
}

// ErrInsecure means the agent would listen on a non-loopback address
// without TLS; give it certificates, or Config.Insecure (--insecure).
var ErrInsecure = errors.New("agent: refusing to listen on a non-loopback address without TLS (give --ca-file, --cert-file and --key-file, or --insecure)")

// Agent runs the containers the servers place on this node.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	eng   *engine.Engine
	state *stateDB
	node  *api.Node

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	httpSrv *http.Server
	httpLn  net.Listener
	pool    *gossip.Pool
	keyring *gossip.Keyring // nil without gossip encryption
	// rejoining is set while a gossip rejoin is under way.
	rejoining atomic.Bool

	mu       sync.Mutex
	runners  map[string]*allocRunner
	server   string   // the server address in use
	known    []string // servers that answered before
	clients  map[string]*api.Client
	ttl      time.Duration
	updates  map[string]*api.Allocation
	updateCh chan struct{}
	gpu      *gpuState // nil without GPUs
}

// New opens the agent's state and runtime. It does not contact any server.
func New(cfg Config) (*Agent, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "/var/lib/berth"
	}
	if cfg.Datacenter == "" {
		cfg.Datacenter = "dc1"
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1"
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 9473
	}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: no node name given and the host name is unknown: %w", err)
		}
		cfg.NodeName = h
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if ip := net.ParseIP(cfg.BindAddr); cfg.TLS == nil && !cfg.Insecure && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%w: %s is not a loopback address", ErrInsecure, cfg.BindAddr)
	}
	if cfg.TLS != nil && cfg.TLS.Role() != tlsutil.RoleAgent {
		return nil, fmt.Errorf("agent: needs an agent certificate, not a %s certificate (berth tls cert create --agent)", cfg.TLS.Role())
	}
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	st, err := openState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	eng, err := engine.Open(cfg.DataDir)
	if err != nil {
		st.Close()
		return nil, err
	}
	eng.InsecureRegistries = cfg.InsecureRegistries
	id, err := st.nodeID()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("agent: node ID: %w", err)
	}
	a := &Agent{
		cfg: cfg, eng: eng, state: st,
		log:      cfg.Logger.With("node", cfg.NodeName),
		runners:  map[string]*allocRunner{},
		clients:  map[string]*api.Client{},
		updates:  map[string]*api.Allocation{},
		updateCh: make(chan struct{}, 1),
		ttl:      5 * time.Second,
	}
	res, attrs := fingerprint(cfg.DataDir)
	// unique.network.ip is where this node's published ports are reached
	// from elsewhere in the cluster (berth ps, berth service ls).
	attrs["unique.network.ip"] = advertiseIP(cfg.BindAddr)
	a.node = &api.Node{
		ID: id, Name: cfg.NodeName, Datacenter: cfg.Datacenter,
		Status: api.NodeStatusReady, Eligibility: api.NodeEligible,
		Attributes: attrs, Labels: cfg.Labels, Resources: res,
	}
	if gpus := a.gpuFingerprint(); len(gpus) > 0 {
		a.node.Resources.GPUs = gpus
		attrs["gpu.count"] = strconv.Itoa(len(gpus))
	}
	return a, nil
}

// Engine is the node's runtime.
func (a *Agent) Engine() *engine.Engine { return a.eng }

// NodeID is this node's persistent ID.
func (a *Agent) NodeID() string { return a.node.ID }

// HTTPAddr is the address the agent API listens on, once started.
func (a *Agent) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// Start serves the agent API, re-attaches to the containers of the last
// run, registers with a server and starts watching allocations. It returns
// once the API listens; registration retries in the background.
func (a *Agent) Start(ctx context.Context) error {
	a.ctx, a.cancel = context.WithCancel(ctx)
	port := a.cfg.HTTPPort
	if port < 0 {
		port = 0
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a.cfg.BindAddr, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("agent: listen on %s:%d: %w (use --agent-port to pick another port)", a.cfg.BindAddr, port, err)
	}
	a.node.HTTPAddr = ln.Addr().String()
	if a.cfg.TLS != nil {
		ln = tls.NewListener(ln, a.cfg.TLS.ServerConfig(tlsutil.RoleServer))
	} else if ip := net.ParseIP(a.cfg.BindAddr); ip == nil || !ip.IsLoopback() {
		a.log.Warn("INSECURE: serving the agent API and gossip without TLS on a non-loopback address; anyone who reaches it can run containers as root",
			"bind", a.cfg.BindAddr)
	}
	a.httpLn = ln
	a.httpSrv = &http.Server{Handler: a.newRouter(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent API stopped", "err", err)
		}
	}()
	a.log.Info("agent API listening", "addr", a.node.HTTPAddr)
	if a.cfg.Gossip != nil {
		kr, fromFile, err := gossip.LoadKeyring(filepath.Join(a.cfg.DataDir, "agent-keyring.json"), a.cfg.Encrypt)
		if err != nil {
			_ = a.httpSrv.Close()
			return fmt.Errorf("agent: %w", err)
		}
		if fromFile && a.cfg.Encrypt != "" {
			a.log.Info("gossip keyring loaded from the data directory; --encrypt is used only for a new keyring")
		}
		a.keyring = kr
		if err := a.startGossip(*a.cfg.Gossip); err != nil {
			_ = a.httpSrv.Close()
			return err
		}
	}

	if err := a.restore(); err != nil {
		a.log.Error("restore local state", "err", err)
	}
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.registerLoop() }()
	go func() { defer a.wg.Done(); a.watchLoop() }()
	go func() { defer a.wg.Done(); a.reportLoop() }()
	a.startGPUWatch()
	return nil
}

// Shutdown stops the agent. Containers keep running under their shims and
// are re-attached by the next Start.
func (a *Agent) Shutdown() error {
	if a.cancel != nil {
		a.cancel()
	}
	if a.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.httpSrv.Shutdown(ctx)
		cancel()
	}
	a.wg.Wait()
	if a.pool != nil {
		// No graceful leave: a restarting agent must not look like a node
		// that left for good; it rejoins within the failure timeout.
		_ = a.pool.Shutdown()
	}
	a.mu.Lock()
	runners := make([]*allocRunner, 0, len(a.runners))
	for _, r := range a.runners {
		runners = append(runners, r)
	}
	a.mu.Unlock()
	for _, r := range runners {
		r.shutdown()
	}
	return a.state.Close()
}

// Run starts an agent and blocks until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		a.state.Close()
		return err
	}
	<-ctx.Done()
	return a.Shutdown()
}

// restore re-creates runners for the allocations of the last run. Their
// tasks re-attach to running containers and collect exits that happened
// while the agent was down.
func (a *Agent) restore() error {
	las, err := a.state.allocs()
	if err != nil {
		return err
	}
	for _, la := range las {
		r := newAllocRunner(a, la)
		stopping := la.Alloc.DesiredStatus != api.AllocDesiredRun
		if stopping {
			r.stopped = true
		}
		a.mu.Lock()
		a.runners[la.Alloc.ID] = r
		a.mu.Unlock()
		r.run()
		if stopping {
			// The last agent may have died in the middle of stopping it.
			go r.stopTasks()
		}
	}
	if len(las) > 0 {
		a.log.Info("restored allocations from local state", "count", len(las))
	}
	return nil
}

// servers lists the server addresses to try, configured ones first.
// Servers that once answered are kept too: a partition can empty the
// gossip view (dead members are forgotten), and the agent must still
// reach the servers when the network heals.
func (a *Agent) servers() []string {
	out := append([]string(nil), a.cfg.Servers...)
	for _, s := range append(a.gossipServers(), a.known...) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// serverAnswered records that the server in use answered.
func (a *Agent) serverAnswered() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.server != "" && !slices.Contains(a.known, a.server) {
		a.known = append(a.known, a.server)
	}
}

// rejoinGossip joins the pool again through the --join addresses when no
// live server is left in the agent's view of it. One attempt at a time.
func (a *Agent) rejoinGossip() {
	if a.pool == nil || a.cfg.Gossip == nil || len(a.cfg.Gossip.Join) == 0 || len(a.gossipServers()) > 0 {
		return
	}
	if !a.rejoining.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer a.rejoining.Store(false)
		if _, err := a.pool.Join(a.cfg.Gossip.Join); err != nil {
			a.log.Debug("gossip rejoin failed", "err", err)
		} else {
			a.log.Info("rejoined the gossip pool", "join", a.cfg.Gossip.Join)
		}
	}()
}

// client returns a client for the server in use, or the next one to try.
func (a *Agent) client(rotate bool) (*api.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.servers()
	if len(list) == 0 {
		return nil, errors.New("agent: no server known yet: give --servers or --join")
	}
	if a.server == "" || rotate {
		next := list[0]
		for i, s := range list {
			if s == a.server && i+1 < len(list) {
				next = list[i+1]
			}
		}
		a.server = next
	}
	if c, ok := a.clients[a.server]; ok {
		return c, nil
	}
	addr := a.server
	if a.cfg.TLS != nil && !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	c, err := api.NewClient(addr)
	if err != nil {
		return nil, err
	}
	if a.cfg.TLS != nil {
		c.SetTLSConfig(a.cfg.TLS.ClientConfig(tlsutil.RoleServer))
	}
	if a.cfg.Token != "" {
		c.SetToken(a.cfg.Token)
	}
	a.clients[a.server] = c
	return c, nil
}

// requestTimeout bounds the agent's non-blocking calls to a server, so a
// hung server makes the agent move on to another one.
const requestTimeout = 5 * time.Second

func (a *Agent) bounded(c *api.Client) (*api.Client, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(a.ctx, requestTimeout)
	return c.WithContext(ctx), cancel
}

// registerLoop registers the node and then heartbeats at a third of the
// TTL the server asked for, re-registering when the server forgot it.
func (a *Agent) registerLoop() {
	backoff := 200 * time.Millisecond
	registered := false
	failures := 0
	for {
		if a.takeGPUUpdate() { // a GPU failed: the server must see it
			registered = false
		}
		var err error
		c, cerr := a.client(false)
		if cerr != nil {
			err = cerr
		} else if !registered {
			var resp *api.NodeRegisterResponse
			bc, cancel := a.bounded(c)
			resp, err = bc.Nodes().Register(a.node)
			cancel()
			if err == nil {
				registered = true
				a.setTTL(time.Duration(resp.HeartbeatTTL))
				a.log.Info("registered with server", "server", a.currentServer(), "node_id", a.node.ID)
			}
		} else {
			var resp *api.NodeRegisterResponse
			bc, cancel := a.bounded(c)
			resp, err = bc.Nodes().Heartbeat(a.node.ID)
			cancel()
			if err == nil {
				a.setTTL(time.Duration(resp.HeartbeatTTL))
			} else if isStatus(err, http.StatusNotFound) {
				registered = false
			}
		}
		wait := a.heartbeatInterval()
		if err != nil {
			failures++
			// A server that is still electing its leader answers 503 for a
			// moment; only a lasting failure deserves a warning.
			level := slog.LevelDebug
			if failures >= 5 {
				level = slog.LevelWarn
			}
			a.log.Log(a.ctx, level, "server unreachable", "server", a.currentServer(), "err", err)
			_, _ = a.client(true)
			wait = backoff
			backoff = min(backoff*2, 2*time.Second)
			if failures >= 3 {
				a.rejoinGossip()
			}
		} else {
			backoff, failures = 200*time.Millisecond, 0
			a.serverAnswered()
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func isStatus(err error, code int) bool {
	var se *api.StatusError
	return errors.As(err, &se) && se.Code == code
}

func (a *Agent) currentServer() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.server
}

func (a *Agent) setTTL(d time.Duration) {
	if d <= 0 {
		return
	}
	a.mu.Lock()
	a.ttl = d
	a.mu.Unlock()
}

func (a *Agent) heartbeatInterval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ttl / 3
}

// watchLoop follows this node's allocations with a blocking query and
// reconciles the runners with them.
func (a *Agent) watchLoop() {
	var index uint64 // the index to block on; 0 asks without blocking
	var seen uint64  // the highest index any answer carried
	stale := 0       // answers in a row older than seen
	backoff := 200 * time.Millisecond
	for a.ctx.Err() == nil {
		c, err := a.client(false)
		var allocs []*api.Allocation
		var meta *api.QueryMeta
		if err == nil {
			ctx, cancel := context.WithTimeout(a.ctx, 45*time.Second)
			allocs, meta, err = c.WithContext(ctx).Nodes().Allocations(a.node.ID, &api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second})
			cancel()
		}
		if err != nil {
			if a.ctx.Err() != nil {
				return
			}
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			index = 0
			continue
		}
		backoff = 200 * time.Millisecond
		last := uint64(0)
		if meta != nil {
			last = meta.LastIndex
		}
		// An answer older than one already seen comes from a server that
		// lags behind (a new leader catching up, a rotation to another
		// server). It may lack allocations that exist, so it can start
		// and update runners but never destroy them. Many such answers
		// in a row mean the cluster's state really was reset.
		if last < seen && stale < maxStaleAnswers {
			stale++
			a.reconcile(allocs, false)
			index = 0
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		stale = 0
		seen, index = last, last
		a.reconcile(allocs, true)
	}
}

// maxStaleAnswers is how many answers older than the newest seen the watch
// loop discounts before it believes the cluster's state was reset.
const maxStaleAnswers = 20

// reconcile starts runners for new allocations, passes updates to existing
// ones, and (with destroy) destroys runners whose allocation the server no
// longer has.
func (a *Agent) reconcile(allocs []*api.Allocation, destroy bool) {
	seen := map[string]bool{}
	for _, alloc := range allocs {
		seen[alloc.ID] = true
		a.mu.Lock()
		r, ok := a.runners[alloc.ID]
		a.mu.Unlock()
		if ok {
			if cur := r.current(); alloc.ModifyIndex != cur.ModifyIndex || alloc.DesiredStatus != cur.DesiredStatus {
				r.update(alloc)
			}
			continue
		}
		if alloc.DesiredStatus != api.AllocDesiredRun || alloc.Terminal() {
			continue // never started here; nothing to do
		}
		r = newAllocRunner(a, &localAlloc{Alloc: alloc})
		a.mu.Lock()
		a.runners[alloc.ID] = r
		a.mu.Unlock()
		r.persist()
		r.log.Info("starting allocation")
		r.run()
	}
	if !destroy {
		return
	}
	a.mu.Lock()
	var gone []*allocRunner
	for id, r := range a.runners {
		if !seen[id] {
			gone = append(gone, r)
			delete(a.runners, id)
		}
	}
	a.mu.Unlock()
	for _, r := range gone {
		r.log.Info("allocation removed by the server; removing its containers")
		go r.destroy()
	}
}

// reportAlloc queues a status report; the latest report per allocation
// wins.
func (a *Agent) reportAlloc(up *api.Allocation) {
	a.mu.Lock()
	a.updates[up.ID] = up
	a.mu.Unlock()
	select {
	case a.updateCh <- struct{}{}:
	default:
	}
}

// reportLoop sends queued status reports in batches, retrying until a
// server takes them.
func (a *Agent) reportLoop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.updateCh:
		}
		for {
			a.mu.Lock()
			batch := make([]*api.Allocation, 0, len(a.updates))
			for _, u := range a.updates {
				batch = append(batch, u)
			}
			a.updates = map[string]*api.Allocation{}
			a.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			c, err := a.client(false)
			if err == nil {
				bc, cancel := a.bounded(c)
				_, err = bc.Allocations().UpdateStatus(batch)
				cancel()
			}
			if err == nil {
				break
			}
			a.log.Warn("report allocation status", "err", err)
			a.mu.Lock()
			for _, u := range batch {
				if _, newer := a.updates[u.ID]; !newer {
					a.updates[u.ID] = u
				}
			}
			a.mu.Unlock()
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// NodeName is the name this node registers under.
func (a *Agent) NodeName() string { return a.node.Name }

// advertiseIP is the address other hosts reach this node's published ports
// on: the agent's bind address, or when that is a wildcard (0.0.0.0, ::)
// the host's first global unicast IPv4 address. A loopback bind (dev mode)
// is kept as is: its ports are reachable on that address only.
func advertiseIP(bind string) string {
	ip := net.ParseIP(bind)
	if ip == nil || !ip.IsUnspecified() {
		return bind
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return bind
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return bind
}
