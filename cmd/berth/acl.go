package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/berth-dev/berth/api"
)

func init() { addCommand(newACLCmd) }

// aclClient is apiClient with the command's --token, when given, in place
// of BERTH_TOKEN and the stored login.
func aclClient(cmd *cobra.Command) (*api.Client, error) {
	c, err := apiClient(cmd)
	if err != nil {
		return nil, err
	}
	if f := cmd.Flags().Lookup("token"); f != nil && f.Changed {
		c.SetToken(f.Value.String())
	}
	return c, nil
}

func newACLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Manage ACL policies and tokens",
		Long: `ACLs are off in berth dev, and on a cluster until "berth acl bootstrap",
which prints the first management token once. Then every request needs a
token: in BERTH_TOKEN, stored with "berth login --cluster", or --token.

A policy grants capabilities on jobs, selected by namespace ("default" or
"*": every job) or by job name prefix:

  rules:
    - job_prefix: web-
      capabilities: [read, submit, logs]
    - namespace: "*"
      capabilities: [read]

Capabilities: read, submit, logs, exec, attach (separate rights), privileged
(submit privileged tasks), secrets (tasks may mount cluster secrets), node
(agents). A management token may do everything.`,
	}
	addAddressFlag(cmd)
	cmd.PersistentFlags().String("token", "", "ACL token secret (default $"+api.EnvToken+", else the one stored by berth login --cluster)")
	policy := &cobra.Command{Use: "policy", Short: "Manage ACL policies"}
	policy.AddCommand(newACLPolicyApplyCmd(), newACLPolicyListCmd(), newACLPolicyInfoCmd(), newACLPolicyDeleteCmd())
	token := &cobra.Command{Use: "token", Short: "Manage ACL tokens"}
	token.AddCommand(newACLTokenCreateCmd(), newACLTokenListCmd(), newACLTokenInfoCmd(), newACLTokenDeleteCmd())
	cmd.AddCommand(newACLBootstrapCmd(), policy, token)
	return cmd
}

func newACLBootstrapCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Turn ACLs on and print the management token (once per cluster; keep its secret safe)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			tk, err := c.ACL().Bootstrap()
			if err != nil {
				return fmt.Errorf("acl bootstrap: %w", err)
			}
			return printToken(cmd, tk)
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func printToken(cmd *cobra.Command, tk *api.ACLToken) error {
	return render(cmd, tk, func(w io.Writer) error {
		pairs := [][2]string{
			{"Accessor ID", tk.AccessorID},
		}
		if tk.SecretID != "" {
			pairs = append(pairs, [2]string{"Secret ID", tk.SecretID})
		}
		pairs = append(pairs,
			[2]string{"Name", tk.Name},
			[2]string{"Type", tk.Type},
			[2]string{"Policies", strings.Join(tk.Policies, ", ")},
		)
		if tk.CreateTime != 0 {
			pairs = append(pairs, [2]string{"Created", time.Unix(0, tk.CreateTime).UTC().Format(time.RFC3339)})
		}
		if err := writeKV(w, pairs...); err != nil {
			return err
		}
		if tk.SecretID != "" {
			_, err := fmt.Fprintln(w, "\nThe secret is shown only this once: the servers keep only its hash.")
			return err
		}
		return nil
	})
}

// readInput reads a file, or stdin for "-".
func readInput(cmd *cobra.Command, path string, limit int64) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = cmd.InOrStdin()
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

func newACLPolicyApplyCmd() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "apply NAME FILE",
		Short: "Create or replace a policy from a YAML or JSON file (- for stdin) with its rules",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readInput(cmd, args[1], 1<<20)
			if err != nil {
				return fmt.Errorf("acl policy apply: %w", err)
			}
			var p api.ACLPolicy
			if err := yaml.UnmarshalStrict(b, &p); err != nil {
				return fmt.Errorf("acl policy apply: %s: %w (want rules: [{job_prefix: web-, capabilities: [read]}])", args[1], err)
			}
			p.Name = args[0]
			if description != "" {
				p.Description = description
			}
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			if err := c.ACL().ApplyPolicy(&p); err != nil {
				return fmt.Errorf("acl policy apply: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Policy %s applied\n", p.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "what the policy is for")
	return cmd
}

func newACLPolicyListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the policies",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			ps, err := c.ACL().Policies()
			if err != nil {
				return fmt.Errorf("acl policy list: %w", err)
			}
			return render(cmd, ps, func(w io.Writer) error {
				t := newTable(w, "NAME", "RULES", "DESCRIPTION")
				for _, p := range ps {
					t.Row(p.Name, len(p.Rules), p.Description)
				}
				return t.Flush()
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func newACLPolicyInfoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			p, err := c.ACL().Policy(args[0])
			if err != nil {
				return fmt.Errorf("acl policy info: %w", err)
			}
			return render(cmd, p, func(w io.Writer) error {
				b, err := yaml.Marshal(p)
				if err != nil {
					return err
				}
				_, err = w.Write(b)
				return err
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func newACLPolicyDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete policies (tokens that name them lose their rights)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				if err := c.ACL().DeletePolicy(name); err != nil {
					errs = append(errs, fmt.Errorf("acl policy delete %s: %w", name, err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Policy %s deleted\n", name)
			}
			return errors.Join(errs...)
		},
	}
}

func newACLTokenCreateCmd() *cobra.Command {
	var req api.ACLTokenCreateRequest
	cmd := &cobra.Command{
		Use:   "create --policy NAME [--policy NAME...] [--name NAME] | --type management",
		Short: "Create a token and print its secret (shown only this once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			tk, err := c.ACL().CreateToken(&req)
			if err != nil {
				return fmt.Errorf("acl token create: %w", err)
			}
			return printToken(cmd, tk)
		},
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "a name that says who or what uses the token")
	cmd.Flags().StringVar(&req.Type, "type", api.ACLTokenClient, "client (rights from its policies) or management (every right)")
	cmd.Flags().StringArrayVar(&req.Policies, "policy", nil, "policy the token has (repeatable)")
	addFormatFlag(cmd)
	return cmd
}

func newACLTokenListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the tokens (accessor IDs; secrets are never shown again)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			toks, err := c.ACL().Tokens()
			if err != nil {
				return fmt.Errorf("acl token list: %w", err)
			}
			return render(cmd, toks, func(w io.Writer) error {
				t := newTable(w, "ACCESSOR ID", "NAME", "TYPE", "POLICIES")
				for _, tk := range toks {
					t.Row(tk.AccessorID, tk.Name, tk.Type, strings.Join(tk.Policies, ","))
				}
				return t.Flush()
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func newACLTokenInfoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info ACCESSOR|self",
		Short: "Show a token (self: the one this command sends)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			tk, err := c.ACL().Token(args[0])
			if err != nil {
				return fmt.Errorf("acl token info: %w", err)
			}
			return printToken(cmd, tk)
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func newACLTokenDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ACCESSOR...",
		Aliases: []string{"rm", "revoke"},
		Short:   "Revoke tokens",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := aclClient(cmd)
			if err != nil {
				return err
			}
			var errs []error
			for _, id := range args {
				if err := c.ACL().DeleteToken(id); err != nil {
					errs = append(errs, fmt.Errorf("acl token delete %s: %w", id, err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Token %s deleted\n", id)
			}
			return errors.Join(errs...)
		},
	}
}

// clusterLogin is `berth login --cluster [SERVER]`: it checks token
// against the server and stores it, mode 0600, in berth's client config,
// where every later command finds it (BERTH_TOKEN still wins).
func clusterLogin(cmd *cobra.Command, server, token string) error {
	if server == "" {
		if f := cmd.Flags().Lookup("address"); f != nil {
			server = f.Value.String()
		}
	}
	if server == "" {
		server = os.Getenv(api.EnvAddr)
	}
	if server == "" {
		server = api.DefaultAddr
	}
	c, err := api.NewClient(server)
	if err != nil {
		return err
	}
	c.SetToken(token)
	tk, err := c.ACL().Token("self")
	switch {
	case api.IsNotFound(err):
		fmt.Fprintf(cmd.ErrOrStderr(), "WARNING! %s has ACLs off; storing the token for when they are on.\n", c.Address())
	case err != nil:
		return fmt.Errorf("login --cluster: the server refused the token: %w", err)
	}
	addr, err := api.SaveClusterToken(api.ClientConfigPath(), c.Address(), token)
	if err != nil {
		return fmt.Errorf("login --cluster: save the token: %w", err)
	}
	if tk != nil && tk.AccessorID != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s as token %s (%s)\n", addr, tk.AccessorID, tk.Name)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "Token stored for %s\n", addr)
	}
	return nil
}

// clusterLogout forgets the token stored for a server.
func clusterLogout(cmd *cobra.Command, server string) error {
	if server == "" {
		server = os.Getenv(api.EnvAddr)
	}
	if server == "" {
		server = api.DefaultAddr
	}
	addr, err := api.SaveClusterToken(api.ClientConfigPath(), server, "")
	if err != nil {
		return fmt.Errorf("logout --cluster: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Removed the token for %s\n", addr)
	return nil
}
