//go:build cgo && !nogpu

package gpu

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Discoverer reads GPUs through NVML. It is safe for concurrent use.
type Discoverer struct {
	lib nvml.Interface
	// SysfsRoot is where sysfs is mounted ("/sys"), read for a GPU's NUMA
	// node when NVML cannot say.
	SysfsRoot string
	// WaitMillis is how long one NVML event wait blocks in Watch (default
	// 1000): the bound on how long Watch takes to see its context end.
	WaitMillis uint32

	owned bool // Open initialised NVML and Close shuts it down
	mu    sync.Mutex
	sick  map[string]uint64 // UUID → Xid of devices marked unhealthy
	last  map[int]Device    // each GPU as last read, for when it stops answering
}

// New returns a Discoverer over lib, which the caller has initialised
// (go-nvml's mocks need no Init).
func New(lib nvml.Interface) *Discoverer {
	return &Discoverer{lib: lib, SysfsRoot: "/sys", WaitMillis: 1000, sick: map[string]uint64{}, last: map[int]Device{}}
}

// Open loads the host's libnvidia-ml, initialises NVML and returns a
// Discoverer over it. On a host without the NVIDIA driver it returns an
// error wrapping ErrNoDriver; it never panics.
func Open() (*Discoverer, error) {
	return open(nvml.New())
}

func open(lib nvml.Interface) (d *Discoverer, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("%w: NVML init: %v", ErrNoDriver, r)
		}
	}()
	switch ret := lib.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED, nvml.ERROR_NO_PERMISSION, nvml.ERROR_FUNCTION_NOT_FOUND:
		return nil, fmt.Errorf("%w: %s", ErrNoDriver, ret.Error())
	default:
		return nil, fmt.Errorf("%w: init: %s", ErrNVML, ret.Error())
	}
	d = New(lib)
	d.owned = true
	return d, nil
}

// Close shuts NVML down if Open initialised it.
func (d *Discoverer) Close() error {
	if !d.owned {
		return nil
	}
	d.owned = false
	if ret := d.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("%w: shutdown: %s", ErrNVML, ret.Error())
	}
	return nil
}

// optional runs an NVML call that a driver, a GPU or a fake may not have.
// go-nvml's mocks panic on a method nobody set; that, like
// ERROR_NOT_SUPPORTED, just means the answer is unknown.
func optional(f func() nvml.Return) (ret nvml.Return) {
	defer func() {
		if r := recover(); r != nil {
			ret = nvml.ERROR_NOT_SUPPORTED
		}
	}()
	return f()
}

func nvmlErr(what string, ret nvml.Return) error {
	return fmt.Errorf("%w: %s: %s", ErrNVML, what, ret.Error())
}

// gpuHandle is a whole GPU with its NVML handle, as discovery found it.
type gpuHandle struct {
	dev *Device
	h   nvml.Device
}

// Devices lists the host's GPUs in NVML index order, each followed by its
// MIG instances.
func (d *Discoverer) Devices() ([]Device, error) {
	gpus, migs, err := d.scan()
	if err != nil {
		return nil, err
	}
	out := make([]Device, 0, len(gpus)+len(migs))
	for _, g := range gpus {
		out = append(out, *g.dev)
		for _, m := range migs {
			if m.ParentUUID == g.dev.UUID {
				out = append(out, m)
			}
		}
	}
	d.mu.Lock()
	for i := range out {
		xid, sick := d.sick[out[i].UUID]
		if !sick && out[i].ParentUUID != "" {
			xid, sick = d.sick[out[i].ParentUUID]
		}
		out[i].Healthy = !sick
		out[i].LastXid = xid
	}
	d.mu.Unlock()
	return out, nil
}

