package main

// `berth network …`: networks are node-local, like volumes. --node picks
// the node (implied with a single node); without it, create goes to every
// ready node (so a container finds its network wherever it is placed), and
// ls, inspect, rm and prune cover every ready node.

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() { addCommand(newNetworkCmd) }

func newNetworkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage networks on the nodes",
	}
	cmd.AddCommand(newNetworkCreateCmd(), newNetworkLsCmd(), newNetworkInspectCmd(), newNetworkRmCmd(), newNetworkPruneCmd())
	addAddressFlag(cmd)
	return cmd
}

func newNetworkCreateCmd() *cobra.Command {
	var subnet string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NAME",
		Short: "Create a network whose containers reach each other by name (on --node, else on every ready node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !volNameRe.MatchString(name) || len(name) > 64 || name == "bridge" || name == "host" || name == "none" {
				return fmt.Errorf("invalid network name %q: use [a-zA-Z0-9][a-zA-Z0-9_.-], up to 64 characters, not bridge, host or none", name)
			}
			if subnet != "" {
				p, err := netip.ParsePrefix(subnet)
				if err != nil || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 30 {
					return fmt.Errorf("invalid --subnet %q: want an IPv4 CIDR between /8 and /30, such as 10.210.7.0/24", subnet)
				}
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			return forNodes(cmd, ts, func(t nodeTarget) (string, error) {
				n, err := t.Agent.CreateNetwork(api.NetworkCreateRequest{Name: name, Subnet: subnet})
				if err != nil {
					return "", err
				}
				return n.Name, nil
			})
		},
	}
	cmd.Flags().StringVar(&subnet, "subnet", "", "IPv4 subnet in CIDR form (default: the next free /24 of 10.210.0.0/16)")
	addNodeFlag(cmd, "node to create it on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newNetworkLsCmd() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks (of --node, else of every ready node)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			rows, failed := gatherFromNodes(cmd, ts, func(t nodeTarget) ([]api.Network, error) { return t.Agent.Networks() },
				func(x *api.Network) *string { return &x.Node })
			sort.SliceStable(rows, func(i, j int) bool {
				if rows[i].Builtin != rows[j].Builtin {
					return rows[i].Builtin
				}
				if rows[i].Name != rows[j].Name {
					return rows[i].Name < rows[j].Name
				}
				return rows[i].Node < rows[j].Node
			})
			if quiet {
				seen := map[string]bool{}
				for _, n := range rows {
					if !seen[n.Name] {
						seen[n.Name] = true
						fmt.Fprintln(cmd.OutOrStdout(), n.Name)
					}
				}
			} else if err := render(cmd, rows, func(w io.Writer) error {
				hdr := []string{"NAME", "DRIVER", "SUBNET", "GATEWAY", "CONTAINERS"}
				if len(ts) > 1 {
					hdr = append(hdr, "NODE")
				}
				t := newTable(w, hdr...)
				for _, n := range rows {
					cols := []any{n.Name, n.Driver, n.Subnet, n.Gateway, len(n.Containers)}
					if len(ts) > 1 {
						cols = append(cols, n.Node)
					}
					t.Row(cols...)
				}
				return t.Flush()
			}); err != nil {
				return err
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show network names")
	addFormatFlag(cmd)
	addNodeFlag(cmd, "node to list (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newNetworkInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect NETWORK...",
		Short: "Show the detail of networks, as JSON (one entry per node that has it)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			return inspectOnNodes(cmd, ts, args, "network", func(t nodeTarget, name string) (*api.Network, error) {
				n, err := t.Agent.Network(name)
				if err == nil && n.Node == "" {
					n.Node = t.name()
				}
				return n, err
			})
		},
	}
	addNodeFlag(cmd, "node to look on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newNetworkRmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove networks no container uses (from --node, else from every ready node that has them)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			failed := false
			for _, name := range args {
				removed := 0
				var errs []error
				for _, t := range ts {
					if err := t.Agent.RemoveNetwork(name); err != nil {
						if api.IsNotFound(err) && len(ts) > 1 {
							continue
						}
						errs = append(errs, nodeErr(ts, t, err))
						continue
					}
					removed++
				}
				if removed == 0 && len(errs) == 0 {
					errs = append(errs, fmt.Errorf("no such network: %s", name))
				}
				if len(errs) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), name)
				}
				for _, e := range errs {
					failed = true
					fmt.Fprintln(cmd.ErrOrStderr(), "Error:", e)
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	addNodeFlag(cmd, "node to remove from (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newNetworkPruneCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove every user network without containers (on --node, else on every ready node)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force && !confirm(cmd, "WARNING! This will remove all custom networks not used by at least one container.") {
				return nil
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			return forNodes(cmd, ts, func(t nodeTarget) (string, error) {
				r, err := t.Agent.PruneNetworks()
				if err != nil {
					return "", err
				}
				if len(r.Networks) == 0 {
					return "", nil
				}
				return "Deleted Networks:\n" + strings.Join(r.Networks, "\n"), nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	addNodeFlag(cmd, "node to prune (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}
