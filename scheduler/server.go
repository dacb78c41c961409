package scheduler

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
	"github.com/berth-dev/berth/internal/gossip"
	"github.com/berth-dev/berth/internal/tlsutil"
	"github.com/berth-dev/berth/scheduler/placement"
)

// Server is one berth server: Raft node, gossip member, HTTP API and, while
// it leads, the scheduling pipeline. Create it with New, then Start it;
// Shutdown stops everything. Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	raft    *consensus.Node
	pool    *gossip.Pool
	echo    *echo.Echo
	httpSrv *http.Server
	httpLn  net.Listener

	broker   *EvalBroker
	blocked  *blockedEvals
	hb       *heartbeatTracker
	applier  *planApplier
	planning *planGate             // one worker at a time in placement (gate.go)
	usage    *placement.UsageCache // node usage kept across evaluations
	metrics  *metrics
	// fwd calls other servers (forwarding, peer checks); agentHTTP calls
	// agents. With TLS each presents the server certificate and accepts
	// only its own peer role, and http:// URLs are sent as https://.
	fwd            *http.Client
	agentHTTP      *http.Client
	agentTransport http.RoundTripper

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	leaderMu     sync.Mutex
	leading      bool
	leaderCancel context.CancelFunc
	leaderWG     sync.WaitGroup

	// readyCh is closed once this leader has applied every entry
	// committed before it took over; nil while not leading. Consistent
	// reads on the leader wait for it (waitLeaderReady).
	readyMu sync.Mutex
	readyCh chan struct{}

	nodeCountVal atomic.Int64 // cached by nodeCount
	nodeCountAt  atomic.Int64 // unix nanos of the last count

	bootstrapped bool // bootstrap-expect done (or not needed); leadership loop only
	started      bool
	stopOnce     sync.Once
	stopErr      error
}

// New checks cfg and prepares a server; nothing listens until Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("server", cfg.NodeName),
		broker:   NewEvalBroker(cfg.EvalTimeout),
		planning: &planGate{},
		usage:    placement.NewUsageCache(0),
		blocked:  newBlockedEvals(),
		hb:       newHeartbeatTracker(cfg.HeartbeatTTL),
	}
	s.fwd = &http.Client{Timeout: 6 * time.Minute, Transport: peerTransport(cfg.TLS, tlsutil.RoleServer)}
	s.agentTransport = peerTransport(cfg.TLS, tlsutil.RoleAgent)
	s.agentHTTP = &http.Client{Timeout: 6 * time.Minute, Transport: s.agentTransport}
	s.metrics = newMetrics(s)
	s.broker.SetCost(s.evalCost)
	s.broker.waited = func(d time.Duration) { s.metrics.evalWait.Observe(d.Seconds()) }
	return s, nil
}

// evalCost estimates an evaluation's work for the broker's queue order:
// the number of allocations its job asks for (one per group of a system
// job, whose count is per node).
func (s *Server) evalCost(e *api.Evaluation) int {
	if s.raft == nil {
		return 0
	}
	job, err := s.raft.State().JobByID(nil, e.JobID)
	if err != nil {
		return 0
	}
	return jobCost(job)
}

