//go:build cgo && !nogpu

package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// nvmlBus writes a bus ID the way NVML's PciInfo.BusId holds it.
func nvmlBus(s string) [32]int8 {
	var b [32]int8
	for i, c := range []byte("0000" + s) { // NVML uses an 8-digit domain
		b[i] = int8(c)
	}
	return b
}

// fakeHost returns a mock server whose GPUs report their PCI bus IDs
// (the fakes leave BusId empty) and a sysfs tree putting GPUs 0-3 on NUMA
// node 0 and 4-7 on node 1.
func fakeHost(t *testing.T, s *server.Server) (*Discoverer, []*server.Device) {
	t.Helper()
	sys := t.TempDir()
	var devs []*server.Device
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		devs = append(devs, dev)
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{PciDeviceId: dev.Config.PciDeviceId, BusId: nvmlBus(dev.PciBusID)}, nvml.SUCCESS
		}
		dir := filepath.Join(sys, "bus/pci/devices", dev.PciBusID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "numa_node"), fmt.Appendf(nil, "%d\n", i/4), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The fake says every symbol exists but has no GetNumaNodeId: make the
	// lookup honest so sysfs is used.
	s.LookupSymbolFunc = func(sym string) error {
		if sym == "nvmlDeviceGetNumaNodeId" {
			return errors.New("not found")
		}
		return nil
	}
	d := New(s)
	d.SysfsRoot = sys
	return d, devs
}

func TestDevicesDGX(t *testing.T) {
	tests := []struct {
		name   string
		server *server.Server
		model  string
		memMiB uint64
		cc     string
	}{
		{"dgxa100", dgxa100.New(), "Mock NVIDIA A100-SXM4-40GB", 40960, "8.0"},
		{"dgxh100", dgxh100.New(), "NVIDIA H100 80GB HBM3", 81920, "9.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, fakes := fakeHost(t, tt.server)
			devs, err := d.Devices()
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != 8 {
				t.Fatalf("got %d devices, want 8", len(devs))
			}
			seen := map[string]bool{}
			for i, g := range devs {
				if g.Index != i || g.UUID != fakes[i].UUID || seen[g.UUID] {
					t.Errorf("device %d: index %d uuid %q, want %d %q (unique)", i, g.Index, g.UUID, i, fakes[i].UUID)
				}
				seen[g.UUID] = true
				if g.Model != tt.model || g.MemoryTotalMiB != tt.memMiB || g.ComputeCapability != tt.cc {
					t.Errorf("device %d: %q %d MiB cc %s, want %q %d %s", i, g.Model, g.MemoryTotalMiB, g.ComputeCapability, tt.model, tt.memMiB, tt.cc)
				}
				if want := fmt.Sprintf("0000:%02x:00.0", i); g.PCIBusID != want {
					t.Errorf("device %d: bus %q, want %q", i, g.PCIBusID, want)
				}
				if g.NUMANode != i/4 || g.Minor != i {
					t.Errorf("device %d: numa %d minor %d, want %d %d", i, g.NUMANode, g.Minor, i/4, i)
				}
				if g.DriverVersion == "" || g.CUDAVersion == "" || g.MIGEnabled || !g.Healthy || g.ParentUUID != "" {
					t.Errorf("device %d: %+v", i, g)
				}
			}
			if tt.name == "dgxa100" && (devs[0].DriverVersion != "550.54.15" || devs[0].CUDAVersion != "12.4") {
				t.Errorf("driver %q cuda %q, want 550.54.15 12.4", devs[0].DriverVersion, devs[0].CUDAVersion)
			}
		})
	}
}

