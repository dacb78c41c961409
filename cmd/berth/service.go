package main

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() {
	addCommand(func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "service",
			Short: "Find services' published endpoints across the cluster",
		}
		cmd.AddCommand(newServiceLsCmd())
		return cmd
	})
}

// nodeIPAttr is the node attribute the agent sets to the address its
// published ports are reachable on.
const nodeIPAttr = "unique.network.ip"

// nodeIP is the address a node's published ports are reached on: its
// unique.network.ip attribute, else the host of its agent address. It is ""
// when neither names a usable address.
func nodeIP(n *api.Node) string {
	if n == nil {
		return ""
	}
	if ip := n.Attributes[nodeIPAttr]; usableIP(ip) {
		return ip
	}
	if host, _, err := net.SplitHostPort(n.HTTPAddr); err == nil && usableIP(host) {
		return host
	}
	return ""
}

func usableIP(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && !ip.IsUnspecified()
}

// portAddr is the address a published port is reached on: the host IP it
// is bound to, or the node's address when it is bound to all of them.
func portAddr(p api.AllocPort, nodeAddr string) string {
	if usableIP(p.HostIP) {
		return p.HostIP
	}
	if nodeAddr != "" {
		return nodeAddr
	}
	if p.HostIP != "" {
		return p.HostIP
	}
	return "0.0.0.0"
}

func portProto(p api.AllocPort) string {
	if p.Protocol == "" {
		return "tcp"
	}
	return strings.ToLower(p.Protocol)
}

// formatPort words one published port as docker does: 10.0.0.5:8080->80/tcp.
func formatPort(p api.AllocPort, nodeAddr string) string {
	return fmt.Sprintf("%s->%d/%s", net.JoinHostPort(portAddr(p, nodeAddr), strconv.Itoa(p.Value)), p.To, portProto(p))
}

// formatPorts is docker's PORTS column: every published port, joined with ", ".
func formatPorts(ports []api.AllocPort, nodeAddr string) string {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		out = append(out, formatPort(p, nodeAddr))
	}
	return strings.Join(out, ", ")
}

// withNodeIP returns ports with every empty or wildcard HostIP replaced by
// the node's address, so that each names where the port is reached.
func withNodeIP(ports []api.AllocPort, nodeAddr string) []api.AllocPort {
	if len(ports) == 0 {
		return ports
	}
	out := make([]api.AllocPort, len(ports))
	for i, p := range ports {
		p.HostIP = portAddr(p, nodeAddr)
		out[i] = p
	}
	return out
}

// nodeIPs maps node IDs to the address their published ports are reached on.
// Best effort: an unreachable node list yields an empty map.
func nodeIPs(c *api.Client) map[string]string {
	out := map[string]string{}
	nodes, _, err := c.Nodes().List(nil)
	if err != nil {
		return out
	}
	for _, n := range nodes {
		out[n.ID] = nodeIP(n)
	}
	return out
}

// ---- service ls ----

// serviceEndpoint is one published port of one running allocation.
type serviceEndpoint struct {
	Job      string `json:"job"`
	Group    string `json:"group"`
	Alloc    string `json:"alloc"`
	Node     string `json:"node"`
	Address  string `json:"address"`
	Port     int    `json:"port"`
	To       int    `json:"to"`
	Protocol string `json:"protocol"`
}

func (e serviceEndpoint) String() string {
	return fmt.Sprintf("%s->%d/%s", net.JoinHostPort(e.Address, strconv.Itoa(e.Port)), e.To, e.Protocol)
}

// serviceEndpoints lists the published endpoints of the running jobs, or of
// the one named, ordered by job, group and allocation. Any job that
// publishes ports is a service here, whatever its type: `berth run -d -p`
// starts batch jobs.
func serviceEndpoints(c *api.Client, name string) ([]serviceEndpoint, error) {
	var jobs []*api.Job
	if name != "" {
		j, _, err := c.Jobs().Info(name, nil)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w (see `berth job ls`)", name, err)
		}
		jobs = []*api.Job{j}
	} else {
		all, _, err := c.Jobs().List(nil)
		if err != nil {
			return nil, err
		}
		for _, j := range all {
			if !j.Stop {
				jobs = append(jobs, j)
			}
		}
	}
	nodes, _, err := c.Nodes().List(nil)
	if err != nil {
		return nil, err
	}
	byID := map[string]*api.Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	out := []serviceEndpoint{}
	for _, j := range jobs {
		allocs, _, err := c.Jobs().Allocations(j.ID, nil)
		if err != nil {
			return nil, fmt.Errorf("job %q: allocations: %w", j.ID, err)
		}
		for _, a := range allocs {
			if a.Terminal() || a.DesiredStatus != api.AllocDesiredRun || a.ClientStatus != api.AllocClientRunning {
				continue
			}
			n := byID[a.NodeID]
			node := a.NodeName
			if node == "" && n != nil {
				node = n.Name
			}
			if node == "" {
				node = a.NodeID
			}
			addr := nodeIP(n)
			for _, p := range a.Ports {
				out = append(out, serviceEndpoint{
					Job: a.JobID, Group: a.Group, Alloc: a.ID, Node: node,
					Address: portAddr(p, addr), Port: p.Value, To: p.To, Protocol: portProto(p),
				})
			}
		}
	}
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i], out[k]
		if a.Job != b.Job {
			return a.Job < b.Job
		}
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Alloc < b.Alloc
	})
	return out, nil
}

func newServiceLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls [NAME]",
		Aliases: []string{"list"},
		Short:   "List running jobs' published endpoints (node address and port)",
		Long: "List the published endpoints of every running job, or of the named one:\n" +
			"the node address and host port each published container port is reached on,\n" +
			"from anywhere in the cluster.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			eps, err := serviceEndpoints(c, name)
			if err != nil {
				return err
			}
			return render(cmd, eps, func(w io.Writer) error {
				return serviceTable(w, eps)
			})
		},
	}
	addFormatFlag(cmd)
	addAddressFlag(cmd)
	return cmd
}

// serviceTable prints one row per allocation with its endpoints joined.
func serviceTable(w io.Writer, eps []serviceEndpoint) error {
	t := newTable(w, "JOB", "GROUP", "ALLOC", "NODE", "ENDPOINTS")
	for i := 0; i < len(eps); {
		k := i
		var list []string
		for ; k < len(eps) && eps[k].Alloc == eps[i].Alloc; k++ {
			list = append(list, eps[k].String())
		}
		e := eps[i]
		t.Row(e.Job, e.Group, shortID(e.Alloc), e.Node, strings.Join(list, ", "))
		i = k
	}
	return t.Flush()
}
