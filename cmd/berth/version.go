package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/scheduler"
)

func init() {
	scheduler.Version = version
	addCommand(func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "version",
			Short: "Show the client's and the server's version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "Client:\n  Version: %s\n  Go:      %s\n  OS/Arch: %s/%s\n",
					version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				c, err := apiClient(cmd)
				if err != nil {
					return err
				}
				h, err := c.Health()
				if err != nil {
					fmt.Fprintf(out, "\nServer: unreachable at %s (%v)\n", c.Address(), err)
					return nil
				}
				fmt.Fprintf(out, "\nServer: %s\n  Version: %s\n  Leader:  %s\n", c.Address(), h.Version, h.Leader)
				return nil
			},
		}
		addAddressFlag(cmd)
		return cmd
	})
}
