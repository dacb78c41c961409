package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/scheduler"
)

func init() { addCommand(newSecretCmd) }

func newSecretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Manage cluster secrets, mounted into tasks as files",
		Long: `A secret is stored by the servers encrypted (AES-256-GCM) under the key
in --secrets-key-file (berth dev makes one in its data directory). A task
mounts it with

  secrets: [{name: db-password}]                 # at /run/secrets/db-password
  secrets: [{name: tls-key, target: /etc/tls/key}]

as a read-only file (mode 0400) on a tmpfs. Its value is never shown by
inspect, job status or logs. With ACLs on, managing secrets needs a
management token, and a job that mounts them the secrets right.`,
	}
	addAddressFlag(cmd)
	cmd.PersistentFlags().String("token", "", "ACL token secret (default $BERTH_TOKEN, else the one stored by berth login --cluster)")
	cmd.AddCommand(newSecretCreateCmd(), newSecretListCmd(), newSecretRemoveCmd(), newSecretKeygenCmd())
	return cmd
}

func newSecretCreateCmd() *cobra.Command {
	var fromFile string
	cmd := &cobra.Command{
		Use:   "create NAME [--from-file FILE]",
		Short: "Create or replace a secret; its value comes from stdin or --from-file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromFile == "" {
				fromFile = "-"
			}
			value, err := readInput(cmd, fromFile, 64<<10)
			if err != nil {
				return fmt.Errorf("secret create: %w", err)
			}
			if len(value) == 0 {
				return errors.New("secret create: the value is empty (pipe it in, or give --from-file)")
			}
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			if _, err := c.Secrets().Create(args[0], value); err != nil {
				return fmt.Errorf("secret create: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the value from FILE (- or empty: stdin)")
	return cmd
}

func newSecretListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the secrets (names only)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			secs, err := c.Secrets().List()
			if err != nil {
				return fmt.Errorf("secret ls: %w", err)
			}
			return render(cmd, secs, func(w io.Writer) error {
				t := newTable(w, "NAME", "CREATED", "INDEX")
				for _, s := range secs {
					created := ""
					if s.CreateTime != 0 {
						created = time.Unix(0, s.CreateTime).UTC().Format(time.RFC3339)
					}
					t.Row(s.Name, created, s.ModifyIndex)
				}
				return t.Flush()
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func newSecretRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove secrets (running tasks keep their mounted copy)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				if err := c.Secrets().Delete(name); err != nil {
					errs = append(errs, fmt.Errorf("secret rm %s: %w", name, err))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return errors.Join(errs...)
		},
	}
}

func newSecretKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen FILE",
		Short: "Write a new secrets key (mode 0600) for every server's --secrets-key-file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := scheduler.GenerateSecretsKey(args[0]); err != nil {
				return fmt.Errorf("secret keygen: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote a new secrets key to %s; copy it to every server and start them with --secrets-key-file %s\n", args[0], args[0])
			return nil
		},
	}
}
