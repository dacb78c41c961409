package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

// newSystemGCCmd is `berth system gc`, registered under the system
// command.
func newSystemGCCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove finished evaluations, allocations of stopped jobs and dead batch jobs now",
		Long: `The leader removes old finished state every few minutes: evaluations that
completed or failed, finished allocations of stopped jobs, and batch jobs
that are done. Items are kept for an hour. 'berth system gc' removes all
of them at once, whatever their age.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			var resp api.WriteResponse
			if _, err := c.Do(http.MethodPut, "/v1/system/gc", nil, nil, &resp); err != nil {
				return fmt.Errorf("garbage collection: %w", err)
			}
			return render(cmd, &resp, func(w io.Writer) error {
				fmt.Fprintf(w, "Garbage collected (index %d)\n", resp.Index)
				return nil
			})
		},
	}
	addFormatFlag(cmd) // --address comes from the system command
	return cmd
}