// attachMIGHandles makes a fake GPU hand out MIG device handles for the
// compute instances created on it, as the driver does: the fakes keep
// GPU and compute instances but have no MIG device handles.
func attachMIGHandles(dev *server.Device) map[[2]int]string {
	type mig struct {
		gi, ci int
		mem    uint64
	}
	dev.RLock()
	var ms []mig
	for gi := range dev.GpuInstances {
		prof := dev.Config.MIGProfiles.GpuInstanceProfiles[int(gi.Info.ProfileId)]
		for ci := range gi.ComputeInstances {
			ms = append(ms, mig{int(gi.Info.Id), int(ci.Info.Id), prof.MemorySizeMB})
		}
	}
	dev.RUnlock()
	sort.Slice(ms, func(i, j int) bool { return ms[i].gi < ms[j].gi || ms[i].gi == ms[j].gi && ms[i].ci < ms[j].ci })
	uuids := map[[2]int]string{}
	handles := make([]nvml.Device, len(ms))
	for i, m := range ms {
		uuid := fmt.Sprintf("MIG-%s-%d-%d", dev.UUID[4:], m.gi, m.ci)
		uuids[[2]int{m.gi, m.ci}] = uuid
		handles[i] = &mock.Device{
			GetUUIDFunc:              func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
			GetGpuInstanceIdFunc:     func() (int, nvml.Return) { return m.gi, nvml.SUCCESS },
			GetComputeInstanceIdFunc: func() (int, nvml.Return) { return m.ci, nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
				return nvml.Memory{Total: m.mem << 20}, nvml.SUCCESS
			},
		}
	}
	dev.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	dev.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i < 0 || i >= len(handles) {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return handles[i], nvml.SUCCESS
	}
	return uuids
}

