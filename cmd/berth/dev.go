package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/agent"
	"github.com/berth-dev/berth/scheduler"
)

func init() { addCommand(newDevCmd) }

func newDevCmd() *cobra.Command {
	var (
		f                              agentFlags
		serverPort, raftPort, gossipPt int
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system on this machine: a server and an agent in one process",
		Long: `Run a single-node berth on this machine: a server (single-node Raft) and
an agent in one process, bound to loopback, with nothing else to set up.

Then, in another terminal:
  berth image import rootfs.tar busybox
  berth run --rm busybox echo hello

Ctrl-C stops berth dev cleanly. Running containers keep running and are
re-attached on the next start, as with Docker's live-restore.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("berth dev runs containers and needs root (namespaces, mounts, cgroups); try: sudo berth dev")
			}
			acfg, err := f.config()
			if err != nil {
				return err
			}
			if ip := net.ParseIP(f.bind); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("berth dev listens on loopback only (--bind %s): it has no TLS and no access control; for other hosts run berth server and berth agent with certificates (berth tls --help)", f.bind)
			}
			if err := os.MkdirAll(f.dataDir, 0o711); err != nil {
				return fmt.Errorf("data dir %s: %w", f.dataDir, err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			start := time.Now()

			scfg := scheduler.DefaultConfig(f.dataDir)
			scfg.HTTPPort, scfg.RaftPort, scfg.GossipPort = serverPort, raftPort, gossipPt
			scfg.NodeName = acfg.NodeName
			scfg.Dev = true
			scfg.Logger = acfg.Logger.With("role", "server")
			srv, err := scheduler.New(scfg)
			if err != nil {
				return err
			}
			if err := srv.Start(ctx); err != nil {
				return err
			}
			acfg.Servers = []string{srv.HTTPAddr()}
			acfg.Logger = acfg.Logger.With("role", "agent")
			a, err := agent.New(acfg)
			if err != nil {
				_ = srv.Shutdown()
				return err
			}
			if err := a.Start(ctx); err != nil {
				_ = srv.Shutdown()
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "berth dev: server http://%s (raft %s, gossip %s)\n", srv.HTTPAddr(), srv.RaftAddr(), srv.GossipAddr())
			fmt.Fprintf(out, "berth dev: agent http://%s, node %s (%s)\n", a.HTTPAddr(), a.NodeName(), a.NodeID())
			fmt.Fprintf(out, "berth dev: data in %s; started in %s; Ctrl-C to stop (containers keep running)\n",
				f.dataDir, time.Since(start).Round(time.Millisecond))
			if os.Getenv("BERTH_ADDR") == "" && srv.HTTPAddr() != "127.0.0.1:9470" {
				fmt.Fprintf(out, "berth dev: export BERTH_ADDR=http://%s\n", srv.HTTPAddr())
			}
			<-ctx.Done()
			fmt.Fprintln(out, "berth dev: stopping (containers keep running)")
			aerr := a.Shutdown()
			serr := srv.Shutdown()
			if aerr != nil {
				return aerr
			}
			return serr
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&serverPort, "http-port", 9470, "server HTTP API port (the CLI's BERTH_ADDR)")
	cmd.Flags().IntVar(&f.httpPort, "agent-port", 9473, "agent HTTP API port")
	cmd.Flags().IntVar(&raftPort, "raft-port", 9471, "Raft port")
	cmd.Flags().IntVar(&gossipPt, "gossip-port", 9472, "gossip port")
	return cmd
}
