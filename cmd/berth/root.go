package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at link time by the Makefile.
var version = "dev"

var commands []func() *cobra.Command

// addCommand registers a top-level command constructor. Files under
// cmd/berth call it from init, so adding a command touches one file.
func addCommand(fn func() *cobra.Command) { commands = append(commands, fn) }

// exitError carries a specific exit status (a container's exit code, say)
// out of a command without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "Run containers on one host or a fleet",
		Long: `berth runs containers on one machine or across a fleet of machines.

Start everything on this machine with 'berth dev', then use the docker-style
commands (run, ps, logs, stop, rm, ...). The client talks to the server named
by BERTH_ADDR (default http://127.0.0.1:9470).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	for _, fn := range commands {
		root.AddCommand(fn())
	}
	return root
}

// run executes the command line and returns the process exit status:
// 0 on success, the carried code for an exitError, 125 for berth's own
// errors (as docker does) and 1 for usage errors.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "berth:", err)
	return 125
}
