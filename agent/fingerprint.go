package agent

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/api"
)

// fingerprint describes this host as a node: capacity and attributes that
// constraints can match (${attr.kernel.name}, ${attr.cpu.cores}, ...).
func fingerprint(dataDir string) (api.NodeResources, map[string]string) {
	attrs := map[string]string{
		"kernel.name": runtime.GOOS,
		"arch":        runtime.GOARCH,
		"cpu.cores":   strconv.Itoa(runtime.NumCPU()),
	}
	res := api.NodeResources{CPU: runtime.NumCPU() * 1000}
	if mhz := cpuMHz(); mhz > 0 {
		attrs["cpu.mhz"] = strconv.Itoa(mhz)
	}
	if mb := memTotalMB(); mb > 0 {
		res.MemoryMB = mb
		attrs["memory.mb"] = strconv.Itoa(mb)
	}
	for k, v := range hostAttributes(dataDir) {
		attrs[k] = v
	}
	if v, ok := attrs["disk.free_mb"]; ok {
		res.DiskMB, _ = strconv.Atoi(v)
	}
	if name, ver := osRelease(); name != "" {
		attrs["os.name"] = name
		attrs["os.version"] = ver
	}
	attrs["gpu.count"] = "0"
	return res, attrs
}

func cpuMHz() int {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(mhz)
		}
	}
	return 0
}

func memTotalMB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.Atoi(fields[1])
			return kb / 1024
		}
	}
	return 0
}

func osRelease() (string, string) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", ""
	}
	var id, ver string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "ID":
			id = v
		case "VERSION_ID":
			ver = v
		}
	}
	return id, ver
}
