package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/berth-dev/berth/internal/tlsutil"
	"github.com/berth-dev/berth/scheduler"
)

func init() {
	addCommand(newServerCmd)
}

// serverFlags are the flags of `berth server`; a --config file may set any
// of them (flags given on the command line win).
type serverFlags struct {
	dataDir         string
	bind            string
	advertise       string
	workers         int
	httpPort        int
	raftPort        int
	gossipPort      int
	join            []string
	bootstrapExpect int
	nodeName        string
	datacenter      string
	config          string
	heartbeatTTL    time.Duration
	preemption      bool
	logLevel        string
	security        securityFlags
	secretsKeyFile  string
	auditLog        string
}

func defaultDataDir() string {
	if d := os.Getenv("BERTH_DATA_DIR"); d != "" {
		return d
	}
	return "/var/lib/berth"
}

func newServerCmd() *cobra.Command { return newServerCmdWith(&serverFlags{}) }

// newServerCmdWith builds `berth server` with its flags bound to f.
func newServerCmdWith(f *serverFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a server: the Raft-replicated control plane and scheduler",
		Long: `Run a berth server. One server is a complete control plane; three or five
tolerate the loss of one or two. Start each with --bootstrap-expect N and
--join pointing at the gossip address of any other server.`,
		Example: `  berth server --data-dir /var/lib/berth --bootstrap-expect 3 --join 10.0.0.1:9472`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.config != "" {
				if err := applyConfigFile(cmd.Flags(), f.config); err != nil {
					return err
				}
			}
			return runServer(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "directory for the server's state (server/raft/ lives here); $BERTH_DATA_DIR")
	fl.StringVar(&f.bind, "bind", "0.0.0.0", "IP address to listen on")
	fl.StringVar(&f.advertise, "advertise", "", "IP address other servers and agents reach this one on (default: --bind, or this host's first non-loopback IPv4 when --bind is 0.0.0.0)")
	fl.IntVar(&f.workers, "workers", 0, "scheduling workers on the leader (0: the server's default)")
	fl.IntVar(&f.httpPort, "http-port", 9470, "HTTP API port")
	fl.IntVar(&f.raftPort, "raft-port", 9471, "Raft port")
	fl.IntVar(&f.gossipPort, "gossip-port", 9472, "gossip (memberlist) port")
	fl.StringArrayVar(&f.join, "join", nil, "gossip address HOST:PORT of another server or agent (repeatable)")
	fl.IntVar(&f.bootstrapExpect, "bootstrap-expect", 1, "number of servers to wait for before electing the first leader (1, 3 or 5); 0 joins an existing cluster and never bootstraps")
	fl.StringVar(&f.nodeName, "node-name", "", "this server's name in the cluster (default: the hostname)")
	fl.StringVar(&f.datacenter, "datacenter", "dc1", "datacenter name")
	fl.StringVar(&f.config, "config", "", "YAML file that sets any of these flags (keys are the flag names)")
	fl.DurationVar(&f.heartbeatTTL, "heartbeat-ttl", 0, "how long a node may go without a heartbeat before it is marked down (0: the server's default)")
	fl.BoolVar(&f.preemption, "preemption", false, "let higher-priority jobs evict lower-priority allocations when nothing else fits")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&f.secretsKeyFile, "secrets-key-file", "", "AES-256 key that seals secrets in Raft, the same file on every server (make one with `berth secret keygen FILE`; default DATA_DIR/server/secrets.key)")
	fl.StringVar(&f.auditLog, "audit-log", "", "JSON-lines audit log of every write and every logs/exec/attach call (default DATA_DIR/server/audit.log)")
	f.security.register(cmd, tlsutil.RoleServer)
	cmd.AddCommand(newServerMembersCmd())
	return cmd
}

