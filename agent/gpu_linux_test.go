//go:build cgo && !nogpu

package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/gpu"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestGPUFingerprintWithoutDriver(t *testing.T) {
	if _, err := os.Stat("/proc/driver/nvidia"); err == nil {
		t.Skip("this host has the NVIDIA driver")
	}
	var logs syncBuffer
	a := &Agent{log: slog.New(slog.NewTextHandler(&logs, nil)), node: &api.Node{}}
	if gpus := a.gpuFingerprint(); gpus != nil {
		t.Fatalf("got %d GPUs on a host without the driver", len(gpus))
	}
	if !strings.Contains(logs.String(), "no NVIDIA driver: reporting 0 GPUs") || strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("logs: %s", logs.String())
	}
	if a.gpu != nil || a.takeGPUUpdate() {
		t.Error("GPU state kept without GPUs")
	}
	a.startGPUWatch() // nothing to watch: must not start anything
}

// xidFeed wires go-nvml's fake 8-GPU server with an event set fed from a
// channel.
func xidFeed(s *server.Server) chan nvml.EventData {
	ch := make(chan nvml.EventData, 4)
	set := &mock.EventSet{
		WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
			select {
			case e := <-ch:
				return e, nvml.SUCCESS
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
		},
		FreeFunc: func() nvml.Return { return nvml.SUCCESS },
	}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return set, nvml.SUCCESS }
	for _, d := range s.Devices {
		d.(*server.Device).RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	return ch
}

// TestGPUXidReachesScheduler runs a real server and agent whose NVML is
// the 8-GPU fake: the node registers 8 healthy GPUs, a critical Xid on
// one makes the server see it unhealthy, and an 8-GPU job then no longer
// fits while a 7-GPU job gets the other seven.
func TestGPUXidReachesScheduler(t *testing.T) {
	s := dgxa100.New()
	feed := xidFeed(s)
	old := openGPUs
	openGPUs = func() (*gpu.Discoverer, error) {
		d := gpu.New(s)
		d.WaitMillis = 50
		return d, nil
	}
	t.Cleanup(func() { openGPUs = old })
	c := startCluster(t, t.TempDir())

	node := func() *api.Node {
		nodes, _, err := c.client.Nodes().List(nil)
		if err != nil || len(nodes) != 1 {
			t.Fatalf("nodes %v: %v", nodes, err)
		}
		n, _, err := c.client.Nodes().Info(nodes[0].ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := node()
	if len(n.Resources.GPUs) != 8 || n.Attributes["gpu.count"] != "8" {
		t.Fatalf("node has %d GPUs (attr %q), want 8", len(n.Resources.GPUs), n.Attributes["gpu.count"])
	}
	for _, g := range n.Resources.GPUs {
		if !g.Healthy || g.Model != "Mock NVIDIA A100-SXM4-40GB" || g.MemoryMiB != 40960 {
			t.Fatalf("GPU %+v", g)
		}
	}
	bad := s.Devices[3].(*server.Device)
	feed <- nvml.EventData{Device: bad, EventType: nvml.EventTypeXidCriticalError, EventData: 79, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	eventually(t, 15*time.Second, "server sees GPU 3 unhealthy", func() bool {
		for _, g := range node().Resources.GPUs {
			if g.UUID == bad.UUID {
				return !g.Healthy
			}
		}
		return false
	})
	for _, g := range node().Resources.GPUs {
		if g.UUID != bad.UUID && !g.Healthy {
			t.Errorf("GPU %s unhealthy too", g.UUID)
		}
	}

	gpuJob := func(name string, count int) *api.Job {
		j := oneTaskJob(name, api.JobTypeBatch, "true")
		j.Groups[0].Tasks[0].Resources.GPUs = &api.GPURequest{Count: count}
		return j
	}
	c.importBusybox() // no pull from the network
	plan, err := c.client.Jobs().Plan(gpuJob("eight", 8))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Placements["eight"] != 0 || plan.Failed["eight"] == "" {
		t.Errorf("an 8-GPU job was placed on a node with 7 healthy GPUs: %+v", plan)
	}
	t.Logf("8-GPU job refused: %s", plan.Failed["eight"])
	if _, err := c.client.Jobs().Register(gpuJob("seven", 7)); err != nil {
		t.Fatal(err)
	}
	al := c.alloc("seven", "GPUs assigned", func(a *api.Allocation) bool { return len(a.GPUs) == 7 })
	if slices.Contains(al.GPUs, bad.UUID) {
		t.Errorf("the failed GPU was assigned: %v", al.GPUs)
	}
}

func TestGPUCollector(t *testing.T) {
	s := dgxa100.New()
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 + i), Memory: 5}, nvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 250000, nvml.SUCCESS }
		dev.MemoryInfo.Used = 1 << 30
	}
	disc := gpu.New(s)
	bad := s.Devices[6].(*server.Device).UUID
	disc.MarkUnhealthy(bad, 79)
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), node: &api.Node{Name: "n1"}, gpu: &gpuState{disc: disc}}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.GPUCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{} // metric → gpu → value
	for _, mf := range mfs {
		got[mf.GetName()] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			var uuid string
			for _, l := range m.GetLabel() {
				if l.GetName() == "gpu" {
					uuid = l.GetValue()
				}
			}
			got[mf.GetName()][uuid] = m.GetGauge().GetValue()
		}
	}
	u3 := s.Devices[3].(*server.Device).UUID
	for _, c := range []struct {
		metric, gpu string
		want        float64
	}{
		{"berth_gpu_utilization_percent", u3, 13},
		{"berth_gpu_memory_utilization_percent", u3, 5},
		{"berth_gpu_memory_used_bytes", u3, 1 << 30},
		{"berth_gpu_memory_total_bytes", u3, 40960 << 20},
		{"berth_gpu_power_watts", u3, 250},
		{"berth_gpu_healthy", u3, 1},
		{"berth_gpu_healthy", bad, 0},
	} {
		if v, ok := got[c.metric][c.gpu]; !ok || v != c.want {
			t.Errorf("%s{gpu=%s} = %v (present %v), want %v", c.metric, c.gpu, v, ok, c.want)
		}
	}
	if n := len(got["berth_gpu_utilization_percent"]); n != 8 {
		t.Errorf("%d GPUs exported, want 8", n)
	}

	// Without GPUs nothing is exported.
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister((&Agent{node: &api.Node{}}).GPUCollector())
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("no GPUs: %d families, %v", len(mfs), err)
	}
}

// The agent API serves the GPU samples, as Prometheus metrics and as JSON,
// so servers can proxy them (/v1/nodes/NODE/agent/metrics).
func TestGPUMetricsServedByAgentAPI(t *testing.T) {
	s := dgxa100.New()
	for _, d := range s.Devices {
		dev := d.(*server.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 42, Memory: 7}, nvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 100000, nvml.SUCCESS }
	}
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), node: &api.Node{Name: "n1"}, gpu: &gpuState{disc: gpu.New(s)}}
	srv := httptest.NewServer(a.newRouter())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/v1/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "berth_gpu_utilization_percent{") || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics: %d\n%.500s", resp.StatusCode, body)
	}
	resp, err = http.Get(srv.URL + "/v1/gpus")
	if err != nil {
		t.Fatal(err)
	}
	var stats []gpu.Stat
	err = json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if err != nil || len(stats) != 8 || stats[0].GPUUtilPercent != 42 || stats[0].UUID == "" {
		t.Fatalf("gpus: %v %+v", err, stats)
	}
}
