package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() {
	addCommand(newOperatorCmd)
}

func newOperatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Cluster operations for administrators",
	}
	addAddressFlag(cmd)
	raft := &cobra.Command{
		Use:   "raft",
		Short: "Inspect and change the servers' Raft configuration",
	}
	raft.AddCommand(newRaftListPeersCmd(), newRaftRemovePeerCmd())
	cmd.AddCommand(raft, newOperatorGossipCmd(), newOperatorSchedulerCmd())
	return cmd
}

func newRaftListPeersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list-peers",
		Short: "List the servers in the Raft configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			peers, err := c.Operator().RaftPeers()
			if err != nil {
				return fmt.Errorf("list raft peers: %w", err)
			}
			if peers == nil {
				peers = []api.RaftPeer{}
			}
			return render(cmd, peers, func(w io.Writer) error {
				t := newTable(w, "ID", "ADDRESS", "STATE", "VOTER")
				for _, p := range peers {
					state := "follower"
					if p.Leader {
						state = "leader"
					}
					t.Row(p.ID, p.Address, state, p.Voter)
				}
				return t.Flush()
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func newRaftRemovePeerCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove-peer ID",
		Short: "Remove a server (by Raft ID) from the Raft configuration",
		Long: `Remove a dead server from the Raft configuration so that the rest keep a
quorum. The ID is the first column of 'berth operator raft list-peers'.

A server that is still running (alive in gossip) is refused: the leader
adds every live server back to the configuration. Stop it first, or pass
--force: the server is then kept out until it stops, and joins again when
it is next started.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			resp := &api.WriteResponse{}
			if force {
				_, err = c.Do(http.MethodDelete, "/v1/operator/raft/peers", url.Values{"id": {args[0]}, "force": {"true"}}, nil, resp)
			} else {
				resp, err = c.Operator().RemoveRaftPeer(args[0])
			}
			if err != nil {
				return fmt.Errorf("remove raft peer %q: %w", args[0], err)
			}
			return render(cmd, resp, func(w io.Writer) error {
				fmt.Fprintf(w, "Removed peer %q from the Raft configuration (index %d)\n", args[0], resp.Index)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove the server even though it is running, and keep it out until it stops")
	addFormatFlag(cmd)
	return cmd
}

// newServerMembersCmd is `berth server members`, registered under the
// server command.
func newServerMembersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the gossip pool: servers and agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			members, err := c.Members()
			if err != nil {
				return fmt.Errorf("list members: %w", err)
			}
			if members == nil {
				members = []api.Member{}
			}
			return render(cmd, members, func(w io.Writer) error {
				t := newTable(w, "NAME", "ADDRESS", "ROLE", "STATUS", "DC", "HTTP", "LEADER")
				for _, m := range members {
					leader := ""
					if m.Leader {
						leader = "true"
					}
					t.Row(m.Name, m.Addr, m.Role, m.Status, m.Datacenter, m.HTTPAddr, leader)
				}
				return t.Flush()
			})
		},
	}
	addAddressFlag(cmd)
	addFormatFlag(cmd)
	return cmd
}