// applyConfigFile sets flags from a YAML file whose keys are flag names
// (data-dir or data_dir). Flags already given on the command line win.
// Errors name the role from the flag set's name (cobra names it after the
// command: server, agent).
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	role := fs.Name()
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s config: %w", role, err)
	}
	var m map[string]any
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return fmt.Errorf("%s config %s: %w", role, path, err)
	}
	for key, val := range m {
		name := strings.ReplaceAll(key, "_", "-")
		fl := fs.Lookup(name)
		if fl == nil || name == "config" {
			return fmt.Errorf("%s config %s: unknown key %q; keys are the flags of `berth %s`", role, path, key, role)
		}
		if fl.Changed {
			continue
		}
		var vals []any
		if list, ok := val.([]any); ok {
			vals = list
		} else {
			vals = []any{val}
		}
		for _, v := range vals {
			s := fmt.Sprint(v)
			if fv, ok := v.(float64); ok && fv == float64(int64(fv)) {
				s = strconv.FormatInt(int64(fv), 10)
			}
			if err := fs.Set(name, s); err != nil {
				return fmt.Errorf("%s config %s: %s: %w", role, path, key, err)
			}
		}
	}
	return nil
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

func runServer(cmd *cobra.Command, f *serverFlags) error {
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return err
	}
	if net.ParseIP(f.bind) == nil {
		return fmt.Errorf("invalid --bind %q: want an IP address such as 0.0.0.0 or 10.0.0.5", f.bind)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--http-port", f.httpPort}, {"--raft-port", f.raftPort}, {"--gossip-port", f.gossipPort}} {
		if p.v <= 0 || p.v > 65535 {
			return fmt.Errorf("invalid %s %d: want 1-65535", p.name, p.v)
		}
	}
	advertise := f.advertise
	if advertise != "" && net.ParseIP(advertise) == nil {
		return fmt.Errorf("invalid --advertise %q: want an IP address", advertise)
	}
	if advertise == "" && net.ParseIP(f.bind).IsUnspecified() {
		advertise = firstHostIP()
	}
	if f.bootstrapExpect < 0 {
		return fmt.Errorf("invalid --bootstrap-expect %d: want 1, 3 or 5 for a new cluster, or 0 to join an existing one", f.bootstrapExpect)
	}
	if f.heartbeatTTL < 0 {
		return fmt.Errorf("invalid --heartbeat-ttl %s: must not be negative", f.heartbeatTTL)
	}
	name := f.nodeName
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return fmt.Errorf("no --node-name and the hostname is unknown: %w", err)
		}
	}
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	src, err := f.security.source(tlsutil.RoleServer, f.bind, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reloadTLS(ctx, src, logger)

	cfg := scheduler.Config{
		NodeName:          name,
		DataDir:           f.dataDir,
		BindAddr:          f.bind,
		AdvertiseAddr:     advertise,
		Workers:           f.workers,
		HTTPPort:          f.httpPort,
		RaftPort:          f.raftPort,
		GossipPort:        f.gossipPort,
		Join:              f.join,
		BootstrapExpect:   f.bootstrapExpect,
		Datacenter:        f.datacenter,
		Logger:            logger,
		HeartbeatTTL:      f.heartbeatTTL,
		PreemptionEnabled: f.preemption,
		TLS:               src,
		Insecure:          f.security.insecure,
		Encrypt:           f.security.encrypt,
		SecretsKeyFile:    f.secretsKeyFile,
		AuditLog:          f.auditLog,
	}
	adv := advertise
	if adv == "" {
		adv = f.bind
	}
	scheme := "HTTP"
	if src != nil {
		scheme = "HTTPS"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "berth server %q: "+scheme+" %s, Raft %s, gossip %s (reachable at %s), data %s\n", name,
		net.JoinHostPort(f.bind, strconv.Itoa(f.httpPort)), net.JoinHostPort(f.bind, strconv.Itoa(f.raftPort)),
		net.JoinHostPort(f.bind, strconv.Itoa(f.gossipPort)), adv, f.dataDir)
	err = scheduler.Run(ctx, cfg)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("server: %w", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), "berth server: stopped")
	return nil
}

// firstHostIP returns this host's first non-loopback IPv4 address, for
// servers bound to 0.0.0.0 without --advertise; 127.0.0.1 when it has none.
func firstHostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