// Start opens Raft, joins the gossip pool and serves the HTTP API. It
// returns once everything listens; leadership and bootstrap happen in the
// background. ctx bounds only the start itself.
func (s *Server) Start(ctx context.Context) error {
	if s.started {
		return fmt.Errorf("%w: server already started", ErrBadConfig)
	}
	s.started = true
	startPprof(s.log)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	cfg := s.cfg
	dir := filepath.Join(cfg.DataDir, "server")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("scheduler: create data directory %s: %w", dir, err)
	}
	fail := func(err error) error {
		_ = s.Shutdown()
		return err
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.HTTPPort)))
	if err != nil {
		return fail(fmt.Errorf("scheduler: listen for HTTP on %s:%d: %w (is another server running? choose another --http-port)", cfg.BindAddr, cfg.HTTPPort, err))
	}
	if cfg.TLS != nil {
		// Servers forward to each other and agents register here, so
		// all three roles may call the API; ACLs decide what each may do.
		ln = tls.NewListener(ln, cfg.TLS.ServerConfig(tlsutil.RoleServer, tlsutil.RoleAgent, tlsutil.RoleCLI))
	} else if !net.ParseIP(cfg.BindAddr).IsLoopback() {
		s.log.Warn("INSECURE: serving the HTTP API, Raft and gossip without TLS on a non-loopback address; anyone who reaches it controls the cluster",
			"bind", cfg.BindAddr)
	}
	s.httpLn = ln

	raftBind := net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.RaftPort))
	raftAdv := net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(cfg.RaftPort))
	ccfg := consensus.Config{
		NodeID:        cfg.NodeName,
		DataDir:       dir,
		BindAddr:      raftBind,
		AdvertiseAddr: raftAdv,
		Bootstrap:     cfg.BootstrapExpect == 1,
		Logger:        s.log,
	}
	if cfg.TLS != nil {
		ccfg.ServerTLS = cfg.TLS.ServerConfig(tlsutil.RoleServer)
		ccfg.ClientTLS = cfg.TLS.ClientConfig(tlsutil.RoleServer)
	}
	if cfg.Dev {
		// Alone on loopback there is no peer to lose contact with; only
		// the wait before the first election matters.
		ccfg.HeartbeatTimeout, ccfg.ElectionTimeout = 100*time.Millisecond, 100*time.Millisecond
		ccfg.LeaderLeaseTimeout = 100 * time.Millisecond
	}
	rn, err := consensus.Open(ccfg)
	if err != nil {
		return fail(err)
	}
	s.raft = rn
	s.applier = newPlanApplier(
		func() planState { return s.raft.State().Snapshot() },
		func(req *consensus.PlanApplyRequest) (uint64, error) {
			return s.raft.Apply(consensus.PlanApplyRequestType, req, applyTimeout)
		}, s.log)
	s.applier.observe = s.metrics.observePlan

	s.echo = s.routes()
	s.httpSrv = &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP server stopped", "err", err)
		}
	}()

	httpAdv := net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	keyring, fromFile, err := gossip.LoadKeyring(filepath.Join(dir, "keyring.json"), cfg.Encrypt)
	if err != nil {
		return fail(err)
	}
	if fromFile && cfg.Encrypt != "" {
		s.log.Info("gossip keyring loaded from the data directory; --encrypt is used only for a new keyring",
			"keyring", filepath.Join(dir, "keyring.json"))
	}
	pool, err := gossip.Start(gossip.Config{
		Name:          cfg.NodeName,
		BindAddr:      cfg.BindAddr,
		Port:          cfg.GossipPort,
		AdvertiseAddr: advertiseIfNeeded(cfg),
		Join:          cfg.Join,
		Meta: gossip.Meta{
			Role:       gossip.RoleServer,
			HTTPAddr:   httpAdv,
			RaftAddr:   rn.Addr(),
			Datacenter: cfg.Datacenter,
			ServerID:   cfg.NodeName,
		},
		Logger:  s.log.With("component", "gossip"),
		Keyring: keyring,
	})
	if err != nil {
		return fail(err)
	}
	s.pool = pool

	s.wg.Add(2)
	go s.monitorLeadership()
	go s.watchMembers()
	s.log.Info("server started", "http", s.HTTPAddr(), "raft", s.RaftAddr(), "gossip", s.GossipAddr(),
		"bootstrap_expect", cfg.BootstrapExpect, "datacenter", cfg.Datacenter)
	return nil
}

// peerTransport is the HTTP transport for calls to peers of role. With TLS
// it presents this server's certificate, accepts only a peer certificate
// of that role, and upgrades http:// URLs to https://, so code that builds
// URLs from advertised host:port addresses works either way.
func peerTransport(src *tlsutil.Source, role tlsutil.Role) http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if src == nil {
		return tr
	}
	tr.TLSClientConfig = src.ClientConfig(role)
	return httpsUpgrade{tr}
}