func (d *Discoverer) scan() ([]gpuHandle, []Device, error) {
	n, ret := d.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nil, nvmlErr("device count", ret)
	}
	var driver, cuda string
	optional(func() nvml.Return {
		var r nvml.Return
		driver, r = d.lib.SystemGetDriverVersion()
		return r
	})
	optional(func() nvml.Return {
		v, r := d.lib.SystemGetCudaDriverVersion()
		if r == nvml.SUCCESS && v > 0 {
			cuda = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
		}
		return r
	})
	gpus := make([]gpuHandle, 0, n)
	var migs []Device
	for i := 0; i < n; i++ {
		h, ret := d.lib.DeviceGetHandleByIndex(i)
		var dev *Device
		err := nvmlErr(fmt.Sprintf("handle of GPU %d", i), ret)
		if ret == nvml.SUCCESS {
			dev, err = d.describe(i, h)
		}
		if err != nil {
			// A GPU that fell off the bus (Xid 79) no longer answers. One
			// seen before stays listed, unhealthy, so the scheduler knows
			// it is gone rather than wondering where it went.
			d.mu.Lock()
			prev, seen := d.last[i]
			if seen {
				if _, sick := d.sick[prev.UUID]; !sick {
					d.sick[prev.UUID] = 0
				}
			}
			d.mu.Unlock()
			if !seen {
				return nil, nil, err
			}
			prev.NVLinkPeers = nil
			dev, h = &prev, nil
		} else {
			dev.DriverVersion, dev.CUDAVersion = driver, cuda
			d.mu.Lock()
			d.last[i] = *dev
			d.mu.Unlock()
		}
		gpus = append(gpus, gpuHandle{dev, h})
		if h == nil {
			continue
		}
		if dev.MIGEnabled {
			ms, err := d.migDevices(dev, h)
			if err != nil {
				return nil, nil, err
			}
			migs = append(migs, ms...)
		}
	}
	d.nvlinks(gpus)
	return gpus, migs, nil
}

func (d *Discoverer) describe(i int, h nvml.Device) (*Device, error) {
	dev := &Device{Index: i, NUMANode: -1, Minor: -1, GPUInstanceID: -1, ComputeInstanceID: -1}
	uuid, ret := h.GetUUID()
	if ret != nvml.SUCCESS {
		return nil, nvmlErr(fmt.Sprintf("UUID of GPU %d", i), ret)
	}
	dev.UUID = uuid
	optional(func() nvml.Return {
		var r nvml.Return
		dev.Model, r = h.GetName()
		return r
	})
	optional(func() nvml.Return {
		m, r := h.GetMemoryInfo()
		if r == nvml.SUCCESS {
			dev.MemoryTotalMiB, dev.MemoryUsedMiB = m.Total>>20, m.Used>>20
		}
		return r
	})
	optional(func() nvml.Return {
		major, minor, r := h.GetCudaComputeCapability()
		if r == nvml.SUCCESS {
			dev.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
		}
		return r
	})
	optional(func() nvml.Return {
		p, r := h.GetPciInfo()
		if r == nvml.SUCCESS {
			dev.PCIBusID = busID(p)
		}
		return r
	})
	optional(func() nvml.Return {
		m, r := h.GetMinorNumber()
		if r == nvml.SUCCESS {
			dev.Minor = m
		}
		return r
	})
	optional(func() nvml.Return {
		w, r := h.GetPowerManagementLimit()
		if r == nvml.SUCCESS {
			dev.PowerLimitMW = w
		}
		return r
	})
	optional(func() nvml.Return {
		cur, _, r := h.GetMigMode()
		dev.MIGEnabled = r == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE
		return r
	})
	dev.NUMANode = d.numaNode(h, dev.PCIBusID)
	return dev, nil
}

// numaNode asks NVML (drivers from 535 have nvmlDeviceGetNumaNodeId) and
// falls back to the PCI device's numa_node in sysfs.
func (d *Discoverer) numaNode(h nvml.Device, bus string) int {
	node := -1
	hasSym := optional(func() nvml.Return {
		if err := d.lib.Extensions().LookupSymbol("nvmlDeviceGetNumaNodeId"); err != nil {
			return nvml.ERROR_FUNCTION_NOT_FOUND
		}
		return nvml.SUCCESS
	}) == nvml.SUCCESS
	if hasSym && optional(func() nvml.Return {
		n, r := h.GetNumaNodeId()
		if r == nvml.SUCCESS {
			node = n
		}
		return r
	}) == nvml.SUCCESS {
		return node
	}
	if bus == "" || d.SysfsRoot == "" {
		return -1
	}
	b, err := os.ReadFile(filepath.Join(d.SysfsRoot, "bus/pci/devices", bus, "numa_node"))
	if err != nil {
		return -1
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		return n
	}
	return -1
}

