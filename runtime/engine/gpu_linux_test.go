package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/container"
)

func mknodAt(t *testing.T, path string, major, minor uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	dev := int((major&0xfff)<<8 | minor&0xff | (minor&^0xff)<<12 | (major&^0xfff)<<32)
	if err := syscall.Mknod(path, syscall.S_IFCHR|0o666, dev); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o755); err != nil {
		t.Fatal(err)
	}
}

func gpuUUID(i int) string { return fmt.Sprintf("GPU-%08d-1111-2222-3333-444444444444", i) }

// fakeGPUTree is a host with 4 GPUs whose nodes reuse /dev/null's,
// /dev/zero's, /dev/full's and /dev/random's numbers (so a container can
// really open the one it gets), nvidiactl as /dev/urandom's, the driver's
// information files, libcuda behind its soname link, and nvidia-smi.
func fakeGPUTree(t *testing.T) gpuHost {
	t.Helper()
	testutil.RequireRoot(t)
	root := t.TempDir()
	nums := [][2]uint64{{1, 3}, {1, 5}, {1, 7}, {1, 8}}
	for i, n := range nums {
		mknodAt(t, filepath.Join(root, fmt.Sprintf("dev/nvidia%d", i)), n[0], n[1])
		writeAt(t, filepath.Join(root, fmt.Sprintf("proc/driver/nvidia/gpus/0000:%02x:00.0/information", i+1)),
			fmt.Sprintf("Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t %s\nDevice Minor: \t %d\n", gpuUUID(i), i))
	}
	mknodAt(t, filepath.Join(root, "dev/nvidiactl"), 1, 9)
	lib := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	writeAt(t, filepath.Join(lib, "libcuda.so.550.54.15"), "not really ELF")
	if err := os.Symlink("libcuda.so.550.54.15", filepath.Join(lib, "libcuda.so.1")); err != nil {
		t.Fatal(err)
	}
	writeAt(t, filepath.Join(root, "usr/bin/nvidia-smi"), "#!/bin/sh\necho fake nvidia-smi\n")
	ld := "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n"
	return gpuHost{Root: root, Ldconfig: func() ([]byte, error) { return []byte(ld), nil }}
}

func TestApplyGPUsLegacy(t *testing.T) {
	h := fakeGPUTree(t)
	spec := &container.Spec{Env: []string{"PATH=/bin", "CUDA_VISIBLE_DEVICES=stale"}}
	if err := h.apply([]string{gpuUUID(1), gpuUUID(3)}, spec); err != nil {
		t.Fatal(err)
	}
	want := []container.Device{
		{Path: "/dev/nvidia1", Type: 'c', Major: 1, Minor: 5, FileMode: 0o666},
		{Path: "/dev/nvidia3", Type: 'c', Major: 1, Minor: 8, FileMode: 0o666},
		{Path: "/dev/nvidiactl", Type: 'c', Major: 1, Minor: 9, FileMode: 0o666},
	}
	if !slices.Equal(spec.Devices, want) {
		t.Errorf("devices:\n got %+v\nwant %+v", spec.Devices, want)
	}
	real := filepath.Join(h.Root, "usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15")
	wantMounts := []container.Mount{
		{Type: "bind", Source: real, Destination: "/usr/lib/x86_64-linux-gnu/libcuda.so.1", ReadOnly: true},
		{Type: "bind", Source: real, Destination: "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", ReadOnly: true},
		{Type: "bind", Source: filepath.Join(h.Root, "usr/bin/nvidia-smi"), Destination: "/usr/bin/nvidia-smi", ReadOnly: true},
	}
	if !slices.EqualFunc(spec.Mounts, wantMounts, func(a, b container.Mount) bool {
		return a.Type == b.Type && a.Source == b.Source && a.Destination == b.Destination && a.ReadOnly == b.ReadOnly
	}) {
		t.Errorf("mounts:\n got %+v\nwant %+v", spec.Mounts, wantMounts)
	}
	list := gpuUUID(1) + "," + gpuUUID(3)
	for _, v := range []string{"PATH=/bin", "NVIDIA_VISIBLE_DEVICES=" + list, "CUDA_VISIBLE_DEVICES=" + list} {
		if !slices.Contains(spec.Env, v) {
			t.Errorf("env %v lacks %s", spec.Env, v)
		}
	}
	if slices.Contains(spec.Env, "CUDA_VISIBLE_DEVICES=stale") {
		t.Errorf("env kept the image's CUDA_VISIBLE_DEVICES: %v", spec.Env)
	}
	if err := h.apply([]string{"GPU-not-here"}, &container.Spec{}); err == nil {
		t.Error("an unknown GPU was accepted")
	}
}

const cdiSpec = `cdiVersion: "0.6.0"
kind: nvidia.com/gpu
devices:
  - name: "%[2]s"
    containerEdits:
      deviceNodes:
        - path: /dev/nvidia2
          hostPath: %[1]s/dev/nvidia2
          type: c
          major: 1
          minor: 7
  - name: "2"
    containerEdits:
      deviceNodes:
        - path: /dev/nvidia2
          hostPath: %[1]s/dev/nvidia2
          type: c
          major: 1
          minor: 7
containerEdits:
  env:
    - NVIDIA_VISIBLE_DEVICES=void
  deviceNodes:
    - path: /dev/nvidiactl
      hostPath: %[1]s/dev/nvidiactl
      type: c
      major: 1
      minor: 9
  mounts:
    - hostPath: %[1]s/usr/bin/nvidia-smi
      containerPath: /usr/bin/nvidia-smi
      options: [ro, nosuid, nodev, bind]
  hooks:
    - hookName: createContainer
      path: /usr/bin/nvidia-cdi-hook
      args: [nvidia-cdi-hook, update-ldcache]
`

