package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/jobspec"
)

func init() {
	addCommand(newJobCmd)
}

func newJobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit, inspect and stop jobs",
		Long: `Jobs describe groups of containers that the servers place on nodes.
A job file is YAML or JSON (see DESIGN.md for the fields).`,
	}
	addAddressFlag(cmd)
	cmd.AddCommand(newJobRunCmd(), newJobPlanCmd(), newJobListCmd(), newJobStatusCmd(), newJobStopCmd())
	return cmd
}

func jobID(j *api.Job) string {
	if j.ID != "" {
		return j.ID
	}
	return j.Name
}

// jobRunResult is what `job run --format json` prints.
type jobRunResult struct {
	JobID       string            `json:"job_id"`
	EvalID      string            `json:"eval_id"`
	Index       uint64            `json:"index"`
	Warnings    []string          `json:"warnings,omitempty"`
	Evaluation  *api.Evaluation   `json:"evaluation,omitempty"`
	Allocations []*api.Allocation `json:"allocations,omitempty"`
}

func newJobRunCmd() *cobra.Command {
	var detach, noAuth bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Submit a job and wait until it is placed",
		Long: `Submit (or update) the job in FILE. Without -d, wait until the scheduler
has placed it and print its allocations; exit non-zero with the reason
when some copies could not be placed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			job, err := loadJobFile(args[0], noAuth)
			if err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.Jobs().Register(job)
			if err != nil {
				return fmt.Errorf("submit job %q: %w", job.Name, err)
			}
			res := &jobRunResult{JobID: jobID(job), EvalID: resp.EvalID, Index: resp.Index, Warnings: resp.Warnings}
			if detach || resp.EvalID == "" {
				return render(cmd, res, func(w io.Writer) error {
					for _, warn := range resp.Warnings {
						fmt.Fprintf(w, "warning: %s\n", warn)
					}
					fmt.Fprintf(w, "Job %q registered (evaluation %s, index %d)\n", res.JobID, shortID(resp.EvalID), resp.Index)
					return nil
				})
			}
			eval, err := waitEval(c, resp.EvalID, resp.Index, timeout)
			if err != nil {
				return fmt.Errorf("job %q was registered, but waiting for its placement failed: %w", res.JobID, err)
			}
			res.Evaluation = eval
			// The same server answered the evaluation, so its state already
			// holds the plan that completed it.
			allocs, _, err := c.Jobs().Allocations(res.JobID, nil)
			if err != nil {
				return fmt.Errorf("list allocations of job %q: %w", res.JobID, err)
			}
			for _, a := range allocs {
				if a.DesiredStatus == api.AllocDesiredRun && !a.Terminal() {
					res.Allocations = append(res.Allocations, a)
				}
			}
			failure := evalFailure(eval)
			err = render(cmd, res, func(w io.Writer) error {
				for _, warn := range resp.Warnings {
					fmt.Fprintf(w, "warning: %s\n", warn)
				}
				fmt.Fprintf(w, "Job %q registered (evaluation %s, index %d)\n", res.JobID, shortID(resp.EvalID), resp.Index)
				if failure == "" {
					fmt.Fprintf(w, "Placed %d allocation(s):\n", len(res.Allocations))
				} else if len(res.Allocations) > 0 {
					fmt.Fprintf(w, "Placed %d allocation(s), not all:\n", len(res.Allocations))
				}
				if len(res.Allocations) == 0 {
					return nil
				}
				return allocTable(w, res.Allocations)
			})
			if err != nil {
				return err
			}
			if failure != "" {
				return fmt.Errorf("job %q: placement failed: %s", res.JobID, failure)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once the job is acknowledged, without waiting for placement")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for placement")
	cmd.Flags().BoolVar(&noAuth, "no-auth", false, "do not send your registry logins with tasks that have no auth of their own")
	addFormatFlag(cmd)
	return cmd
}

// waitEval blocks until the evaluation leaves the pending state. The
// evaluation is committed with the job, but the server answering may be a
// follower that has not applied it yet: a 404 is retried until the timeout.
func waitEval(c *api.Client, evalID string, index uint64, timeout time.Duration) (*api.Evaluation, error) {
	deadline := time.Now().Add(timeout)
	var wait uint64
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("evaluation %s still pending after %s; see `berth job status`", shortID(evalID), timeout)
		}
		if left > 30*time.Second {
			left = 30 * time.Second
		}
		ev, meta, err := c.Evaluations().Info(evalID, &api.QueryOptions{WaitIndex: wait, WaitTime: left})
		switch {
		case api.IsNotFound(err):
			time.Sleep(50 * time.Millisecond)
			continue
		case err != nil:
			return nil, err
		}
		if ev.Status != api.EvalStatusPending && ev.Status != "" {
			return ev, nil
		}
		if meta.LastIndex > wait {
			wait = meta.LastIndex
		} else if wait < index {
			wait = index
		}
	}
}

// evalFailure explains why an evaluation did not place everything, or "".
func evalFailure(ev *api.Evaluation) string {
	var parts []string
	for _, g := range sortedKeys(ev.FailedTGAllocs) {
		parts = append(parts, fmt.Sprintf("group %q: %s", g, ev.FailedTGAllocs[g]))
	}
	if ev.Status == api.EvalStatusFailed && len(parts) == 0 {
		desc := ev.StatusDescription
		if desc == "" {
			desc = "the evaluation failed"
		}
		parts = append(parts, desc)
	}
	return strings.Join(parts, "; ")
}

func newJobPlanCmd() *cobra.Command {
	var noAuth bool
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "Show what submitting a job would place, without doing it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			job, err := loadJobFile(args[0], noAuth)
			if err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			plan, err := c.Jobs().Plan(job)
			if err != nil {
				return fmt.Errorf("plan job %q: %w", job.Name, err)
			}
			err = render(cmd, plan, func(w io.Writer) error {
				groups := map[string]bool{}
				for g := range plan.Placements {
					groups[g] = true
				}
				for g := range plan.Stops {
					groups[g] = true
				}
				for g := range plan.Failed {
					groups[g] = true
				}
				fmt.Fprintf(w, "Job %q:\n", jobID(job))
				t := newTable(w, "GROUP", "PLACE", "STOP", "FAILED")
				for _, g := range sortedKeys(groups) {
					t.Row(g, plan.Placements[g], plan.Stops[g], plan.Failed[g])
				}
				if err := t.Flush(); err != nil {
					return err
				}
				if len(plan.Nodes) > 0 {
					fmt.Fprintln(w)
					t = newTable(w, "NODE", "NEW ALLOCATIONS")
					for _, n := range sortedKeys(plan.Nodes) {
						t.Row(n, plan.Nodes[n])
					}
					return t.Flush()
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(plan.Failed) > 0 {
				var parts []string
				for _, g := range sortedKeys(plan.Failed) {
					parts = append(parts, fmt.Sprintf("group %q: %s", g, plan.Failed[g]))
				}
				return fmt.Errorf("job %q would not be fully placed: %s", jobID(job), strings.Join(parts, "; "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noAuth, "no-auth", false, "do not send your registry logins with tasks that have no auth of their own")
	addFormatFlag(cmd)
	return cmd
}

func newJobListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List jobs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			jobs, _, err := c.Jobs().List(nil)
			if err != nil {
				return fmt.Errorf("list jobs: %w", err)
			}
			sort.Slice(jobs, func(i, j int) bool { return jobID(jobs[i]) < jobID(jobs[j]) })
			if jobs == nil {
				jobs = []*api.Job{}
			}
			return render(cmd, jobs, func(w io.Writer) error {
				t := newTable(w, "ID", "TYPE", "PRIORITY", "STATUS", "VERSION", "GROUPS", "SUBMITTED")
				for _, j := range jobs {
					t.Row(jobID(j), j.Type, j.Priority, jobStatusWord(j), j.Version, len(j.Groups), since(j.SubmitTime))
				}
				return t.Flush()
			})
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func jobStatusWord(j *api.Job) string {
	s := j.Status
	if s == "" {
		s = api.JobStatusPending
	}
	if j.Stop && s != api.JobStatusDead {
		s += " (stopped)"
	}
	return s
}

// jobStatusResult is what `job status --format json` prints.
type jobStatusResult struct {
	Job         *api.Job          `json:"job"`
	Allocations []*api.Allocation `json:"allocations"`
}

func newJobStatusCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a job and its allocations",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			job, _, err := c.Jobs().Info(args[0], nil)
			if err != nil {
				return fmt.Errorf("job %q: %w", args[0], err)
			}
			allocs, _, err := c.Jobs().Allocations(jobID(job), nil)
			if err != nil {
				return fmt.Errorf("allocations of job %q: %w", args[0], err)
			}
			if allocs == nil {
				allocs = []*api.Allocation{}
			}
			shown := allocs
			if !all {
				shown = nil
				for _, a := range allocs {
					if !a.Terminal() {
						shown = append(shown, a)
					}
				}
			}
			return render(cmd, &jobStatusResult{Job: job, Allocations: allocs}, func(w io.Writer) error {
				var groups []string
				for _, g := range job.Groups {
					groups = append(groups, g.Name+"×"+strconv.Itoa(g.Count))
				}
				err := writeKV(w,
					[2]string{"ID", jobID(job)},
					[2]string{"Type", job.Type},
					[2]string{"Priority", strconv.Itoa(job.Priority)},
					[2]string{"Status", jobStatusWord(job)},
					[2]string{"Version", strconv.FormatUint(job.Version, 10)},
					[2]string{"Datacenters", strings.Join(job.Datacenters, ",")},
					[2]string{"Groups", strings.Join(groups, ", ")},
					[2]string{"Submitted", since(job.SubmitTime)},
				)
				if err != nil {
					return err
				}
				fmt.Fprintln(w)
				if len(shown) == 0 {
					fmt.Fprintln(w, "No allocations.")
					return nil
				}
				fmt.Fprintln(w, "Allocations")
				return allocTable(w, shown)
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show stopped and finished allocations too")
	addFormatFlag(cmd)
	return cmd
}

func newJobStopCmd() *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a job's allocations (--purge also forgets the job)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.Jobs().Deregister(args[0], purge)
			if err != nil {
				var se *api.StatusError
				if errors.As(err, &se) && se.Code == 404 {
					return fmt.Errorf("job %q not found; `berth job ls` lists jobs", args[0])
				}
				return fmt.Errorf("stop job %q: %w", args[0], err)
			}
			return render(cmd, resp, func(w io.Writer) error {
				verb := "stopped"
				if purge {
					verb = "stopped and purged"
				}
				fmt.Fprintf(w, "Job %q %s (evaluation %s, index %d)\n", args[0], verb, shortID(resp.EvalID), resp.Index)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "remove the job from the state once stopped")
	addFormatFlag(cmd)
	return cmd
}

// loadJobFile parses a job file and, unless noAuth, attaches the user's
// registry logins to tasks without credentials: job run and job plan use
// it alike, so a plan compares the job that run would submit.
func loadJobFile(path string, noAuth bool) (*api.Job, error) {
	job, err := jobspec.ParseFile(path)
	if err != nil {
		return nil, err
	}
	if !noAuth {
		if err := attachLoginAuth(job); err != nil {
			return nil, err
		}
	}
	return job, nil
}
