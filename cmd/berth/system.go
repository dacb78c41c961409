package main

// `berth info` (the cluster at a glance) and `berth system prune` (on
// every node).

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() {
	addCommand(newInfoCmd)
	addCommand(newSystemCmd)
}

func newSystemCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "system",
		Short: "Manage berth across the cluster",
	}
	info := newInfoCmd()
	cmd.AddCommand(info, newSystemPruneCmd(), newSystemGCCmd()) // system_gc.go
	addAddressFlag(cmd)
	return cmd
}

// clusterInfo is what `berth info` reports.
type clusterInfo struct {
	Server      string          `json:"server"`
	Leader      string          `json:"leader"`
	Servers     []api.RaftPeer  `json:"servers"`
	Nodes       []infoNode      `json:"nodes"`
	NodesReady  int             `json:"nodes_ready"`
	Containers  infoContainers  `json:"containers"`
	Capacity    api.Resources   `json:"capacity"`
	Used        api.Resources   `json:"used"`
	Free        api.Resources   `json:"free"`
	GPUs        int             `json:"gpus"`
	GPUsUsed    int             `json:"gpus_used"`
	Jobs        int             `json:"jobs"`
	ServerError string          `json:"server_error,omitempty"`
	Members     []api.Member    `json:"members,omitempty"`
	NodeUsage   map[string]used `json:"-"`
}

type used struct{ cpu, mem, gpus int }

type infoNode struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Status   string `json:"status"`
	Address  string `json:"address"`
	CPU      int    `json:"cpu"`
	MemoryMB int    `json:"memory"`
	GPUs     int    `json:"gpus"`
	CPUUsed  int    `json:"cpu_used"`
	MemUsed  int    `json:"memory_used"`
	GPUsUsed int    `json:"gpus_used"`
}

type infoContainers struct {
	Total   int `json:"total"`
	Running int `json:"running"`
	Pending int `json:"pending"`
	Stopped int `json:"stopped"`
}

func gatherInfo(c *api.Client) (*clusterInfo, error) {
	nodes, _, err := c.Nodes().List(nil)
	if err != nil {
		return nil, err
	}
	ci := &clusterInfo{Server: c.Address(), NodeUsage: map[string]used{}}
	ci.Leader, _ = c.Status().Leader()
	if peers, err := c.Operator().RaftPeers(); err == nil {
		ci.Servers = peers
	} else {
		ci.ServerError = err.Error()
	}
	allocs, _, err := c.Allocations().List(nil)
	if err != nil {
		return nil, err
	}
	jobs, _, err := c.Jobs().List(nil)
	if err != nil {
		return nil, err
	}
	ci.Jobs = len(jobs)
	live := map[string]bool{}
	for _, j := range jobs {
		live[j.ID] = true
	}
	for _, a := range allocs {
		if !live[a.JobID] {
			continue // purged job
		}
		for _, x := range ctrsOf(a) {
			ci.Containers.Total++
			switch {
			case x.running():
				ci.Containers.Running++
			case x.alive():
				ci.Containers.Pending++
			default:
				ci.Containers.Stopped++
			}
		}
		if a.Terminal() {
			continue
		}
		u := ci.NodeUsage[a.NodeID]
		u.cpu += a.Resources.CPU
		u.mem += a.Resources.MemoryMB
		u.gpus += len(a.GPUs)
		ci.NodeUsage[a.NodeID] = u
	}
	for _, n := range nodes {
		u := ci.NodeUsage[n.ID]
		ci.Nodes = append(ci.Nodes, infoNode{Name: n.Name, ID: n.ID, Status: n.Status, Address: n.HTTPAddr,
			CPU: n.Resources.CPU, MemoryMB: n.Resources.MemoryMB, GPUs: len(n.Resources.GPUs),
			CPUUsed: u.cpu, MemUsed: u.mem, GPUsUsed: u.gpus})
		if n.Status != api.NodeStatusReady {
			continue
		}
		ci.NodesReady++
		ci.Capacity.CPU += n.Resources.CPU
		ci.Capacity.MemoryMB += n.Resources.MemoryMB
		ci.GPUs += len(n.Resources.GPUs)
		ci.Used.CPU += u.cpu
		ci.Used.MemoryMB += u.mem
		ci.GPUsUsed += u.gpus
	}
	ci.Free.CPU = max(ci.Capacity.CPU-ci.Used.CPU, 0)
	ci.Free.MemoryMB = max(ci.Capacity.MemoryMB-ci.Used.MemoryMB, 0)
	return ci, nil
}

func newInfoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the cluster: servers, leader, nodes, capacity used and free",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ci, err := gatherInfo(c)
			if err != nil {
				return err
			}
			return render(cmd, ci, func(w io.Writer) error {
				fmt.Fprintf(w, "Server:  %s\n", ci.Server)
				fmt.Fprintf(w, "Client:  %s\n", version)
				leader := ci.Leader
				if leader == "" {
					leader = "none (no quorum?)"
				}
				fmt.Fprintf(w, "Leader:  %s\n", leader)
				fmt.Fprintf(w, "Servers: %d\n", len(ci.Servers))
				for _, p := range ci.Servers {
					role := "follower"
					if p.Leader {
						role = "leader"
					}
					if !p.Voter {
						role += ", non-voter"
					}
					fmt.Fprintf(w, "  %s  %s  (%s)\n", p.ID, p.Address, role)
				}
				if ci.ServerError != "" {
					fmt.Fprintf(w, "  (%s)\n", ci.ServerError)
				}
				fmt.Fprintf(w, "Jobs:    %d\n", ci.Jobs)
				fmt.Fprintf(w, "Containers: %d\n  Running: %d\n  Pending: %d\n  Stopped: %d\n",
					ci.Containers.Total, ci.Containers.Running, ci.Containers.Pending, ci.Containers.Stopped)
				fmt.Fprintf(w, "Nodes:   %d (%d ready)\n", len(ci.Nodes), ci.NodesReady)
				fmt.Fprintf(w, "Capacity (ready nodes):\n")
				fmt.Fprintf(w, "  CPU:     %s used, %s free of %s cores\n", millicores(ci.Used.CPU), millicores(ci.Free.CPU), millicores(ci.Capacity.CPU))
				fmt.Fprintf(w, "  Memory:  %s used, %s free of %s\n", mib(ci.Used.MemoryMB), mib(ci.Free.MemoryMB), mib(ci.Capacity.MemoryMB))
				if ci.GPUs > 0 {
					fmt.Fprintf(w, "  GPUs:    %d used, %d free of %d\n", ci.GPUsUsed, ci.GPUs-ci.GPUsUsed, ci.GPUs)
				}
				if len(ci.Nodes) == 0 {
					return nil
				}
				fmt.Fprintln(w)
				t := newTable(w, "NODE", "STATUS", "ADDRESS", "CPU USED/TOTAL", "MEMORY USED/TOTAL", "GPUS")
				for _, n := range ci.Nodes {
					gpus := ""
					if n.GPUs > 0 {
						gpus = fmt.Sprintf("%d/%d", n.GPUsUsed, n.GPUs)
					}
					t.Row(n.Name, n.Status, n.Address, millicores(n.CPUUsed)+"/"+millicores(n.CPU),
						mib(n.MemUsed)+"/"+mib(n.MemoryMB), gpus)
				}
				return t.Flush()
			})
		},
	}
	addFormatFlag(cmd)
	addAddressFlag(cmd)
	return cmd
}

func newSystemPruneCmd() *cobra.Command {
	var all, volumes, force bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove stopped containers, unused images (and volumes) on every node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force {
				what := []string{"all stopped containers"}
				if volumes {
					what = append(what, "all volumes not used by at least one container")
				}
				if all {
					what = append(what, "all images without at least one container associated to them")
				} else {
					what = append(what, "all dangling images")
				}
				if !confirm(cmd, "WARNING! This will remove on every node:\n  - "+strings.Join(what, "\n  - ")+"\n") {
					return nil
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
			var total int64
			err = forNodes(cmd, ts, func(t nodeTarget) (string, error) {
				r, err := t.Agent.SystemPrune(all, volumes)
				if err != nil {
					return "", err
				}
				total += r.SpaceReclaimed
				var b strings.Builder
				for _, x := range r.Containers {
					fmt.Fprintf(&b, "Deleted Container: %s\n", x)
				}
				for _, x := range r.Images {
					fmt.Fprintf(&b, "Deleted Image: %s\n", x)
				}
				for _, x := range r.Volumes {
					fmt.Fprintf(&b, "Deleted Volume: %s\n", x)
				}
				fmt.Fprintf(&b, "Reclaimed space: %s\n", humanSizeDec(r.SpaceReclaimed))
				return b.String(), nil
			})
			fmt.Fprintf(cmd.OutOrStdout(), "Total reclaimed space: %s\n", humanSizeDec(total))
			return err
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused images, not just dangling ones")
	cmd.Flags().BoolVar(&volumes, "volumes", false, "prune volumes too")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	addNodeFlag(cmd, "node to prune (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}