func TestApplyGPUsCDI(t *testing.T) {
	h := fakeGPUTree(t)
	writeAt(t, filepath.Join(h.Root, "etc/cdi/nvidia.yaml"), fmt.Sprintf(cdiSpec, h.Root, gpuUUID(2)))
	spec := &container.Spec{Env: []string{"PATH=/bin"}}
	if err := h.apply([]string{gpuUUID(2)}, spec); err != nil {
		t.Fatal(err)
	}
	want := []container.Device{
		{Path: "/dev/nvidiactl", Type: 'c', Major: 1, Minor: 9, FileMode: 0o666},
		{Path: "/dev/nvidia2", Type: 'c', Major: 1, Minor: 7, FileMode: 0o666},
	}
	slices.SortFunc(spec.Devices, func(a, b container.Device) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(want, func(a, b container.Device) int { return strings.Compare(a.Path, b.Path) })
	if !slices.EqualFunc(spec.Devices, want, func(a, b container.Device) bool {
		return a.Path == b.Path && a.Type == b.Type && a.Major == b.Major && a.Minor == b.Minor
	}) {
		t.Errorf("devices:\n got %+v\nwant %+v", spec.Devices, want)
	}
	if len(spec.Mounts) != 1 || spec.Mounts[0].Destination != "/usr/bin/nvidia-smi" || !spec.Mounts[0].ReadOnly {
		t.Errorf("mounts %+v: want nvidia-smi read-only only (no legacy library mounts)", spec.Mounts)
	}
	if !slices.Contains(spec.Env, "NVIDIA_VISIBLE_DEVICES="+gpuUUID(2)) || !slices.Contains(spec.Env, "PATH=/bin") {
		t.Errorf("env %v", spec.Env)
	}

	// A GPU the CDI spec does not name goes the legacy way.
	spec = &container.Spec{}
	if err := h.apply([]string{gpuUUID(0)}, spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Devices) != 2 || spec.Devices[0].Path != "/dev/nvidia0" || len(spec.Mounts) != 3 {
		t.Errorf("legacy fallback: devices %+v mounts %+v", spec.Devices, spec.Mounts)
	}
}

// TestGPUContainerSeesOnlyItsDevice runs busybox with GPU 2 of the fake
// host. GPU 2's node has /dev/cpu_dma_latency's numbers and GPU 0's
// /dev/kmsg's, both outside the device cgroup's default allowlist. In the
// container /dev holds GPU 2's node and nvidiactl and no other GPU's; GPU
// 2's node opens (its cgroup rule was added); a node the container makes
// itself with GPU 0's numbers does not open; the variables are set and
// nvidia-smi is mounted read-only.
func TestGPUContainerSeesOnlyItsDevice(t *testing.T) {
	h := fakeGPUTree(t)
	var lat, kmsg syscall.Stat_t
	if syscall.Stat("/dev/cpu_dma_latency", &lat) != nil || syscall.Stat("/dev/kmsg", &kmsg) != nil {
		t.Skip("needs /dev/cpu_dma_latency and /dev/kmsg as stand-ins for GPUs")
	}
	devNum := func(rdev uint64) (uint64, uint64) {
		return (rdev>>8)&0xfff | (rdev>>32)&^uint64(0xfff), rdev&0xff | (rdev>>12)&^uint64(0xff)
	}
	for i, st := range map[int]*syscall.Stat_t{0: &kmsg, 2: &lat} {
		p := filepath.Join(h.Root, fmt.Sprintf("dev/nvidia%d", i))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		ma, mi := devNum(uint64(st.Rdev))
		mknodAt(t, p, ma, mi)
	}
	g0ma, g0mi := devNum(uint64(kmsg.Rdev))
	old := hostGPUs
	hostGPUs = h
	t.Cleanup(func() { hostGPUs = old })
	e := newEngine(t)
	id := strings.Repeat("9a", 32)
	script := fmt.Sprintf(`ls /dev/nvidia*
head -c 4 /dev/nvidia2 | wc -c
mknod /tmp/g0 c %d %d && { head -c 1 /tmp/g0 >/dev/null 2>&1 && echo g0-opened || echo g0-denied; }
echo vis=$NVIDIA_VISIBLE_DEVICES cuda=$CUDA_VISIBLE_DEVICES
test -r /usr/bin/nvidia-smi && echo smi
touch /usr/bin/nvidia-smi 2>/dev/null || echo ro`, g0ma, g0mi)
	task := &api.Task{Name: "gpu", Image: "busybox", Command: []string{"sh", "-c", script}}
	if _, err := e.Create(context.Background(), &TaskRequest{ID: id, Name: "gpu", Task: task, GPUs: []string{gpuUUID(2)}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Remove(id, true) })
	if err := e.Start(id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	out := logsOf(t, e, id)
	want := "/dev/nvidia2\n/dev/nvidiactl\n4\ng0-denied\nvis=" + gpuUUID(2) + " cuda=" + gpuUUID(2) + "\nsmi\nro\n"
	if st.Code != 0 || out != want {
		t.Fatalf("exit %d, output:\n%s\nwant:\n%s", st.Code, out, want)
	}
}

func logsOf(t *testing.T, e *Engine, id string) string {
	t.Helper()
	rc, err := e.Containers.Logs(id, container.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out strings.Builder
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		var le api.LogEntry
		if err := json.Unmarshal(sc.Bytes(), &le); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out.WriteString(le.Log)
	}
	return out.String()
}
