package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/gossip"
)

// newOperatorGossipCmd is `berth operator gossip keyring ...`.
func newOperatorGossipCmd() *cobra.Command {
	g := &cobra.Command{Use: "gossip", Short: "Manage gossip encryption"}
	kr := &cobra.Command{
		Use:   "keyring",
		Short: "Rotate the gossip encryption keys of every member, with no downtime",
		Long: `Gossip between servers and agents is encrypted with a keyring (start every
member with --encrypt KEY). Any server fans each operation out to every
member, servers and agents alike, and reports who answered. To rotate:

  berth operator gossip keyring generate            # prints NEW
  berth operator gossip keyring install NEW         # every member can read NEW
  berth operator gossip keyring use NEW             # every member writes with NEW
  berth operator gossip keyring remove OLD          # OLD is gone everywhere
  berth operator gossip keyring list

Each member keeps its keyring in its data directory, so a restart keeps
the rotated keys.`,
	}
	op := func(name, short string) *cobra.Command {
		return &cobra.Command{
			Use:   name + " KEY",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := gossip.ParseKey(args[0]); err != nil {
					return err
				}
				c, err := apiClient(cmd)
				if err != nil {
					return err
				}
				resp, err := c.Operator().KeyringOp(name, args[0])
				if err != nil {
					return fmt.Errorf("keyring %s: %w", name, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "keyring %s: done on %d of %d members\n", name, resp.Answered, resp.Members)
				return nil
			},
		}
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys installed on the members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.Operator().KeyringList()
			if err != nil {
				return fmt.Errorf("keyring list: %w", err)
			}
			t := newTable(cmd.OutOrStdout(), "KEY", "MEMBERS", "PRIMARY")
			for _, k := range slices.Sorted(maps.Keys(resp.Keys)) {
				t.Row(k, fmt.Sprintf("%d/%d", resp.Keys[k], resp.Members), fmt.Sprint(resp.PrimaryKeys[k]))
			}
			return t.Flush()
		},
	}
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a new random 32-byte key for --encrypt or install",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := gossip.GenerateKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k)
			return nil
		},
	}
	kr.AddCommand(op(gossip.KeyInstall, "Install a key on every member (they can then read it)"),
		op(gossip.KeyUse, "Make an installed key the one every member encrypts with"),
		op(gossip.KeyRemove, "Remove a key that is no longer primary from every member"),
		list, gen)
	g.AddCommand(kr)
	return g
}
