package main

// The docker-style container verbs (ps, logs, stop, kill, rm, inspect,
// wait, exec, stats) and the `berth container` group. A "container" is one
// task of one allocation: the server's allocations say where it runs and
// how it ended, and the node's agent (reached through the server's proxy)
// serves its logs, exec and stats. A container's name is its job's name
// when the job has one task (what `berth run` makes), else
// "alloc-name.task".

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() {
	addCommand(newPsCmd)
	addCommand(newLogsCmd)
	addCommand(newStopCmd)
	addCommand(newKillCmd)
	addCommand(newRmCmd)
	addCommand(newInspectCmd)
	addCommand(newWaitCmd)
	addCommand(newExecCmd)
	addCommand(newStatsCmd)
	addCommand(newContainerCmd)
	addCommand(newContainerCreateCmd)
	addCommand(newContainerStartCmd)
}

func newContainerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container",
		Short: "Manage containers (the same verbs as the top-level ones)",
	}
	ls := newPsCmd()
	ls.Use, ls.Aliases, ls.Short = "ls", []string{"ps", "list"}, "List containers"
	cmd.AddCommand(newContainerCreateCmd(), newContainerStartCmd(), newRunCmd(), ls,
		newInspectCmd(), newLogsCmd(), newStopCmd(), newKillCmd(), newRmCmd(),
		newWaitCmd(), newExecCmd(), newStatsCmd())
	addAddressFlag(cmd)
	return cmd
}

// ctrID is the ID agents give a task's container.
func ctrID(allocID, task string) string {
	sum := sha256.Sum256([]byte(allocID + "/" + task))
	return hex.EncodeToString(sum[:])
}

// ctr is one container as the cluster sees it.
type ctr struct {
	ID    string
	Name  string
	Alloc *api.Allocation
	Task  *api.Task
	State *api.TaskState // never nil
	// JobStopped is set when the container's job has been stopped.
	JobStopped bool
}

func (c *ctr) node() string {
	if c.Alloc.NodeName != "" {
		return c.Alloc.NodeName
	}
	return c.Alloc.NodeID
}

// running reports whether the container runs (or is about to).
func (c *ctr) running() bool {
	return c.State.State == api.TaskStateRunning
}

// alive reports whether the container may still run: not yet dead and its
// allocation not terminal.
func (c *ctr) alive() bool {
	return c.State.State != api.TaskStateDead && !c.Alloc.Terminal()
}

// soleTask reports whether the container is the only one of its job.
func (c *ctr) soleTask() bool {
	j := c.Alloc.Job
	return j != nil && len(j.Groups) == 1 && len(j.Groups[0].Tasks) == 1 && j.Groups[0].Count <= 1
}

func allocTasks(a *api.Allocation) []*api.Task {
	if a.Job == nil {
		return nil
	}
	for _, g := range a.Job.Groups {
		if g.Name == a.Group {
			return g.Tasks
		}
	}
	return nil
}

// ctrsOf lists an allocation's containers.
func ctrsOf(a *api.Allocation) []*ctr {
	var out []*ctr
	tasks := allocTasks(a)
	sole := a.Job != nil && len(a.Job.Groups) == 1 && len(tasks) == 1 && a.Job.Groups[0].Count <= 1
	for _, t := range tasks {
		st := a.TaskStates[t.Name]
		if st == nil {
			st = &api.TaskState{State: api.TaskStatePending}
		}
		id := st.ContainerID
		if id == "" {
			id = ctrID(a.ID, t.Name)
		}
		name := a.Name + "." + t.Name
		if sole {
			name = a.JobID
		}
		out = append(out, &ctr{ID: id, Name: name, Alloc: a, Task: t, State: st})
	}
	return out
}

