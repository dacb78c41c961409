package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors returned by the package.
var (
	// ErrNoDriver means libnvidia-ml could not be loaded or NVML found no
	// driver: the host has no usable NVIDIA GPU. Callers report zero GPUs.
	ErrNoDriver = errors.New("gpu: no NVIDIA driver (libnvidia-ml could not be loaded or the kernel module is missing); install the NVIDIA driver to use GPUs on this host")
	// ErrNVML wraps a failed NVML call that discovery cannot do without.
	ErrNVML = errors.New("gpu: NVML call failed")
	// ErrUnknownDevice means a UUID names no GPU or MIG device of this host.
	ErrUnknownDevice = errors.New("gpu: no such GPU on this host; check the UUID with `berth gpu ls`")
	// ErrNoEvents means no GPU accepted Xid event registration, so Watch
	// cannot report failures.
	ErrNoEvents = errors.New("gpu: no GPU supports Xid event notification; health is not watched")
)

// Device is one GPU, or one MIG instance of a GPU (ParentUUID set).
type Device struct {
	Index             int    `json:"index"` // NVML index; for a MIG instance, its parent's index
	UUID              string `json:"uuid"`  // "GPU-…" or "MIG-…"
	Model             string `json:"model"` // "NVIDIA A100-SXM4-40GB"
	MemoryTotalMiB    uint64 `json:"memory_total_mib"`
	MemoryUsedMiB     uint64 `json:"memory_used_mib"`
	ComputeCapability string `json:"compute_capability"` // "8.0"
	PCIBusID          string `json:"pci_bus_id"`         // "0000:07:00.0": lower case, 4-digit domain, the sysfs form
	NUMANode          int    `json:"numa_node"`          // -1 when unknown
	Minor             int    `json:"minor"`              // N of /dev/nvidiaN (the parent's for a MIG instance); -1 when unknown
	DriverVersion     string `json:"driver_version"`     // "550.54.15"
	CUDAVersion       string `json:"cuda_version"`       // highest CUDA version the driver supports, "12.4"
	PowerLimitMW      uint32 `json:"power_limit_mw"`     // power management limit in milliwatts; 0 when unknown
	MIGEnabled        bool   `json:"mig_enabled"`        // MIG mode is on (for a GPU)

	// MIG instances only.
	MIGProfile        string `json:"mig_profile,omitempty"` // "1g.5gb", "1c.3g.20gb"
	ParentUUID        string `json:"parent_uuid,omitempty"`
	GPUInstanceID     int    `json:"gpu_instance_id"`
	ComputeInstanceID int    `json:"compute_instance_id"`

	NVLinkPeers []string `json:"nvlink_peers,omitempty"` // UUIDs of the GPUs reachable over NVLink
	Healthy     bool     `json:"healthy"`
	LastXid     uint64   `json:"last_xid,omitempty"` // the critical Xid that made it unhealthy
}

// Topology is the GPU↔GPU connection matrix `nvidia-smi topo -m` prints.
type Topology struct {
	UUIDs []string   // GPUs in index order
	Links [][]string // Links[i][j]: "X", "NV#", "PIX", "PXB", "PHB", "NODE", "SYS" or "?"
}

// String prints the matrix with GPU0… headers, like nvidia-smi topo -m.
func (t *Topology) String() string {
	var b strings.Builder
	b.WriteString("\t")
	for i := range t.UUIDs {
		fmt.Fprintf(&b, "GPU%d\t", i)
	}
	b.WriteString("\n")
	for i, row := range t.Links {
		fmt.Fprintf(&b, "GPU%d\t%s\t\n", i, strings.Join(row, "\t"))
	}
	return b.String()
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Stat is one device's utilization sample.
type Stat struct {
	UUID           string `json:"uuid"`
	Index          int    `json:"index"`
	GPUUtilPercent uint32 `json:"gpu_util_percent"` // percent of time a kernel ran over the last sample period
	MemUtilPercent uint32 `json:"mem_util_percent"` // percent of time device memory was read or written
	MemoryUsedMiB  uint64 `json:"memory_used_mib"`
	MemoryTotalMiB uint64 `json:"memory_total_mib"`
	PowerMW        uint32 `json:"power_mw"`      // current draw; 0 when unknown
	TemperatureC   uint32 `json:"temperature_c"` // 0 when unknown
}

// NormalizeBusID writes a PCI address as sysfs does: lower case with a
// 4-digit domain ("00000000:07:00.0" → "0000:07:00.0").
func NormalizeBusID(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if dom, rest, ok := strings.Cut(s, ":"); ok && len(dom) > 4 {
		if v, err := strconv.ParseUint(dom, 16, 32); err == nil {
			s = fmt.Sprintf("%04x:%s", v, rest)
		}
	}
	return s
}
