//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestGPUs drives GPU support through the real binary. On a host without
// the NVIDIA driver (CI, this project's machines) it checks the graceful
// path: berth dev starts and reports 0 GPUs with one log line, `berth gpu
// ls` says there is no GPU, and `berth run --gpus 1` is refused with a
// reason instead of hanging. On a GPU host it checks that a --gpus 1
// container sees exactly one /dev/nvidiaN and the UUID it was given
// (`make gpu-check` goes further, with nvidia-smi inside).
func TestGPUs(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	_, driver := os.Stat("/proc/driver/nvidia/gpus")
	if driver != nil {
		r := d.Berth("gpu", "ls")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no NVIDIA GPU found") {
			t.Errorf("berth gpu ls without a driver: %s", r)
		}
		if !strings.Contains(d.Log(), "no NVIDIA driver: reporting 0 GPUs") {
			t.Errorf("no log line about the missing driver in:\n%s", d.Log())
		}
		var nodes []struct {
			Attributes map[string]string `json:"attributes"`
		}
		out := d.MustBerth(t, "node", "ls", "--format", "json").Stdout
		if err := json.Unmarshal([]byte(out), &nodes); err != nil || len(nodes) != 1 || nodes[0].Attributes["gpu.count"] != "0" {
			t.Errorf("node ls: %v\n%s", err, out)
		}
		r = d.Berth("run", "--rm", "--gpus", "1", "busybox", "true")
		if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "gpu") {
			t.Errorf("a --gpus 1 run on a node without GPUs: %s", r)
		}
		t.Logf("refused: %s", strings.TrimSpace(r.Stderr))
		return
	}
	uuids := regexp.MustCompile(`GPU-[0-9a-fA-F-]+`).FindAllString(d.MustBerth(t, "gpu", "ls").Stdout, -1)
	if len(uuids) == 0 {
		t.Fatal("the driver is loaded but berth lists no GPU")
	}
	r := d.MustBerth(t, "run", "--rm", "--gpus", "1", "busybox", "sh", "-c", `ls /dev/nvidia*; echo "vis=$NVIDIA_VISIBLE_DEVICES"`)
	nodes := regexp.MustCompile(`(?m)^/dev/nvidia[0-9]+$`).FindAllString(r.Stdout, -1)
	vis := regexp.MustCompile(`(?m)^vis=(GPU-[0-9a-fA-F-]+)$`).FindStringSubmatch(r.Stdout)
	if len(nodes) != 1 || vis == nil || !strings.Contains(strings.Join(uuids, " "), vis[1]) {
		t.Fatalf("a --gpus 1 container should see one GPU node and one of %v: %s", uuids, r)
	}
}