// listCtrs returns every container of the cluster, newest first.
func listCtrs(c *api.Client) ([]*ctr, error) {
	allocs, _, err := c.Allocations().List(nil)
	if err != nil {
		return nil, err
	}
	jobs, _, err := c.Jobs().List(nil)
	if err != nil {
		return nil, err
	}
	byID := map[string]*api.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	var out []*ctr
	for _, a := range allocs {
		j := byID[a.JobID]
		if j == nil {
			continue // removed (purged) job: its containers are gone too
		}
		if a.Job == nil {
			a.Job = j
		}
		for _, x := range ctrsOf(a) {
			x.JobStopped = j.Stop
			out = append(out, x)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Alloc.CreateIndex != out[j].Alloc.CreateIndex {
			return out[i].Alloc.CreateIndex > out[j].Alloc.CreateIndex
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// findCtr resolves a name, container ID prefix or allocation ID prefix.
// An exact name wins (its newest container, preferring a live one); then
// exact IDs; then prefixes, which must be unique.
func findCtr(all []*ctr, ref string) (*ctr, error) {
	if ref == "" {
		return nil, errors.New("empty container name or ID")
	}
	var byName []*ctr
	for _, c := range all {
		if c.Name == ref {
			byName = append(byName, c)
		}
	}
	if len(byName) > 0 {
		for _, c := range byName {
			if c.alive() {
				return c, nil
			}
		}
		return byName[0], nil // all is newest first
	}
	for _, c := range all {
		if c.ID == ref {
			return c, nil
		}
	}
	var cands []*ctr
	seen := map[*ctr]bool{}
	for _, c := range all {
		if strings.HasPrefix(c.ID, ref) || (strings.HasPrefix(c.Alloc.ID, ref) && len(ctrsOf(c.Alloc)) == 1) {
			if !seen[c] {
				seen[c] = true
				cands = append(cands, c)
			}
		}
	}
	switch len(cands) {
	case 0:
		return nil, fmt.Errorf("no such container: %s (see `berth ps -a`)", ref)
	case 1:
		return cands[0], nil
	}
	var names []string
	for _, c := range cands {
		names = append(names, c.ID[:12]+" ("+c.Name+")")
	}
	return nil, fmt.Errorf("%q matches %d containers: %s; give more of the ID or the name", ref, len(cands), strings.Join(names, ", "))
}

// resolveCtr lists the cluster's containers and finds ref among them.
func resolveCtr(c *api.Client, ref string) (*ctr, error) {
	all, err := listCtrs(c)
	if err != nil {
		return nil, err
	}
	return findCtr(all, ref)
}

func agentFor(c *api.Client, x *ctr) (*api.AgentClient, error) {
	node := x.Alloc.NodeID
	if node == "" {
		return nil, fmt.Errorf("container %s is not placed on a node yet", x.Name)
	}
	return api.NewAgentClient(c.Address(), node)
}

// waitCtrExit waits until the container exits and returns its exit code
// (and whether the kernel's OOM killer ended it). It asks the agent and
// falls back to watching the allocation when the agent cannot answer. With
// settle it also waits until the server has the exit on record.
func waitCtrExit(ctx context.Context, c *api.Client, x *ctr, settle bool) (int, bool, error) {
	if ag, err := agentFor(c, x); err == nil {
		res, err := ag.Wait(ctx, x.ID)
		if err == nil {
			// The agent reports the exit to the server a moment later;
			// wait for it (briefly) so that ps and inspect agree at once.
			if settle {
				ctrFinalState(ctx, c, x, 5*time.Second)
			}
			return res.ExitCode, res.OOMKilled, nil
		}
		if ctx.Err() != nil {
			return -1, false, ctx.Err()
		}
	}
	st := ctrFinalState(ctx, c, x, 0)
	if st == nil {
		if ctx.Err() != nil {
			return -1, false, ctx.Err()
		}
		return -1, false, fmt.Errorf("container %s: its allocation is gone", x.Name)
	}
	return st.ExitCode, st.OOMKilled, nil
}

// ctrFinalState blocks on the allocation until the task is dead (or the
// allocation terminal) and returns the final task state; nil when the
// allocation vanished, ctx ended or limit (if > 0) passed.
func ctrFinalState(ctx context.Context, c *api.Client, x *ctr, limit time.Duration) *api.TaskState {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	cc := c.WithContext(ctx)
	var idx uint64
	for ctx.Err() == nil {
		a, meta, err := cc.Allocations().Info(x.Alloc.ID, &api.QueryOptions{WaitIndex: idx, WaitTime: 10 * time.Second})
		if err != nil {
			if api.IsNotFound(err) || ctx.Err() != nil {
				return nil
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		st := a.TaskStates[x.Task.Name]
		if st != nil && st.State == api.TaskStateDead {
			return st
		}
		if a.ClientStatus == api.AllocClientLost {
			return &api.TaskState{State: api.TaskStateDead, ExitCode: -1, Message: "lost: " + a.ClientDescription}
		}
		idx = meta.LastIndex
	}
	return nil
}

// ---- ps ----

type psRow struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Image     string            `json:"image"`
	Command   string            `json:"command"`
	Created   int64             `json:"created"`
	State     string            `json:"state"`
	Status    string            `json:"status"`
	ExitCode  int               `json:"exit_code"`
	OOMKilled bool              `json:"oom_killed,omitempty"`
	Node      string            `json:"node"`
	AllocID   string            `json:"alloc_id"`
	JobID     string            `json:"job_id"`
	Task      string            `json:"task"`
	Labels    map[string]string `json:"labels,omitempty"`
	Ports     []api.AllocPort   `json:"ports,omitempty"`
}

func newPsCmd() *cobra.Command {
	var all, quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers across the cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ctrs, err := listCtrs(c)
			if err != nil {
				return err
			}
			// The agents know the image's default command; ask each node
			// once, best effort.
			cmds := map[string][]string{}
			asked := map[string]bool{}
			rows := []psRow{}
			var nodeAddrs map[string]string // node ID -> address of its published ports
			for _, x := range ctrs {
				if !all && !x.running() {
					continue
				}
				if len(x.Task.Command) == 0 && len(x.Task.Entrypoint) == 0 && x.Alloc.NodeID != "" && !asked[x.Alloc.NodeID] {
					asked[x.Alloc.NodeID] = true
					if ag, err := agentFor(c, x); err == nil {
						if infos, err := ag.WithContext(ctxTimeout(3 * time.Second)).Containers(); err == nil {
							for _, in := range infos {
								cmds[in.ID] = in.Command
							}
						}
					}
				}
				row := psRowOf(x, cmds[x.ID])
				if len(row.Ports) > 0 {
					if nodeAddrs == nil {
						nodeAddrs = nodeIPs(c)
					}
					row.Ports = withNodeIP(row.Ports, nodeAddrs[x.Alloc.NodeID])
				}
				rows = append(rows, row)
			}
			if quiet {
				for _, r := range rows {
					if noTrunc {
						fmt.Fprintln(cmd.OutOrStdout(), r.ID)
					} else {
						fmt.Fprintln(cmd.OutOrStdout(), r.ID[:12])
					}
				}
				return nil
			}
			return render(cmd, rows, func(w io.Writer) error {
				t := newTable(w, "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES", "NODE")
				for _, r := range rows {
					id, command := r.ID[:12], strconv.Quote(r.Command)
					if noTrunc {
						id = r.ID
					} else {
						command = strconv.Quote(truncRunes(r.Command, 20))
					}
					t.Row(id, r.Image, command, humanAgo(r.Created), r.Status, formatPorts(r.Ports, ""), r.Name, r.Node)
				}
				return t.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display container IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	addFormatFlag(cmd)
	addAddressFlag(cmd)
	return cmd
}

func ctxTimeout(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	time.AfterFunc(d, cancel)
	return ctx
}

func truncRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func psRowOf(x *ctr, agentCmd []string) psRow {
	command := append(append([]string{}, x.Task.Entrypoint...), x.Task.Command...)
	if len(x.Task.Command) == 0 && len(x.Task.Entrypoint) == 0 {
		command = agentCmd
	}
	created := x.Alloc.CreateTime
	return psRow{
		ID: x.ID, Name: x.Name, Image: x.Task.Image, Command: strings.Join(command, " "),
		Created: created, State: ctrStateWord(x), Status: ctrStatus(x),
		ExitCode: x.State.ExitCode, OOMKilled: x.State.OOMKilled, Node: x.node(),
		AllocID: x.Alloc.ID, JobID: x.Alloc.JobID, Task: x.Task.Name, Labels: x.Task.Labels, Ports: x.Alloc.Ports,
	}
}

// ctrStateWord is docker's one-word state: created, running, exited.
func ctrStateWord(x *ctr) string {
	switch x.State.State {
	case api.TaskStateRunning:
		return api.ContainerRunning
	case api.TaskStateDead:
		return api.ContainerExited
	}
	if x.Alloc.Terminal() {
		return api.ContainerExited
	}
	return api.ContainerCreated
}

// ctrStatus is docker's status column: "Up 3 minutes (healthy)",
// "Exited (0) 2 seconds ago".
func ctrStatus(x *ctr) string {
	st := x.State
	switch st.State {
	case api.TaskStateRunning:
		s := "Up " + humanDuration(time.Since(time.Unix(0, st.StartedAt)))
		switch {
		case x.Alloc.DesiredStatus != api.AllocDesiredRun:
			s += " (stopping)"
		case st.Health == "starting":
			s += " (health: starting)" // docker's words
		case st.Health != "":
			s += " (" + st.Health + ")"
		}
		return s
	case api.TaskStateDead:
		if st.StartedAt == 0 && st.Failed {
			return "Failed: " + truncRunes(st.Message, 60)
		}
		s := fmt.Sprintf("Exited (%d)", st.ExitCode)
		if st.OOMKilled {
			s += " OOMKilled"
		}
		if st.FinishedAt > 0 {
			s += " " + humanDuration(time.Since(time.Unix(0, st.FinishedAt))) + " ago"
		}
		return s
	}
	switch x.Alloc.ClientStatus {
	case api.AllocClientLost:
		return "Lost"
	case api.AllocClientFailed:
		return "Failed: " + truncRunes(x.Alloc.ClientDescription, 60)
	}
	if st.Restarts > 0 {
		return fmt.Sprintf("Restarting (%d)", st.ExitCode)
	}
	if x.Alloc.NodeID == "" {
		return "Pending"
	}
	return "Created"
}

func humanAgo(unixNanos int64) string {
	if unixNanos == 0 {
		return ""
	}
	return humanDuration(time.Since(time.Unix(0, unixNanos))) + " ago"
}

// humanDuration words a duration as docker does.
func humanDuration(d time.Duration) string {
	s := int(d.Seconds())
	switch {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	m := int(d.Minutes())
	switch {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	h := int(d.Round(time.Hour).Hours())
	switch {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	}
	return fmt.Sprintf("%d years", h/24/365)
}

// ---- logs ----

func newLogsCmd() *cobra.Command {
	var follow, timestamps bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := -1
			if tail != "all" && tail != "" {
				v, err := strconv.Atoi(tail)
				if err != nil || v < 0 {
					return fmt.Errorf("invalid --tail %q: give a number of lines or \"all\"", tail)
				}
				n = v
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			x, err := resolveCtr(c, args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return streamLogs(ctx, c, x, follow, n, timestamps, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow log output")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "number of lines to show from the end of the logs")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	addAddressFlag(cmd)
	return cmd
}

// streamLogs copies a container's log entries to stdout and stderr until
// the stream ends (for a follow: the container exited) or ctx ends.
func streamLogs(ctx context.Context, c *api.Client, x *ctr, follow bool, tail int, ts bool, stdout, stderr io.Writer) error {
	ag, err := agentFor(c, x)
	if err != nil {
		return err
	}
	s, err := ag.Logs(ctx, x.ID, follow, tail)
	if err != nil {
		return fmt.Errorf("logs of %s on node %s: %w", x.Name, x.node(), err)
	}
	defer s.Close()
	for {
		e, err := s.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("logs of %s: %w", x.Name, err)
		}
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		if ts {
			fmt.Fprint(w, e.Time, " ")
		}
		if _, err := io.WriteString(w, e.Log); err != nil {
			return err
		}
	}
}

// ---- stop, kill, rm ----

func newStopCmd() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER...",
		Short: "Stop one or more running containers (stops their jobs)",
		Long: `Stop sends the container's stop signal (SIGTERM unless the task names
another), waits up to the stop timeout (-t, else the task's stop_timeout,
else 10 seconds) and then kills it. It stops the container's job, so the
container is not restarted or placed again.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			var t *time.Duration
			if cmd.Flags().Changed("time") {
				if timeout < 0 {
					return fmt.Errorf("invalid --time %d: give seconds >= 0", timeout)
				}
				d := time.Duration(timeout) * time.Second
				t = &d
			}
			return eachCtr(cmd, c, args, func(x *ctr) error { return stopCtr(c, x, t) })
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	addAddressFlag(cmd)
	return cmd
}

// eachCtr runs fn for every ref, printing the ref on success as docker
// does, and fails if any failed.
func eachCtr(cmd *cobra.Command, c *api.Client, refs []string, fn func(*ctr) error) error {
	all, err := listCtrs(c)
	if err != nil {
		return err
	}
	failed := 0
	for _, ref := range refs {
		x, err := findCtr(all, ref)
		if err == nil {
			err = fn(x)
		}
		if err != nil {
			failed++
			fmt.Fprintln(cmd.ErrOrStderr(), "Error:", err)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), ref)
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

// stopCtr stops x's job and enforces the stop timeout: after it, the CLI
// kills the container itself.
func stopCtr(c *api.Client, x *ctr, timeout *time.Duration) error {
	if !x.soleTask() {
		return fmt.Errorf("container %s is one of several of job %s; stop the job with `berth job stop %s`", x.Name, x.Alloc.JobID, x.Alloc.JobID)
	}
	if _, err := c.Jobs().Deregister(x.Alloc.JobID, false); err != nil {
		return fmt.Errorf("stop %s: %w", x.Name, err)
	}
	if !x.alive() {
		return nil
	}
	grace := 10 * time.Second
	if x.Task.StopTimeout > 0 {
		grace = time.Duration(x.Task.StopTimeout)
	}
	if timeout != nil {
		grace = *timeout
	}
	// Like docker stop, return once the container's end is on record:
	// inspect and ps right after see it exited.
	defer ctrFinalState(context.Background(), c, x, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	_, _, err := waitCtrExit(ctx, c, x, true)
	cancel()
	if err == nil {
		return nil
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// Past the grace period: kill it, then wait for the exit.
	if ag, err := agentFor(c, x); err == nil {
		if err := ag.Kill(x.ID, "SIGKILL"); err != nil && !api.IsNotFound(err) {
			return fmt.Errorf("kill %s after %s: %w", x.Name, grace, err)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := waitCtrExit(ctx, c, x, true); err != nil {
		return fmt.Errorf("stop %s: still running 30s after SIGKILL: %w", x.Name, err)
	}
	return nil
}

func newKillCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER...",
		Short: "Send a signal (SIGKILL by default) to one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSignal(sig); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			return eachCtr(cmd, c, args, func(x *ctr) error {
				if !x.running() {
					return fmt.Errorf("container %s is not running", x.Name)
				}
				ag, err := agentFor(c, x)
				if err != nil {
					return err
				}
				return ag.Kill(x.ID, sig)
			})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "SIGKILL", "signal to send to the container")
	addAddressFlag(cmd)
	return cmd
}

var ctrSignals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
	"USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16,
	"CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23,
	"XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31,
}

// checkSignal accepts SIGTERM, TERM, term or a number 1..64.
func checkSignal(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return fmt.Errorf("invalid signal %q: numbers go from 1 to 64", s)
		}
		return nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if _, ok := ctrSignals[name]; ok || strings.HasPrefix(name, "RTMIN") || strings.HasPrefix(name, "RTMAX") {
		return nil
	}
	return fmt.Errorf("invalid signal %q: use a name such as SIGTERM or KILL, or a number", s)
}

func newRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] CONTAINER...",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers (purges their jobs)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			return eachCtr(cmd, c, args, func(x *ctr) error {
				if !x.soleTask() {
					return fmt.Errorf("container %s is one of several of job %s; remove the job with `berth job stop --purge %s`", x.Name, x.Alloc.JobID, x.Alloc.JobID)
				}
				if x.alive() && !x.JobStopped && !force {
					return fmt.Errorf("cannot remove running container %s: stop it first or use -f", x.Name)
				}
				if force && x.running() {
					// docker rm -f kills at once rather than waiting out
					// the stop timeout.
					if ag, err := agentFor(c, x); err == nil {
						_ = ag.Kill(x.ID, "SIGKILL")
					}
				}
				if _, err := c.Jobs().Deregister(x.Alloc.JobID, true); err != nil && !api.IsNotFound(err) {
					return fmt.Errorf("remove %s: %w", x.Name, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force the removal of a running container")
	addAddressFlag(cmd)
	return cmd
}

// ---- inspect, wait ----

// ctrInspect is what `berth inspect` prints for one container: the agent's
// view (when the node answers) and the server's.
type ctrInspect struct {
	ID        string             `json:"id"`
	Name      string             `json:"name"`
	Node      string             `json:"node"`
	State     *api.TaskState     `json:"state"`
	Task      *api.Task          `json:"task"`
	Container *api.ContainerInfo `json:"container,omitempty"`
	// Ports are the published ports as node-ip:port->port/proto.
	Ports      []string        `json:"ports,omitempty"`
	AgentError string          `json:"agent_error,omitempty"`
	Allocation *api.Allocation `json:"allocation"`
}

func newInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "Show low-level information on containers, as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			all, err := listCtrs(c)
			if err != nil {
				return err
			}
			out := []ctrInspect{}
			var errs []string
			var nodeAddrs map[string]string // node ID -> address of its published ports
			for _, ref := range args {
				x, err := findCtr(all, ref)
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				ci := ctrInspect{ID: x.ID, Name: x.Name, Node: x.node(), State: x.State, Task: x.Task, Allocation: x.Alloc}
				if ag, err := agentFor(c, x); err == nil {
					if info, err := ag.WithContext(ctxTimeout(5 * time.Second)).Container(x.ID); err == nil {
						ci.Container = info
					} else {
						ci.AgentError = err.Error()
					}
				}
				if len(x.Alloc.Ports) > 0 || (ci.Container != nil && len(ci.Container.Ports) > 0) {
					if nodeAddrs == nil {
						nodeAddrs = nodeIPs(c)
					}
					addr := nodeAddrs[x.Alloc.NodeID]
					ports := x.Alloc.Ports
					if ci.Container != nil && len(ci.Container.Ports) > 0 {
						ci.Container.Ports = withNodeIP(ci.Container.Ports, addr)
						ports = ci.Container.Ports
					}
					for _, p := range ports {
						ci.Ports = append(ci.Ports, formatPort(p, addr))
					}
				}
				out = append(out, ci)
			}
			if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
				return err
			}
			if len(errs) > 0 {
				for _, e := range errs {
					fmt.Fprintln(cmd.ErrOrStderr(), "Error:", e)
				}
				return exitError{1}
			}
			return nil
		},
	}
	addAddressFlag(cmd)
	return cmd
}

func newWaitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wait CONTAINER...",
		Short: "Block until containers stop, then print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			all, err := listCtrs(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			failed := false
			for _, ref := range args {
				x, err := findCtr(all, ref)
				if err == nil {
					var code int
					if code, _, err = waitCtrExit(ctx, c, x, true); err == nil {
						fmt.Fprintln(cmd.OutOrStdout(), code)
						continue
					}
				}
				failed = true
				fmt.Fprintln(cmd.ErrOrStderr(), "Error:", err)
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	addAddressFlag(cmd)
	return cmd
}

// ---- exec ----

func newExecCmd() *cobra.Command {
	var interactive, tty bool
	var env []string
	var user, workdir string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if workdir != "" && !strings.HasPrefix(workdir, "/") {
				return fmt.Errorf("invalid --workdir %q: it must be an absolute path", workdir)
			}
			envList, err := parseEnvList(env)
			if err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			x, err := resolveCtr(c, args[0])
			if err != nil {
				return err
			}
			if !x.running() {
				return fmt.Errorf("container %s is not running", x.Name)
			}
			req := &api.ExecRequest{Cmd: args[1:], Env: envList, User: user, WorkingDir: workdir}
			ag, err := agentFor(c, x)
			if err != nil {
				return err
			}
			if tty || interactive {
				return execInteractive(cmd, ag, x, req, tty, interactive)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			code, err := ag.Exec(ctx, x.ID, req, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "send this terminal's input to the command")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "give the command a terminal (with -i: this one, in raw mode)")
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "set environment variables (K=V, or K to pass this shell's value)")
	cmd.Flags().StringVarP(&user, "user", "u", "", "user[:group] to run as")
	cmd.Flags().StringVarP(&workdir, "workdir", "w", "", "working directory inside the container")
	addAddressFlag(cmd)
	return cmd
}

// parseEnvList reads -e values: K=V, or K alone for the caller's value
// (skipped when unset, as docker does).
func parseEnvList(vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if err := checkEnvKey(k); err != nil {
			return nil, err
		}
		if !ok {
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			val = ev
		}
		out = append(out, k+"="+val)
	}
	return out, nil
}

func checkEnvKey(k string) error {
	if k == "" || strings.ContainsAny(k, " \t\n\x00") {
		return fmt.Errorf("invalid environment variable %q: want KEY=VALUE with a non-empty KEY and no spaces", k)
	}
	return nil
}

// ---- stats ----

type statsRow struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Node        string  `json:"node"`
	CPUPercent  float64 `json:"cpu_percent"`
	MemoryUsage uint64  `json:"memory_usage"`
	MemoryLimit uint64  `json:"memory_limit"`
	MemPercent  float64 `json:"memory_percent"`
	Pids        uint64  `json:"pids"`
	Error       string  `json:"error,omitempty"`
}

func newStatsCmd() *cobra.Command {
	var noStream bool
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Show containers' resource use (all running ones by default)",
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			all, err := listCtrs(c)
			if err != nil {
				return err
			}
			var targets []*ctr
			if len(args) == 0 {
				for _, x := range all {
					if x.running() {
						targets = append(targets, x)
					}
				}
			}
			for _, ref := range args {
				x, err := findCtr(all, ref)
				if err != nil {
					return err
				}
				targets = append(targets, x)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			prev := sampleStats(c, targets)
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				cur := sampleStats(c, targets)
				rows := statsRows(targets, prev, cur)
				prev = cur
				if !noStream && format == formatTable {
					fmt.Fprint(cmd.OutOrStdout(), "\033[2J\033[H")
				}
				if err := render(cmd, rows, func(w io.Writer) error {
					t := newTable(w, "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "NODE")
					for _, r := range rows {
						if r.Error != "" {
							t.Row(r.ID[:12], r.Name, "--", "-- / --", "--", "--", r.Node+" ("+r.Error+")")
							continue
						}
						limit := "unlimited"
						if r.MemoryLimit > 0 && r.MemoryLimit < 1<<60 {
							limit = humanBytes(int64(r.MemoryLimit))
						}
						t.Row(r.ID[:12], r.Name, fmt.Sprintf("%.2f%%", r.CPUPercent),
							humanBytes(int64(r.MemoryUsage))+" / "+limit, fmt.Sprintf("%.2f%%", r.MemPercent), r.Pids, r.Node)
					}
					return t.Flush()
				}); err != nil {
					return err
				}
				if noStream {
					return nil
				}
			}
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	addFormatFlag(cmd)
	addAddressFlag(cmd)
	return cmd
}

type statsSample struct {
	st  *api.ContainerStats
	err error
}

func sampleStats(c *api.Client, targets []*ctr) map[string]statsSample {
	out := map[string]statsSample{}
	for _, x := range targets {
		ag, err := agentFor(c, x)
		if err != nil {
			out[x.ID] = statsSample{err: err}
			continue
		}
		st, err := ag.WithContext(ctxTimeout(5 * time.Second)).Stats(x.ID)
		out[x.ID] = statsSample{st: st, err: err}
	}
	return out
}

func statsRows(targets []*ctr, prev, cur map[string]statsSample) []statsRow {
	rows := []statsRow{}
	for _, x := range targets {
		r := statsRow{ID: x.ID, Name: x.Name, Node: x.node()}
		s := cur[x.ID]
		if s.err != nil {
			r.Error = s.err.Error()
			rows = append(rows, r)
			continue
		}
		r.MemoryUsage, r.MemoryLimit, r.Pids = s.st.MemoryUsage, s.st.MemoryLimit, s.st.Pids
		if r.MemoryLimit > 0 {
			r.MemPercent = 100 * float64(r.MemoryUsage) / float64(r.MemoryLimit)
		}
		if p := prev[x.ID]; p.err == nil && p.st != nil && s.st.ReadTime > p.st.ReadTime && s.st.CPUUsageNanos >= p.st.CPUUsageNanos {
			r.CPUPercent = 100 * float64(s.st.CPUUsageNanos-p.st.CPUUsageNanos) / float64(s.st.ReadTime-p.st.ReadTime)
		}
		rows = append(rows, r)
	}
	return rows
}

// humanBytes words a size in binary units as docker's stats does.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.4g%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ---- container create, start ----

func newContainerCreateCmd() *cobra.Command {
	cmd := newRunCmd()
	cmd.Use = "create [OPTIONS] IMAGE [COMMAND] [ARG...]"
	cmd.Short = "Create a container (berth places and starts it at once, like run -d)"
	cmd.Long = `Create registers the container's job and waits until it is placed, then
prints the container ID. berth has no created-but-stopped state yet, so the
container starts right away: create is 'run -d'.`
	_ = cmd.Flags().Set("detach", "true")
	return cmd
}

func newContainerStartCmd() *cobra.Command {
	var attachOut, attachIn bool
	cmd := &cobra.Command{
		Use:   "start CONTAINER...",
		Short: "Start stopped or exited containers again (re-submits their jobs)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			var started *ctr
			start := func(x *ctr) error {
				started = x
				if x.running() {
					// The server may not have heard of an exit yet: ask
					// the node.
					ag, err := agentFor(c, x)
					if err != nil {
						return err
					}
					info, err := ag.Container(x.ID)
					if err != nil || info.State == api.ContainerRunning {
						return nil
					}
				}
				if !x.soleTask() {
					return fmt.Errorf("container %s is one of several of job %s; use `berth job run`", x.Name, x.Alloc.JobID)
				}
				j, _, err := c.Jobs().Info(x.Alloc.JobID, nil)
				if err != nil {
					return fmt.Errorf("start %s: %w", x.Name, err)
				}
				// The scheduler never runs a finished copy of a group
				// again, so a start runs the task as a fresh group (the
				// old one's copies stay listed by ps -a).
				if j.Meta == nil {
					j.Meta = map[string]string{}
				}
				now := time.Now().UnixNano()
				j.Meta[metaStarted] = strconv.FormatInt(now, 10)
				j.Groups[0].Name = "run-" + strconv.FormatInt(now, 36)
				j.Stop = false
				resp, err := c.Jobs().Register(j)
				if err != nil {
					return fmt.Errorf("start %s: %w", x.Name, err)
				}
				started, err = waitRunStart(context.Background(), c, j, resp, nil)
				return err
			}
			if !attachOut && !attachIn {
				return eachCtr(cmd, c, args, start)
			}
			if len(args) != 1 {
				return errors.New("start -a/-i attaches to one container: name only one")
			}
			x, err := resolveCtr(c, args[0])
			if err != nil {
				return err
			}
			if err := start(x); err != nil {
				return err
			}
			return startAttach(cmd, c, started, attachIn)
		},
	}
	cmd.Flags().BoolVarP(&attachOut, "attach", "a", false, "attach to the container's output (its terminal, with -t) and exit with its exit code")
	cmd.Flags().BoolVarP(&attachIn, "interactive", "i", false, "attach this terminal's input too (a container run with -i or -t)")
	addAddressFlag(cmd)
	return cmd
}