// splitMIG turns MIG on for dev and creates 1g.5gb ×2 and a 3g.20gb GPU
// instance, the latter with a full and a 1-slice compute instance.
func splitMIG(t *testing.T, dev *server.Device) map[[2]int]string {
	t.Helper()
	if ret, _ := dev.SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	mk := func(giProfile int, ciProfiles ...int) {
		info, ret := dev.GetGpuInstanceProfileInfo(giProfile)
		if ret != nvml.SUCCESS {
			t.Fatal(ret)
		}
		gi, ret := dev.CreateGpuInstance(&info)
		if ret != nvml.SUCCESS {
			t.Fatal(ret)
		}
		for _, cp := range ciProfiles {
			ci, ret := gi.GetComputeInstanceProfileInfo(cp, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
			if ret != nvml.SUCCESS {
				t.Fatal(ret)
			}
			if _, ret := gi.CreateComputeInstance(&ci); ret != nvml.SUCCESS {
				t.Fatal(ret)
			}
		}
	}
	mk(nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.COMPUTE_INSTANCE_PROFILE_1_SLICE)
	mk(nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.COMPUTE_INSTANCE_PROFILE_1_SLICE)
	mk(nvml.GPU_INSTANCE_PROFILE_3_SLICE, nvml.COMPUTE_INSTANCE_PROFILE_3_SLICE, nvml.COMPUTE_INSTANCE_PROFILE_1_SLICE)
	return attachMIGHandles(dev)
}

func TestMIGInstances(t *testing.T) {
	d, fakes := fakeHost(t, dgxa100.New())
	uuids := splitMIG(t, fakes[2])
	devs, err := d.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8+4 {
		t.Fatalf("got %d devices, want 8 GPUs + 4 MIG instances", len(devs))
	}
	parent := devs[2]
	if parent.UUID != fakes[2].UUID || !parent.MIGEnabled || parent.ParentUUID != "" {
		t.Fatalf("GPU 2: %+v", parent)
	}
	want := []struct {
		gi, ci  int
		profile string
		mem     uint64
	}{
		{0, 0, "1g.5gb", 4864}, {1, 0, "1g.5gb", 4864}, {2, 0, "3g.20gb", 19968}, {2, 1, "1c.3g.20gb", 19968},
	}
	for i, w := range want {
		m := devs[3+i]
		if m.UUID != uuids[[2]int{w.gi, w.ci}] || m.ParentUUID != parent.UUID || m.MIGProfile != w.profile ||
			m.MemoryTotalMiB != w.mem || m.GPUInstanceID != w.gi || m.ComputeInstanceID != w.ci || m.Index != 2 || m.Minor != 2 {
			t.Errorf("MIG %d: %+v, want gi %d ci %d %s %d MiB", i, m, w.gi, w.ci, w.profile, w.mem)
		}
	}
	if devs[7].UUID != fakes[3].UUID {
		t.Errorf("GPU 3 should follow GPU 2's instances, got %s", devs[7].UUID)
	}
}

func TestMIGProfileName(t *testing.T) {
	tests := []struct {
		name string
		p    migProfile
		tot  uint64
		want string
	}{
		{"a100-40 1g", migProfile{nvml.GPU_INSTANCE_PROFILE_1_SLICE, 1, 1, 4864}, 40960, "1g.5gb"},
		{"a100-40 1g+me", migProfile{nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1, 1, 1, 4864}, 40960, "1g.5gb+me"},
		{"a100-40 1g.10gb", migProfile{nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV2, 1, 1, 9856}, 40960, "1g.10gb"},
		{"a100-40 7g", migProfile{nvml.GPU_INSTANCE_PROFILE_7_SLICE, 7, 7, 40192}, 40960, "7g.40gb"},
		{"a100-80 7g", migProfile{nvml.GPU_INSTANCE_PROFILE_7_SLICE, 7, 7, 80896}, 81920, "7g.80gb"},
		{"h100 1g", migProfile{nvml.GPU_INSTANCE_PROFILE_1_SLICE, 1, 1, 9856}, 81559, "1g.10gb"},
		{"2c.4g", migProfile{nvml.GPU_INSTANCE_PROFILE_4_SLICE, 4, 2, 19968}, 40960, "2c.4g.20gb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.name(tt.tot); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// wireNVLink gives each GPU 12 links. direct: 4 links to each of the
// other GPUs of its group of four (0-3, 4-7). Otherwise all links go to an
// NVSwitch and P2P over NVLink works within the group.
func wireNVLink(devs []*server.Device, direct bool) {
	group := func(i int) []int {
		base := i / 4 * 4
		var g []int
		for j := base; j < base+4; j++ {
			if j != i {
				g = append(g, j)
			}
		}
		return g
	}
	for i, dev := range devs {
		peers := group(i)
		dev.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
			if link >= 12 {
				return nvml.FEATURE_DISABLED, nvml.ERROR_INVALID_ARGUMENT
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		dev.GetNvLinkRemotePciInfoFunc = func(link int) (nvml.PciInfo, nvml.Return) {
			if !direct {
				return nvml.PciInfo{BusId: nvmlBus(fmt.Sprintf("0000:c%d:00.0", link%6))}, nvml.SUCCESS
			}
			return nvml.PciInfo{BusId: nvmlBus(devs[peers[link%3]].PciBusID)}, nvml.SUCCESS
		}
		dev.GetP2PStatusFunc = func(o nvml.Device, idx nvml.GpuP2PCapsIndex) (nvml.GpuP2PStatus, nvml.Return) {
			if idx == nvml.P2P_CAPS_INDEX_NVLINK && slices.Contains(peers, o.(*server.Device).Index) {
				return nvml.P2P_STATUS_OK, nvml.SUCCESS
			}
			return nvml.P2P_STATUS_NOT_SUPPORTED, nvml.SUCCESS
		}
		dev.GetTopologyCommonAncestorFunc = func(o nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
			if o.(*server.Device).Index/4 == i/4 {
				return nvml.TOPOLOGY_NODE, nvml.SUCCESS
			}
			return nvml.TOPOLOGY_SYSTEM, nvml.SUCCESS
		}
	}
}

func TestNVLinkTopology(t *testing.T) {
	tests := []struct {
		name   string
		direct bool
		nv     string
	}{
		{"direct links", true, "NV4"},
		{"nvswitch", false, "NV12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, fakes := fakeHost(t, dgxa100.New())
			wireNVLink(fakes, tt.direct)
			devs, err := d.Devices()
			if err != nil {
				t.Fatal(err)
			}
			for i, g := range devs {
				var want []string
				for j := i / 4 * 4; j < i/4*4+4; j++ {
					if j != i {
						want = append(want, fakes[j].UUID)
					}
				}
				if !slices.Equal(g.NVLinkPeers, want) {
					t.Errorf("GPU %d peers %v, want %v", i, g.NVLinkPeers, want)
				}
			}
			topo, err := d.Topology()
			if err != nil {
				t.Fatal(err)
			}
			for i := range 8 {
				for j := range 8 {
					want := "SYS"
					switch {
					case i == j:
						want = "X"
					case i/4 == j/4:
						want = tt.nv
					}
					if got := topo.Links[i][j]; got != want {
						t.Errorf("topo[%d][%d] = %q, want %q", i, j, got, want)
					}
				}
			}
			t.Logf("\n%s", topo)
		})
	}
}

func TestNoNVLinkSupport(t *testing.T) {
	// The fakes leave NVLink calls unset (they panic); discovery treats
	// them as unsupported and the topology falls back to PCIe.
	d, fakes := fakeHost(t, dgxa100.New())
	for _, dev := range fakes {
		dev.GetTopologyCommonAncestorFunc = func(nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
			return nvml.TOPOLOGY_HOSTBRIDGE, nvml.SUCCESS
		}
	}
	devs, err := d.Devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range devs {
		if g.NVLinkPeers != nil {
			t.Errorf("%s: peers %v without NVLink", g.UUID, g.NVLinkPeers)
		}
	}
	topo, err := d.Topology()
	if err != nil {
		t.Fatal(err)
	}
	if topo.Links[0][1] != "PHB" || topo.Links[0][0] != "X" {
		t.Errorf("topology row 0: %v", topo.Links[0])
	}
}

// eventFeed is a fake NVML event set fed from a channel.
type eventFeed struct {
	ch         chan nvml.EventData
	mu         sync.Mutex
	registered map[int]uint64
}

func wireEvents(s *server.Server, devs []*server.Device) *eventFeed {
	f := &eventFeed{ch: make(chan nvml.EventData, 8), registered: map[int]uint64{}}
	set := &mock.EventSet{
		WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
			select {
			case e := <-f.ch:
				return e, nvml.SUCCESS
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
		},
		FreeFunc: func() nvml.Return { return nvml.SUCCESS },
	}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return set, nvml.SUCCESS }
	for _, dev := range devs {
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
			return nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError, nvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(types uint64, es nvml.EventSet) nvml.Return {
			f.mu.Lock()
			f.registered[dev.Index] = types
			f.mu.Unlock()
			return nvml.SUCCESS
		}
	}
	return f
}

func TestXidMarksUnhealthy(t *testing.T) {
	s := dgxa100.New()
	d, fakes := fakeHost(t, s)
	d.WaitMillis = 20
	migs := splitMIG(t, fakes[6])
	feed := wireEvents(s, fakes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type hit struct {
		uuid string
		xid  uint64
	}
	hits := make(chan hit, 8)
	done := make(chan error, 1)
	go func() { done <- d.Watch(ctx, func(u string, x uint64) { hits <- hit{u, x} }) }()

	none := uint32(noInstance)
	feed.ch <- nvml.EventData{Device: fakes[1], EventType: nvml.EventTypeXidCriticalError, EventData: 13, GpuInstanceId: none, ComputeInstanceId: none} // app error: ignored
	feed.ch <- nvml.EventData{Device: fakes[3], EventType: nvml.EventTypeXidCriticalError, EventData: 79, GpuInstanceId: none, ComputeInstanceId: none} // fell off the bus
	feed.ch <- nvml.EventData{Device: fakes[6], EventType: nvml.EventTypeXidCriticalError, EventData: 94, GpuInstanceId: 1, ComputeInstanceId: 0}       // one MIG instance
	want := []hit{{fakes[3].UUID, 79}, {migs[[2]int{1, 0}], 94}}
	for _, w := range want {
		select {
		case h := <-hits:
			if h != w {
				t.Fatalf("onXid(%v), want %v", h, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no onXid for %v", w)
		}
	}
	devs, err := d.Devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range devs {
		sick := g.UUID == fakes[3].UUID || g.UUID == migs[[2]int{1, 0}]
		if g.Healthy == sick {
			t.Errorf("%s (parent %q): healthy=%v", g.UUID, g.ParentUUID, g.Healthy)
		}
		if sick && g.LastXid == 0 {
			t.Errorf("%s: no Xid recorded", g.UUID)
		}
	}
	feed.mu.Lock()
	if len(feed.registered) != 8 || feed.registered[0] != nvml.EventTypeXidCriticalError {
		t.Errorf("registered %v, want Xid events on all 8 GPUs", feed.registered)
	}
	feed.mu.Unlock()

	// A whole-GPU failure takes its MIG instances with it.
	d.MarkUnhealthy(fakes[6].UUID, 48)
	devs, _ = d.Devices()
	for _, g := range devs {
		if (g.UUID == fakes[6].UUID || g.ParentUUID == fakes[6].UUID) && g.Healthy {
			t.Errorf("%s still healthy after its GPU failed", g.UUID)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestWatchWithoutEvents(t *testing.T) {
	// The fakes have no event sets: Watch says so instead of spinning.
	d, _ := fakeHost(t, dgxa100.New())
	if err := d.Watch(context.Background(), nil); !errors.Is(err, ErrNoEvents) {
		t.Fatalf("got %v, want ErrNoEvents", err)
	}
}

func TestOpenWithoutDriver(t *testing.T) {
	if _, err := os.Stat("/proc/driver/nvidia"); err == nil {
		t.Skip("this host has the NVIDIA driver")
	}
	d, err := Open()
	if !errors.Is(err, ErrNoDriver) || d != nil {
		t.Fatalf("Open() = %v, %v; want nil, ErrNoDriver", d, err)
	}
	t.Log(err)
}

func TestOpenInitFailures(t *testing.T) {
	tests := []struct {
		name string
		init func() nvml.Return
		want error
	}{
		{"library missing", func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }, ErrNoDriver},
		{"module not loaded", func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }, ErrNoDriver},
		{"panicking init", func() nvml.Return { panic("boom") }, ErrNoDriver},
		{"other failure", func() nvml.Return { return nvml.ERROR_UNKNOWN }, ErrNVML},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := open(&mock.Interface{InitFunc: tt.init})
			if d != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want %v", d, err, tt.want)
			}
		})
	}
	s := dgxa100.New()
	d, err := open(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStats(t *testing.T) {
	d, fakes := fakeHost(t, dgxa100.New())
	for i, dev := range fakes {
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 * i), Memory: uint32(i)}, nvml.SUCCESS
		}
		dev.MemoryInfo.Used = uint64(i) << 30
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 8 {
		t.Fatalf("got %d stats", len(st))
	}
	for i, s := range st {
		if s.UUID != fakes[i].UUID || s.GPUUtilPercent != uint32(10*i) || s.MemUtilPercent != uint32(i) ||
			s.MemoryUsedMiB != uint64(i)<<10 || s.MemoryTotalMiB != 40960 {
			t.Errorf("stat %d: %+v", i, s)
		}
	}
	devs, _ := d.Devices()
	if devs[5].MemoryUsedMiB != 5<<10 {
		t.Errorf("device 5 used %d MiB, want %d", devs[5].MemoryUsedMiB, 5<<10)
	}
}

func TestGPULostStaysListedUnhealthy(t *testing.T) {
	s := dgxa100.New()
	d, fakes := fakeHost(t, s)
	d.WaitMillis = 20
	feed := wireEvents(s, fakes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hits := make(chan string, 1)
	go func() { _ = d.Watch(ctx, func(u string, _ uint64) { hits <- u }) }()
	lost := fakes[5]
	uuid := lost.UUID
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		feed.mu.Lock()
		n := len(feed.registered) // Watch read the handles before registering
		feed.mu.Unlock()
		if n == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Watch did not register for events")
		}
	}
	lost.GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	none := uint32(noInstance)
	feed.ch <- nvml.EventData{Device: lost, EventType: nvml.EventTypeXidCriticalError, EventData: 79, GpuInstanceId: none, ComputeInstanceId: none}
	select {
	case u := <-hits:
		if u != uuid {
			t.Fatalf("Xid reported for %s, want the lost GPU %s", u, uuid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no onXid for a GPU that no longer answers")
	}
	devs, err := d.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 || devs[5].UUID != uuid || devs[5].Healthy || devs[5].LastXid != 79 {
		t.Fatalf("lost GPU: %d devices, %+v", len(devs), devs[5])
	}
	for i, g := range devs {
		if i != 5 && !g.Healthy {
			t.Errorf("GPU %d unhealthy", i)
		}
	}
	// A GPU never seen answering cannot be named: discovery fails.
	if _, err := New(s).Devices(); !errors.Is(err, ErrNVML) {
		t.Errorf("fresh discovery with a lost GPU: %v, want ErrNVML", err)
	}
}
