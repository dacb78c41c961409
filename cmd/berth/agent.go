package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/agent"
	"github.com/berth-dev/berth/internal/tlsutil"
)

func init() { addCommand(newAgentCmd) }

// agentFlags are the flags that `berth server`, `berth agent` and `berth dev`
// share (DESIGN.md, Defaults).
type agentFlags struct {
	dataDir    string
	bind       string
	httpPort   int
	gossipPort int
	join       []string
	servers    []string
	nodeName   string
	datacenter string
	labels     []string
	insecure   []string
	configFile string
	security   securityFlags // berth agent only; berth dev stays on loopback
	token      string        // berth agent only: the node ACL token
}

func newAgentCmd() *cobra.Command { return newAgentCmdWith(&agentFlags{}) }

// newAgentCmdWith builds `berth agent` with its flags bound to f.
func newAgentCmdWith(f *agentFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the worker role: register this host and run the containers placed on it",
		Long: `Run a berth agent on this host. It joins the gossip pool (--join), finds
the servers through it (or uses --servers), registers this host as a node
with its CPU, memory and GPUs, and runs the containers the servers place here.

Stopping the agent leaves its containers running; the next start re-attaches
to them.`,
		Example: `  berth agent --join 10.0.0.1:9472 --label rack=r1
  berth agent --servers 10.0.0.1:9470 --data-dir /srv/berth
  berth agent --config /etc/berth/agent.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.configFile != "" {
				if err := applyConfigFile(cmd.Flags(), f.configFile); err != nil {
					return err
				}
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			cfg.Gossip = &agent.GossipConfig{BindAddr: f.bind, Port: f.gossipPort, Join: f.join}
			if len(f.join) == 0 && len(f.servers) == 0 {
				return fmt.Errorf("give --join HOST:PORT (a gossip member) or --servers HOST:PORT; for one machine use 'berth dev'")
			}
			src, err := f.security.source(tlsutil.RoleAgent, f.bind, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg.TLS, cfg.Insecure, cfg.Encrypt = src, f.security.insecure, f.security.encrypt
			cfg.Token = f.token
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			reloadTLS(ctx, src, cfg.Logger)
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			if err := a.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "berth agent %s (node %s) listening on %s\n", cfg.NodeName, a.NodeID(), a.HTTPAddr())
			<-ctx.Done()
			return a.Shutdown()
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&f.httpPort, "http-port", 9473, "agent HTTP API port")
	cmd.Flags().IntVar(&f.gossipPort, "gossip-port", 9472, "gossip (memberlist) port")
	cmd.Flags().StringArrayVar(&f.join, "join", nil, "gossip address HOST:PORT of a server or agent to join (repeatable)")
	cmd.Flags().StringArrayVar(&f.servers, "servers", nil, "server HTTP address HOST:PORT to register with (repeatable)")
	cmd.Flags().StringVar(&f.configFile, "config", "", "YAML file that sets any of these flags (keys are the flag names; lists for repeatable flags)")
	cmd.Flags().StringVar(&f.token, "token", "", "ACL token with the node capability, once the cluster's ACLs are on (default $BERTH_TOKEN)")
	f.security.register(cmd, tlsutil.RoleAgent)
	return cmd
}

// register adds the flags every role shares; each command adds its ports.
func (f *agentFlags) register(cmd *cobra.Command) {
	dd := os.Getenv("BERTH_DATA_DIR")
	if dd == "" {
		dd = "/var/lib/berth"
	}
	cmd.Flags().StringVar(&f.dataDir, "data-dir", dd, "where images, containers, volumes and state live (BERTH_DATA_DIR)")
	cmd.Flags().StringVar(&f.bind, "bind", "127.0.0.1", "IP address to listen on")
	cmd.Flags().StringVar(&f.nodeName, "node-name", "", "node name (default: the host name)")
	cmd.Flags().StringVar(&f.datacenter, "datacenter", "dc1", "datacenter of this node")
	cmd.Flags().StringArrayVar(&f.labels, "label", nil, "node label k=v, matched by ${node.label.k} (repeatable)")
	cmd.Flags().StringArrayVar(&f.insecure, "insecure-registry", nil, "registry HOST:PORT to pull from over plain HTTP or unverified TLS (repeatable; also $BERTH_INSECURE_REGISTRIES)")
}

func (f *agentFlags) config() (agent.Config, error) {
	labels := map[string]string{}
	for _, l := range f.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return agent.Config{}, fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		labels[k] = v
	}
	if f.httpPort < 0 || f.httpPort > 65535 {
		return agent.Config{}, fmt.Errorf("--http-port %d: want 0..65535", f.httpPort)
	}
	port := f.httpPort
	if port == 0 {
		port = -1 // pick a free one
	}
	return agent.Config{
		NodeName: f.nodeName, DataDir: f.dataDir, Datacenter: f.datacenter, BindAddr: f.bind,
		HTTPPort: port, Servers: f.servers, Labels: labels, Logger: roleLogger(),
		InsecureRegistries: f.insecure,
	}, nil
}