// httpsUpgrade sends http:// requests as https://.
type httpsUpgrade struct{ base http.RoundTripper }

func (u httpsUpgrade) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		req = req.Clone(req.Context())
		req.URL.Scheme = "https"
	}
	return u.base.RoundTrip(req)
}

// AgentTransport is the transport for calls to agents (the agent proxy).
func (s *Server) AgentTransport() http.RoundTripper { return s.agentTransport }

func advertiseIfNeeded(cfg Config) string {
	if cfg.AdvertiseAddr != cfg.BindAddr {
		return cfg.AdvertiseAddr
	}
	return ""
}

// HTTPAddr is the host:port the HTTP API listens on ("" before Start).
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// RaftAddr is the Raft address this server advertises.
func (s *Server) RaftAddr() string {
	if s.raft == nil {
		return ""
	}
	return s.raft.Addr()
}

// GossipAddr is the gossip host:port, for other members' --join.
func (s *Server) GossipAddr() string {
	if s.pool == nil {
		return ""
	}
	return s.pool.Addr()
}

// IsLeader reports whether this server leads the cluster now.
func (s *Server) IsLeader() bool { return s.raft != nil && s.raft.IsLeader() }

// Raft exposes the server's Raft node (tests, berth dev).
func (s *Server) Raft() *consensus.Node { return s.raft }

// Shutdown stops the HTTP API, the leader loops, gossip and Raft. It is safe to call more than once.
func (s *Server) Shutdown() error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.cancel != nil {
			s.cancel()
		}
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := s.httpSrv.Shutdown(ctx); err != nil {
				_ = s.httpSrv.Close()
			}
			cancel()
		} else if s.httpLn != nil {
			_ = s.httpLn.Close()
		}
		s.revokeLeadership()
		// A server does not leave the pool gracefully: the others see it
		// failed, and it stays a Raft voter until an operator removes it
		// (remove-peer). That keeps a restart of the whole cluster safe.
		if s.pool != nil {
			if err := s.pool.Shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
		if s.raft != nil {
			if err := s.raft.Shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
		s.wg.Wait()
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// Run runs a server until ctx is done, then shuts it down. It is what
// `berth server` calls.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Shutdown()
}

// keyringTimeout bounds a keyring operation's wait for every member.
const keyringTimeout = 15 * time.Second

// keyringRoutes registers the gossip keyring routes (api/keyring.go).
func (s *Server) keyringRoutes(v *echo.Group) {
	v.GET("/operator/keyring", func(c echo.Context) error { return s.keyringOp(c, gossip.KeyList, "") })
	v.POST("/operator/keyring/:op", func(c echo.Context) error {
		var req api.KeyringRequest
		if err := json.NewDecoder(io.LimitReader(c.Request().Body, 4096)).Decode(&req); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "keyring request: want {\"key\": \"BASE64\"}: "+err.Error())
		}
		op := c.Param("op")
		if op == gossip.KeyList {
			return echo.NewHTTPError(http.StatusBadRequest, "list is GET /v1/operator/keyring")
		}
		return s.keyringOp(c, op, req.Key)
	})
}

func (s *Server) keyringOp(c echo.Context, op, key string) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), keyringTimeout)
	defer cancel()
	resp, err := s.pool.KeyringOp(ctx, op, key)
	switch {
	case errors.Is(err, gossip.ErrBadOp), errors.Is(err, gossip.ErrBadKey), errors.Is(err, gossip.ErrNoEncryption):
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	case errors.Is(err, gossip.ErrKeyringOp):
		msg := err.Error()
		for _, name := range slices.Sorted(maps.Keys(resp.Errors)) {
			msg += "; " + name + ": " + resp.Errors[name]
		}
		return echo.NewHTTPError(http.StatusInternalServerError, msg)
	case err != nil:
		return err
	}
	s.log.Info("gossip keyring operation done", "op", op, "members", resp.Members)
	return c.JSON(http.StatusOK, resp)
}
