package agent

import (
	"errors"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/gpu"
)

// openGPUs opens this host's NVML; tests swap in go-nvml's fakes.
var openGPUs = gpu.Open

// gpuState is the agent's GPU discovery and the health changes its Xid
// watcher found that the next registration has not carried yet.
type gpuState struct {
	disc    *gpu.Discoverer
	mu      sync.Mutex
	pending []api.GPUDevice
	changed bool
}

// gpuFingerprint lists this host's schedulable GPUs (and MIG instances).
// A host without NVIDIA's driver reports none, with one info line.
func (a *Agent) gpuFingerprint() []api.GPUDevice {
	d, err := openGPUs()
	if err != nil {
		if errors.Is(err, gpu.ErrNoDriver) {
			a.log.Info("no NVIDIA driver: reporting 0 GPUs")
		} else {
			a.log.Warn("GPU discovery failed: reporting 0 GPUs", "err", err)
		}
		return nil
	}
	devs, err := d.Devices()
	if err != nil || len(devs) == 0 {
		if err != nil {
			a.log.Warn("GPU discovery failed: reporting 0 GPUs", "err", err)
		}
		_ = d.Close()
		return nil
	}
	a.gpu = &gpuState{disc: d}
	out := gpusToAPI(devs)
	a.log.Info("GPUs found", "count", len(out), "driver", devs[0].DriverVersion, "cuda", devs[0].CUDAVersion)
	return out
}

// startGPUWatch watches for critical Xid errors until the agent stops. A
// failed GPU is marked unhealthy in the node's resources, and
// registerLoop re-registers the node so the scheduler stops placing on it.
func (a *Agent) startGPUWatch() {
	g := a.gpu
	if g == nil {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		err := g.disc.Watch(a.ctx, func(uuid string, xid uint64) {
			a.log.Error("GPU failed: marked unhealthy, nothing new is placed on it", "gpu", uuid, "xid", xid)
			devs, err := g.disc.Devices()
			if err != nil {
				a.log.Warn("GPU rediscovery after an Xid failed", "err", err)
				return
			}
			g.mu.Lock()
			g.pending, g.changed = gpusToAPI(devs), true
			g.mu.Unlock()
		})
		if err != nil && a.ctx.Err() == nil {
			a.log.Warn("GPU health is not watched", "err", err)
		}
		<-a.ctx.Done()
		_ = g.disc.Close()
	}()
}

// takeGPUUpdate moves a health change into the node's resources. Only
// registerLoop calls it, the one goroutine that reads a.node.Resources
// after Start, and it re-registers when it returns true.
func (a *Agent) takeGPUUpdate() bool {
	g := a.gpu
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.changed {
		return false
	}
	a.node.Resources.GPUs, g.changed = g.pending, false
	return true
}

// GPUStats samples the host's GPUs for metrics; nil without GPUs.
func (a *Agent) GPUStats() ([]gpu.Stat, error) {
	if a.gpu == nil {
		return nil, nil
	}
	return a.gpu.disc.Stats()
}

func gpusToAPI(devs []gpu.Device) []api.GPUDevice {
	out := make([]api.GPUDevice, 0, len(devs))
	for _, d := range devs {
		out = append(out, api.GPUDevice{
			UUID: d.UUID, Index: d.Index, Model: d.Model, MemoryMiB: int(d.MemoryTotalMiB),
			Healthy: d.Healthy, NUMANode: d.NUMANode, PCIBusID: d.PCIBusID,
			NVLinkPeers: d.NVLinkPeers, MIGProfile: d.MIGProfile, ParentUUID: d.ParentUUID,
		})
	}
	return out
}

// GPUCollector exports this host's GPU samples as Prometheus metrics,
// labelled by node and GPU UUID. Each scrape samples NVML (a few calls
// per GPU). Register it on the registry the agent's metrics are served
// from; without GPUs it exports nothing.
func (a *Agent) GPUCollector() prometheus.Collector {
	return &gpuCollector{a: a}
}

var (
	gpuLabels       = []string{"node", "gpu", "index"}
	descGPUUtil     = prometheus.NewDesc("berth_gpu_utilization_percent", "Percent of the last sample period a kernel ran on the GPU.", gpuLabels, nil)
	descGPUMemUtil  = prometheus.NewDesc("berth_gpu_memory_utilization_percent", "Percent of the last sample period device memory was read or written.", gpuLabels, nil)
	descGPUMemUsed  = prometheus.NewDesc("berth_gpu_memory_used_bytes", "Device memory in use.", gpuLabels, nil)
	descGPUMemTotal = prometheus.NewDesc("berth_gpu_memory_total_bytes", "Device memory in all.", gpuLabels, nil)
	descGPUPower    = prometheus.NewDesc("berth_gpu_power_watts", "Current power draw.", gpuLabels, nil)
	descGPUTemp     = prometheus.NewDesc("berth_gpu_temperature_celsius", "GPU core temperature.", gpuLabels, nil)
	descGPUHealthy  = prometheus.NewDesc("berth_gpu_healthy", "1 while no critical Xid error has been seen on the GPU.", gpuLabels, nil)
)

type gpuCollector struct{ a *Agent }

// Describe implements prometheus.Collector.
func (c *gpuCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGPUUtil, descGPUMemUtil, descGPUMemUsed, descGPUMemTotal, descGPUPower, descGPUTemp, descGPUHealthy} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *gpuCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.a.gpu
	if g == nil {
		return
	}
	stats, err := g.disc.Stats()
	if err != nil {
		c.a.log.Debug("GPU stats", "err", err)
		return
	}
	sick := g.disc.Unhealthy()
	for _, s := range stats {
		lv := []string{c.a.node.Name, s.UUID, strconv.Itoa(s.Index)}
		healthy := 1.0
		if _, bad := sick[s.UUID]; bad {
			healthy = 0
		}
		for _, m := range []struct {
			d *prometheus.Desc
			v float64
		}{
			{descGPUUtil, float64(s.GPUUtilPercent)},
			{descGPUMemUtil, float64(s.MemUtilPercent)},
			{descGPUMemUsed, float64(s.MemoryUsedMiB) * (1 << 20)},
			{descGPUMemTotal, float64(s.MemoryTotalMiB) * (1 << 20)},
			{descGPUPower, float64(s.PowerMW) / 1000},
			{descGPUTemp, float64(s.TemperatureC)},
			{descGPUHealthy, healthy},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v, lv...)
		}
	}
}
