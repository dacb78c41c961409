//go:build cgo && !nogpu

package gpu

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// TestEditsMIG gives a container one MIG instance of GPU 1 the legacy
// way: the parent's node, the two nvidia-caps nodes that grant its GPU
// and compute instance (found through /proc/driver/nvidia/capabilities),
// and nvidiactl; no other GPU's node.
func TestEditsMIG(t *testing.T) {
	needRoot(t)
	h, _ := fakeGPUHost(t)
	d, fakes := fakeHost(t, dgxa100.New())
	migs := splitMIG(t, fakes[1])
	h.Lib = d
	mig := migs[[2]int{2, 1}] // the 1c.3g.20gb instance
	caps := filepath.Join(h.Root, "proc/driver/nvidia/capabilities/gpu1/mig")
	writeFile(t, filepath.Join(caps, "gi2/access"), "DeviceFileMinor: 21\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
	writeFile(t, filepath.Join(caps, "gi2/ci1/access"), "DeviceFileMinor: 22\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
	for _, n := range []uint32{21, 22} {
		mknod(t, filepath.Join(h.Root, fmt.Sprintf("dev/nvidia-caps/nvidia-cap%d", n)), 237, n)
	}
	e, err := h.Edits([]string{mig})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, n := range e.DeviceNodes {
		paths = append(paths, fmt.Sprintf("%s %d:%d", n.Path, n.Major, n.Minor))
	}
	want := []string{"/dev/nvidia1 195:1", "/dev/nvidia-caps/nvidia-cap21 237:21", "/dev/nvidia-caps/nvidia-cap22 237:22", "/dev/nvidiactl 195:255", "/dev/nvidia-uvm 508:0"}
	if !slices.Equal(paths, want) {
		t.Errorf("device nodes %v, want %v", paths, want)
	}
	if !slices.Contains(e.Env, "NVIDIA_VISIBLE_DEVICES="+mig) {
		t.Errorf("env %v", e.Env)
	}

	// Without the capability files the instance cannot be isolated: refuse.
	if _, err := h.Edits([]string{migs[[2]int{0, 0}]}); err == nil {
		t.Error("a MIG instance without capability files was given out")
	}
}
