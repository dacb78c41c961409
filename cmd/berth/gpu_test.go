package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth/gpu"
)

func TestGPUTable(t *testing.T) {
	devs := []gpu.Device{
		{Index: 0, UUID: "GPU-a", Model: "NVIDIA H100 80GB HBM3", MemoryTotalMiB: 81559, PCIBusID: "0000:18:00.0", NUMANode: 0, Healthy: true, NVLinkPeers: []string{"GPU-b"}},
		{Index: 1, UUID: "GPU-b", Model: "NVIDIA H100 80GB HBM3", MemoryTotalMiB: 81559, NUMANode: -1, MIGEnabled: true, LastXid: 79},
		{Index: 1, UUID: "MIG-c", Model: "NVIDIA H100 80GB HBM3", MemoryTotalMiB: 9856, NUMANode: -1, MIGProfile: "1g.10gb", ParentUUID: "GPU-b", Healthy: true},
	}
	var b bytes.Buffer
	if err := gpuTable(&b, devs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", b.String())
	}
	for i, want := range [][]string{
		{"INDEX", "UUID", "MIG", "NVLINK PEERS", "HEALTHY"},
		{"GPU-a", "0000:18:00.0", " 1 ", "yes"},
		{"GPU-b", "enabled", "no (Xid 79)"},
		{"MIG-c", "1g.10gb", "yes"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
}

func TestGPULsWithoutDriver(t *testing.T) {
	if _, err := os.Stat("/proc/driver/nvidia"); err == nil {
		t.Skip("this host has the NVIDIA driver")
	}
	if code := run([]string{"gpu", "ls"}); code != 125 {
		t.Fatalf("berth gpu ls exited %d on a host without GPUs, want 125", code)
	}
}
