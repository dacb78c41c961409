package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() {
	addCommand(newNodeCmd)
}

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "List, inspect, drain and mark nodes",
	}
	addAddressFlag(cmd)
	cmd.AddCommand(newNodeListCmd(), newNodeInspectCmd(), newNodeDrainCmd(), newNodeEligibilityCmd())
	return cmd
}

func gpuSummary(gpus []api.GPUDevice) string {
	if len(gpus) == 0 {
		return "-"
	}
	models := map[string]int{}
	for _, g := range gpus {
		models[g.Model]++
	}
	var parts []string
	for _, m := range sortedKeys(models) {
		parts = append(parts, strconv.Itoa(models[m])+"×"+m)
	}
	return strings.Join(parts, ",")
}

func newNodeListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List nodes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			nodes, _, err := c.Nodes().List(nil)
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
			if nodes == nil {
				nodes = []*api.Node{}
			}
			return render(cmd, nodes, func(w io.Writer) error {
				t := newTable(w, "ID", "NAME", "DC", "STATUS", "ELIGIBILITY", "DRAIN", "CPU", "MEMORY", "GPUS")
				for _, n := range nodes {
					t.Row(shortID(n.ID), n.Name, n.Datacenter, n.Status, n.Eligibility, n.Drain,
						millicores(n.Resources.CPU), mib(n.Resources.MemoryMB), gpuSummary(n.Resources.GPUs))
				}
				return t.Flush()
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

// nodeInspectResult is what `node inspect --format json` prints.
type nodeInspectResult struct {
	Node        *api.Node         `json:"node"`
	Allocations []*api.Allocation `json:"allocations"`
}

func newNodeInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect NODE",
		Short: "Show a node (by ID, ID prefix or name) and its allocations",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			node, _, err := c.Nodes().Info(args[0], nil)
			if err != nil {
				return fmt.Errorf("node %q: %w", args[0], err)
			}
			allocs, _, err := c.Nodes().Allocations(node.ID, nil)
			if err != nil {
				return fmt.Errorf("allocations of node %q: %w", args[0], err)
			}
			if allocs == nil {
				allocs = []*api.Allocation{}
			}
			return render(cmd, &nodeInspectResult{Node: node, Allocations: allocs}, func(w io.Writer) error {
				var usedCPU, usedMem, usedGPU int
				var running []*api.Allocation
				for _, a := range allocs {
					if a.Terminal() {
						continue
					}
					running = append(running, a)
					usedCPU += a.Resources.CPU
					usedMem += a.Resources.MemoryMB
					usedGPU += len(a.GPUs)
				}
				err := writeKV(w,
					[2]string{"ID", node.ID},
					[2]string{"Name", node.Name},
					[2]string{"Datacenter", node.Datacenter},
					[2]string{"HTTP address", node.HTTPAddr},
					[2]string{"Status", node.Status},
					[2]string{"Eligibility", node.Eligibility},
					[2]string{"Drain", strconv.FormatBool(node.Drain)},
					[2]string{"CPU", millicores(usedCPU) + " / " + millicores(node.Resources.CPU) + " cores allocated"},
					[2]string{"Memory", mib(usedMem) + " / " + mib(node.Resources.MemoryMB) + " allocated"},
					[2]string{"GPUs", fmt.Sprintf("%d / %d allocated", usedGPU, len(node.Resources.GPUs))},
					[2]string{"Last status", since(node.StatusUpdatedAt)},
				)
				if err != nil {
					return err
				}
				if len(node.Resources.GPUs) > 0 {
					fmt.Fprintln(w, "\nGPUs")
					t := newTable(w, "INDEX", "UUID", "MODEL", "MEMORY", "HEALTHY", "NUMA", "MIG")
					for _, g := range node.Resources.GPUs {
						t.Row(g.Index, g.UUID, g.Model, mib(g.MemoryMiB), g.Healthy, g.NUMANode, g.MIGProfile)
					}
					if err := t.Flush(); err != nil {
						return err
					}
				}
				if len(node.Labels) > 0 || len(node.Attributes) > 0 {
					fmt.Fprintln(w, "\nAttributes")
					t := newTable(w)
					for _, k := range sortedKeys(node.Labels) {
						t.Row("node.label."+k, node.Labels[k])
					}
					for _, k := range sortedKeys(node.Attributes) {
						t.Row("attr."+k, node.Attributes[k])
					}
					if err := t.Flush(); err != nil {
						return err
					}
				}
				fmt.Fprintln(w)
				if len(running) == 0 {
					fmt.Fprintln(w, "No running allocations.")
					return nil
				}
				fmt.Fprintln(w, "Allocations")
				return allocTable(w, running)
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

// resolveNode turns an ID, ID prefix or name into the node's full ID.
func resolveNode(c *api.Client, ref string) (*api.Node, error) {
	n, _, err := c.Nodes().Info(ref, nil)
	if err != nil {
		if api.IsNotFound(err) {
			return nil, fmt.Errorf("node %q not found; `berth node ls` lists nodes", ref)
		}
		return nil, fmt.Errorf("node %q: %w", ref, err)
	}
	return n, nil
}

func newNodeDrainCmd() *cobra.Command {
	var disable bool
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Move service allocations off a node and stop placing new ones there",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			n, err := resolveNode(c, args[0])
			if err != nil {
				return err
			}
			resp, err := c.Nodes().Drain(n.ID, !disable)
			if err != nil {
				return fmt.Errorf("drain node %q: %w", n.Name, err)
			}
			return render(cmd, resp, func(w io.Writer) error {
				state := "enabled"
				if disable {
					state = "disabled"
				}
				fmt.Fprintf(w, "Node %q (%s) drain %s (index %d)\n", n.Name, shortID(n.ID), state, resp.Index)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&disable, "disable", false, "end the drain: the node takes new placements again")
	addFormatFlag(cmd)
	return cmd
}

func newNodeEligibilityCmd() *cobra.Command {
	var enable, disable bool
	cmd := &cobra.Command{
		Use:   "eligibility NODE --enable|--disable",
		Short: "Mark a node eligible or ineligible for new placements",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if enable == disable {
				return fmt.Errorf("pass exactly one of --enable or --disable")
			}
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			n, err := resolveNode(c, args[0])
			if err != nil {
				return err
			}
			resp, err := c.Nodes().Eligibility(n.ID, enable)
			if err != nil {
				return fmt.Errorf("set eligibility of node %q: %w", n.Name, err)
			}
			return render(cmd, resp, func(w io.Writer) error {
				state := api.NodeEligible
				if disable {
					state = api.NodeIneligible
				}
				fmt.Fprintf(w, "Node %q (%s) is now %s (index %d)\n", n.Name, shortID(n.ID), state, resp.Index)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&enable, "enable", false, "allow new placements on the node")
	cmd.Flags().BoolVar(&disable, "disable", false, "stop new placements on the node (running allocations stay)")
	addFormatFlag(cmd)
	return cmd
}
