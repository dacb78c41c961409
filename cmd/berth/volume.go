package main

// `berth volume …`: named volumes live on one node each. --node picks the
// node (implied with a single node); without it, create goes to every ready
// node (so a container finds its volume wherever it is placed), and ls,
// inspect, rm and prune cover every ready node.

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() { addCommand(newVolumeCmd) }

func newVolumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Manage named volumes on the nodes",
	}
	cmd.AddCommand(newVolumeCreateCmd(), newVolumeLsCmd(), newVolumeInspectCmd(), newVolumeRmCmd(), newVolumePruneCmd())
	addAddressFlag(cmd)
	return cmd
}

func newVolumeCreateCmd() *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NAME",
		Short: "Create a volume (on --node, else on every ready node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !volNameRe.MatchString(name) || len(name) > 128 {
				return fmt.Errorf("invalid volume name %q: use [a-zA-Z0-9][a-zA-Z0-9_.-], up to 128 characters", name)
			}
			req := api.VolumeCreateRequest{Name: name}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if k == "" {
					return fmt.Errorf("invalid --label %q: want KEY=VALUE", l)
				}
				if req.Labels == nil {
					req.Labels = map[string]string{}
				}
				req.Labels[k] = v
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
				v, err := t.Agent.CreateVolume(req)
				if err != nil {
					return "", err
				}
				return v.Name, nil
			})
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "set a label on the volume (K=V)")
	addNodeFlag(cmd, "node to create it on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newVolumeLsCmd() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List volumes (of --node, else of every ready node)",
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
			rows, failed := gatherFromNodes(cmd, ts, func(t nodeTarget) ([]api.Volume, error) { return t.Agent.Volumes() },
				func(x *api.Volume) *string { return &x.Node })
			sort.SliceStable(rows, func(i, j int) bool {
				if rows[i].Name != rows[j].Name {
					return rows[i].Name < rows[j].Name
				}
				return rows[i].Node < rows[j].Node
			})
			if quiet {
				seen := map[string]bool{}
				for _, v := range rows {
					if !seen[v.Name] {
						seen[v.Name] = true
						fmt.Fprintln(cmd.OutOrStdout(), v.Name)
					}
				}
			} else if err := render(cmd, rows, func(w io.Writer) error {
				hdr := []string{"DRIVER", "VOLUME NAME"}
				if len(ts) > 1 {
					hdr = append(hdr, "NODE")
				}
				t := newTable(w, hdr...)
				for _, v := range rows {
					d := v.Driver
					if d == "" {
						d = "local"
					}
					cols := []any{d, v.Name}
					if len(ts) > 1 {
						cols = append(cols, v.Node)
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
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show volume names")
	addFormatFlag(cmd)
	addNodeFlag(cmd, "node to list (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newVolumeInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect VOLUME...",
		Short: "Show the detail of volumes, as JSON (one entry per node that has it)",
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
			return inspectOnNodes(cmd, ts, args, "volume", func(t nodeTarget, name string) (*api.Volume, error) {
				v, err := t.Agent.Volume(name)
				if err == nil && v.Node == "" {
					v.Node = t.name()
				}
				return v, err
			})
		},
	}
	addNodeFlag(cmd, "node to look on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newVolumeRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME...",
		Aliases: []string{"remove"},
		Short:   "Remove volumes (from --node, else from every ready node that has them)",
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
					if err := t.Agent.RemoveVolume(name, force); err != nil {
						if api.IsNotFound(err) && len(ts) > 1 {
							continue
						}
						errs = append(errs, nodeErr(ts, t, err))
						continue
					}
					removed++
				}
				if removed == 0 && len(errs) == 0 {
					errs = append(errs, fmt.Errorf("no such volume: %s", name))
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
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove the volume even if a container uses it")
	addNodeFlag(cmd, "node to remove from (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

// confirm asks a yes/no question on the command's stdin; only y or yes is
// a yes.
func confirm(cmd *cobra.Command, question string) bool {
	sep := " "
	if strings.HasSuffix(question, "\n") {
		sep = ""
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s%sAre you sure you want to continue? [y/N] ", question, sep)
	line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

func newVolumePruneCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove every volume no container uses (on --node, else on every ready node)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force && !confirm(cmd, "WARNING! This will remove all volumes not used by at least one container.") {
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
			var total int64
			err = forNodes(cmd, ts, func(t nodeTarget) (string, error) {
				r, err := t.Agent.PruneVolumes()
				if err != nil {
					return "", err
				}
				total += r.SpaceReclaimed
				var b strings.Builder
				for _, v := range r.Volumes {
					fmt.Fprintf(&b, "Deleted Volume: %s\n", v)
				}
				return b.String(), nil
			})
			fmt.Fprintf(cmd.OutOrStdout(), "Total reclaimed space: %s\n", humanSizeDec(total))
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	addNodeFlag(cmd, "node to prune (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}
