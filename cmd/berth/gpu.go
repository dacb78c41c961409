package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/gpu"
)

// `berth gpu ls` and `berth gpu topo` show what this host's agent would
// report, straight from NVML; `make gpu-check` compares them with
// nvidia-smi. Hidden: a diagnostic, not part of the docker-style surface.
func init() {
	addCommand(func() *cobra.Command {
		root := &cobra.Command{
			Use:    "gpu",
			Short:  "Show this host's GPUs as berth discovers them (diagnostics)",
			Hidden: true,
		}
		ls := &cobra.Command{
			Use:   "ls",
			Short: "List this host's GPUs and MIG instances",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if _, err := outputFormat(cmd); err != nil {
					return err
				}
				d, err := openHostGPUs()
				if err != nil {
					return err
				}
				defer d.Close()
				devs, err := d.Devices()
				if err != nil {
					return err
				}
				if devs == nil {
					devs = []gpu.Device{}
				}
				return render(cmd, devs, func(w io.Writer) error { return gpuTable(w, devs) })
			},
		}
		addFormatFlag(ls)
		topo := &cobra.Command{
			Use:   "topo",
			Short: "Print the GPU connection matrix (like nvidia-smi topo -m)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				d, err := openHostGPUs()
				if err != nil {
					return err
				}
				defer d.Close()
				t, err := d.Topology()
				if err != nil {
					return err
				}
				_, err = io.WriteString(cmd.OutOrStdout(), t.String())
				return err
			},
		}
		root.AddCommand(ls, topo)
		return root
	})
}

func openHostGPUs() (*gpu.Discoverer, error) {
	d, err := gpu.Open()
	if errors.Is(err, gpu.ErrNoDriver) {
		return nil, fmt.Errorf("no NVIDIA GPU found: %w", err)
	}
	return d, err
}

func gpuTable(w io.Writer, devs []gpu.Device) error {
	t := newTable(w, "INDEX", "UUID", "MODEL", "MEMORY", "MIG", "PCI", "NUMA", "NVLINK PEERS", "HEALTHY")
	for _, d := range devs {
		mig := "-"
		switch {
		case d.ParentUUID != "":
			mig = d.MIGProfile
		case d.MIGEnabled:
			mig = "enabled"
		}
		numa := "-"
		if d.NUMANode >= 0 {
			numa = strconv.Itoa(d.NUMANode)
		}
		health := "yes"
		switch {
		case !d.Healthy && d.LastXid != 0:
			health = fmt.Sprintf("no (Xid %d)", d.LastXid)
		case !d.Healthy:
			health = "no (not answering)"
		}
		t.Row(d.Index, d.UUID, d.Model, mib(int(d.MemoryTotalMiB)), mig, d.PCIBusID, numa, len(d.NVLinkPeers), health)
	}
	return t.Flush()
}
