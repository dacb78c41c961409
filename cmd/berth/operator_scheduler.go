package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/consensus"
)

const schedConfigPath = "/v1/operator/scheduler/configuration"

// newOperatorSchedulerCmd is `berth operator scheduler`, registered under
// the operator command.
func newOperatorSchedulerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Show and change the cluster-wide scheduler configuration",
	}
	cmd.AddCommand(newSchedGetConfigCmd(), newSchedSetConfigCmd())
	return cmd
}

func renderSchedConfig(cmd *cobra.Command, sc *consensus.SchedulerConfig) error {
	return render(cmd, sc, func(w io.Writer) error {
		t := newTable(w, "ALGORITHM", "PREEMPTION", "MODIFY INDEX")
		t.Row(sc.Algorithm, sc.PreemptionEnabled, sc.ModifyIndex)
		return t.Flush()
	})
}

func newSchedGetConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get-config",
		Short: "Show the scheduler configuration (algorithm, preemption)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			var sc consensus.SchedulerConfig
			if _, err := c.Do(http.MethodGet, schedConfigPath, nil, nil, &sc); err != nil {
				return fmt.Errorf("read the scheduler configuration: %w", err)
			}
			return renderSchedConfig(cmd, &sc)
		},
	}
	addFormatFlag(cmd)
	return cmd
}

func newSchedSetConfigCmd() *cobra.Command {
	var algorithm, preemption string
	cmd := &cobra.Command{
		Use:   "set-config",
		Short: "Change the scheduler configuration",
		Long: `Change the cluster-wide scheduler configuration. Settings not given keep
their current value. It applies to every evaluation from the next one on.

  --algorithm binpack   fill nodes before using empty ones (the default)
  --algorithm spread    prefer the emptiest nodes
  --preemption true     let a job evict allocations of jobs at least 10
                        priority lower when nothing else fits`,
		Example: `  berth operator scheduler set-config --algorithm spread
  berth operator scheduler set-config --preemption true`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			if !cmd.Flags().Changed("algorithm") && !cmd.Flags().Changed("preemption") {
				return fmt.Errorf("set-config: give --algorithm and/or --preemption")
			}
			switch algorithm {
			case "", consensus.AlgorithmBinpack, consensus.AlgorithmSpread:
			default:
				return fmt.Errorf("--algorithm: %q is not a scheduler algorithm: use binpack or spread", algorithm)
			}
			var preempt *bool
			if cmd.Flags().Changed("preemption") {
				switch preemption {
				case "true", "on", "yes":
					preempt = new(bool)
					*preempt = true
				case "false", "off", "no":
					preempt = new(bool)
				default:
					return fmt.Errorf("--preemption: %q is not true or false", preemption)
				}
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			var sc consensus.SchedulerConfig
			if _, err := c.Do(http.MethodGet, schedConfigPath, nil, nil, &sc); err != nil {
				return fmt.Errorf("read the scheduler configuration: %w", err)
			}
			if algorithm != "" {
				sc.Algorithm = algorithm
			}
			if preempt != nil {
				sc.PreemptionEnabled = *preempt
			}
			var out consensus.SchedulerConfig
			if _, err := c.Do(http.MethodPut, schedConfigPath, nil, &sc, &out); err != nil {
				return fmt.Errorf("change the scheduler configuration: %w", err)
			}
			return renderSchedConfig(cmd, &out)
		},
	}
	cmd.Flags().StringVar(&algorithm, "algorithm", "", "binpack or spread")
	cmd.Flags().StringVar(&preemption, "preemption", "", "true or false")
	addFormatFlag(cmd)
	return cmd
}
