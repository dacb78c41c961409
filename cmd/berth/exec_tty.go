package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

// execInteractive runs exec -i and/or -t: the command's input streams from
// this terminal (or pipe) as typed, on a new terminal in the container
// with -t. berth exits with the command's exit code.
func execInteractive(cmd *cobra.Command, ag *api.AgentClient, x *ctr, req *api.ExecRequest, tty, stdin bool) error {
	// Signals end the session, and so the command (not the container).
	code, err := interact(cmd, x.ID, tty, stdin, nil, func(ctx context.Context, o api.AttachOptions) (*api.AttachStream, error) {
		o.Logs = false
		return ag.ExecAttach(ctx, x.ID, req, tty, o)
	})
	if errors.Is(err, errDetached) {
		return nil
	}
	return exitWith(code, err)
}