// busID turns NVML's "00000000:07:00.0" into sysfs's "0000:07:00.0".
func busID(p nvml.PciInfo) string {
	var b strings.Builder
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	s := b.String()
	if s == "" {
		return ""
	}
	return NormalizeBusID(s)
}

// migDevices lists a GPU's MIG devices through NVML's MIG handles.
func (d *Discoverer) migDevices(parent *Device, h nvml.Device) ([]Device, error) {
	var max int
	if optional(func() nvml.Return {
		var r nvml.Return
		max, r = h.GetMaxMigDeviceCount()
		return r
	}) != nvml.SUCCESS {
		return nil, nil
	}
	profiles := d.migProfiles(h)
	var out []Device
	for j := 0; j < max; j++ {
		var mh nvml.Device
		ret := optional(func() nvml.Return {
			var r nvml.Return
			mh, r = h.GetMigDeviceHandleByIndex(j)
			return r
		})
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_NOT_SUPPORTED || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue
		}
		if ret != nvml.SUCCESS {
			return nil, nvmlErr(fmt.Sprintf("MIG device %d of GPU %d", j, parent.Index), ret)
		}
		uuid, ret := mh.GetUUID()
		if ret != nvml.SUCCESS {
			return nil, nvmlErr(fmt.Sprintf("UUID of MIG device %d of GPU %d", j, parent.Index), ret)
		}
		m := Device{
			Index: parent.Index, UUID: uuid, Model: parent.Model, ComputeCapability: parent.ComputeCapability,
			PCIBusID: parent.PCIBusID, NUMANode: parent.NUMANode, Minor: parent.Minor,
			DriverVersion: parent.DriverVersion, CUDAVersion: parent.CUDAVersion,
			ParentUUID: parent.UUID, GPUInstanceID: -1, ComputeInstanceID: -1,
		}
		optional(func() nvml.Return {
			v, r := mh.GetGpuInstanceId()
			if r == nvml.SUCCESS {
				m.GPUInstanceID = v
			}
			return r
		})
		optional(func() nvml.Return {
			v, r := mh.GetComputeInstanceId()
			if r == nvml.SUCCESS {
				m.ComputeInstanceID = v
			}
			return r
		})
		optional(func() nvml.Return {
			mem, r := mh.GetMemoryInfo()
			if r == nvml.SUCCESS {
				m.MemoryTotalMiB, m.MemoryUsedMiB = mem.Total>>20, mem.Used>>20
			}
			return r
		})
		if p, ok := profiles[[2]int{m.GPUInstanceID, m.ComputeInstanceID}]; ok {
			m.MIGProfile = p.name(parent.MemoryTotalMiB)
			if m.MemoryTotalMiB == 0 {
				m.MemoryTotalMiB = p.memMiB
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// migProfile is what names a MIG device: its GPU instance's profile and
// its compute instance's share of it.
type migProfile struct {
	giProfile          int
	giSlices, ciSlices uint32
	memMiB             uint64
}

// name follows NVIDIA's naming ("1g.5gb", "1c.3g.20gb", "1g.5gb+me"),
// with the memory rounded the way nvidia's device plugin does it.
func (p migProfile) name(totalMiB uint64) string {
	gb := p.memMiB >> 10
	if totalMiB > 0 {
		frac := float64(p.memMiB) / float64(totalMiB)
		frac = math.Ceil(frac*8) / 8
		gb = uint64(math.Round(frac * float64((totalMiB+1023)>>10)))
	}
	s := fmt.Sprintf("%dg.%dgb", p.giSlices, gb)
	if p.ciSlices > 0 && p.ciSlices < p.giSlices {
		s = fmt.Sprintf("%dc.%s", p.ciSlices, s)
	}
	switch p.giProfile {
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1, nvml.GPU_INSTANCE_PROFILE_2_SLICE_REV1:
		s += "+me"
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME, nvml.GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME:
		s += "+me.all"
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_NO_ME, nvml.GPU_INSTANCE_PROFILE_2_SLICE_NO_ME:
		s += "-me"
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_GFX, nvml.GPU_INSTANCE_PROFILE_2_SLICE_GFX,
		nvml.GPU_INSTANCE_PROFILE_3_SLICE_GFX, nvml.GPU_INSTANCE_PROFILE_4_SLICE_GFX:
		s += "+gfx"
	}
	return s
}

// migProfiles maps (GPU instance ID, compute instance ID) to the profile
// of every compute instance on the GPU, walking the instances of each
// GPU-instance profile.
func (d *Discoverer) migProfiles(h nvml.Device) map[[2]int]migProfile {
	out := map[[2]int]migProfile{}
	for p := 0; p < nvml.GPU_INSTANCE_PROFILE_COUNT; p++ {
		var info nvml.GpuInstanceProfileInfo
		if optional(func() nvml.Return {
			var r nvml.Return
			info, r = h.GetGpuInstanceProfileInfo(p)
			return r
		}) != nvml.SUCCESS {
			continue
		}
		var gis []nvml.GpuInstance
		if optional(func() nvml.Return {
			var r nvml.Return
			gis, r = h.GetGpuInstances(&info)
			return r
		}) != nvml.SUCCESS {
			continue
		}
		for _, gi := range gis {
			var giInfo nvml.GpuInstanceInfo
			if optional(func() nvml.Return {
				var r nvml.Return
				giInfo, r = gi.GetInfo()
				return r
			}) != nvml.SUCCESS {
				continue
			}
			for cp := 0; cp < nvml.COMPUTE_INSTANCE_PROFILE_COUNT; cp++ {
				var ciProf nvml.ComputeInstanceProfileInfo
				if optional(func() nvml.Return {
					var r nvml.Return
					ciProf, r = gi.GetComputeInstanceProfileInfo(cp, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
					return r
				}) != nvml.SUCCESS {
					continue
				}
				var cis []nvml.ComputeInstance
				if optional(func() nvml.Return {
					var r nvml.Return
					cis, r = gi.GetComputeInstances(&ciProf)
					return r
				}) != nvml.SUCCESS {
					continue
				}
				for _, ci := range cis {
					var ciInfo nvml.ComputeInstanceInfo
					if optional(func() nvml.Return {
						var r nvml.Return
						ciInfo, r = ci.GetInfo()
						return r
					}) != nvml.SUCCESS {
						continue
					}
					out[[2]int{int(giInfo.Id), int(ciInfo.Id)}] = migProfile{
						giProfile: p, giSlices: info.SliceCount, ciSlices: ciProf.SliceCount, memMiB: info.MemorySizeMB,
					}
				}
			}
		}
	}
	return out
}

// linkInfo is one GPU's NVLink picture.
type linkInfo struct {
	direct      map[string]int // peer UUID → links straight to it
	switchLinks int            // enabled links whose far end is not a GPU (NVSwitch)
}

// nvlinks fills NVLinkPeers of each GPU and returns the per-GPU links.
func (d *Discoverer) nvlinks(gpus []gpuHandle) []linkInfo {
	byBus := map[string]string{}
	for _, g := range gpus {
		if g.dev.PCIBusID != "" {
			byBus[g.dev.PCIBusID] = g.dev.UUID
		}
	}
	infos := make([]linkInfo, len(gpus))
	for i, g := range gpus {
		li := linkInfo{direct: map[string]int{}}
		for link := 0; link < nvml.NVLINK_MAX_LINKS; link++ {
			var state nvml.EnableState
			ret := optional(func() nvml.Return {
				var r nvml.Return
				state, r = g.h.GetNvLinkState(link)
				return r
			})
			if ret != nvml.SUCCESS || state != nvml.FEATURE_ENABLED {
				continue
			}
			var remote nvml.PciInfo
			if optional(func() nvml.Return {
				var r nvml.Return
				remote, r = g.h.GetNvLinkRemotePciInfo(link)
				return r
			}) != nvml.SUCCESS {
				continue
			}
			if peer, ok := byBus[busID(remote)]; ok && peer != g.dev.UUID {
				li.direct[peer]++
			} else if !ok {
				li.switchLinks++
			}
		}
		peers := map[string]bool{}
		for p := range li.direct {
			peers[p] = true
		}
		if li.switchLinks > 0 {
			// Behind an NVSwitch the far end of every link is the switch;
			// NVML's P2P status over NVLink says which GPUs it reaches.
			for _, o := range gpus {
				if o.dev.UUID == g.dev.UUID || peers[o.dev.UUID] {
					continue
				}
				var st nvml.GpuP2PStatus
				if optional(func() nvml.Return {
					var r nvml.Return
					st, r = g.h.GetP2PStatus(o.h, nvml.P2P_CAPS_INDEX_NVLINK)
					return r
				}) == nvml.SUCCESS && st == nvml.P2P_STATUS_OK {
					peers[o.dev.UUID] = true
				}
			}
		}
		g.dev.NVLinkPeers = g.dev.NVLinkPeers[:0]
		for _, o := range gpus {
			if peers[o.dev.UUID] {
				g.dev.NVLinkPeers = append(g.dev.NVLinkPeers, o.dev.UUID)
			}
		}
		if len(g.dev.NVLinkPeers) == 0 {
			g.dev.NVLinkPeers = nil
		}
		infos[i] = li
	}
	return infos
}

// Topology reads the connection between each pair of whole GPUs: the
// number of NVLinks ("NV12"), else the closest common PCIe ancestor.
func (d *Discoverer) Topology() (*Topology, error) {
	gpus, _, err := d.scan()
	if err != nil {
		return nil, err
	}
	links := d.nvlinks(gpus)
	t := &Topology{UUIDs: make([]string, len(gpus)), Links: make([][]string, len(gpus))}
	for i, g := range gpus {
		t.UUIDs[i] = g.dev.UUID
		t.Links[i] = make([]string, len(gpus))
		for j, o := range gpus {
			switch {
			case i == j:
				t.Links[i][j] = "X"
				continue
			case links[i].direct[o.dev.UUID] > 0:
				t.Links[i][j] = fmt.Sprintf("NV%d", links[i].direct[o.dev.UUID])
				continue
			case links[i].switchLinks > 0 && slicesContains(g.dev.NVLinkPeers, o.dev.UUID):
				t.Links[i][j] = fmt.Sprintf("NV%d", links[i].switchLinks)
				continue
			}
			var lvl nvml.GpuTopologyLevel
			if optional(func() nvml.Return {
				var r nvml.Return
				lvl, r = g.h.GetTopologyCommonAncestor(o.h)
				return r
			}) != nvml.SUCCESS {
				t.Links[i][j] = "?"
				continue
			}
			t.Links[i][j] = topoName(lvl)
		}
	}
	return t, nil
}

func topoName(l nvml.GpuTopologyLevel) string {
	switch l {
	case nvml.TOPOLOGY_INTERNAL:
		return "X"
	case nvml.TOPOLOGY_SINGLE:
		return "PIX"
	case nvml.TOPOLOGY_MULTIPLE:
		return "PXB"
	case nvml.TOPOLOGY_HOSTBRIDGE:
		return "PHB"
	case nvml.TOPOLOGY_NODE:
		return "NODE"
	case nvml.TOPOLOGY_SYSTEM:
		return "SYS"
	}
	return "?"
}

// Stats samples utilization, memory, power and temperature of each whole
// GPU. Values a GPU cannot report are left zero.
func (d *Discoverer) Stats() ([]Stat, error) {
	n, ret := d.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlErr("device count", ret)
	}
	out := make([]Stat, 0, n)
	for i := 0; i < n; i++ {
		h, ret := d.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, nvmlErr(fmt.Sprintf("handle of GPU %d", i), ret)
		}
		s := Stat{Index: i}
		if s.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
			return nil, nvmlErr(fmt.Sprintf("UUID of GPU %d", i), ret)
		}
		optional(func() nvml.Return {
			u, r := h.GetUtilizationRates()
			if r == nvml.SUCCESS {
				s.GPUUtilPercent, s.MemUtilPercent = u.Gpu, u.Memory
			}
			return r
		})
		optional(func() nvml.Return {
			m, r := h.GetMemoryInfo()
			if r == nvml.SUCCESS {
				s.MemoryTotalMiB, s.MemoryUsedMiB = m.Total>>20, m.Used>>20
			}
			return r
		})
		optional(func() nvml.Return {
			var r nvml.Return
			s.PowerMW, r = h.GetPowerUsage()
			return r
		})
		optional(func() nvml.Return {
			var r nvml.Return
			s.TemperatureC, r = h.GetTemperature(nvml.TEMPERATURE_GPU)
			return r
		})
		out = append(out, s)
	}
	return out, nil
}
