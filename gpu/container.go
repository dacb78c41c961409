package gpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// ErrNotSupported means the platform cannot give GPUs to containers.
var ErrNotSupported = errors.New("gpu: giving GPUs to containers needs Linux")

// ErrNoDeviceNode means the driver's device node of an assigned GPU is
// missing on the host.
var ErrNoDeviceNode = errors.New("gpu: NVIDIA device node missing on the host (is the nvidia kernel module loaded? `nvidia-smi` or `nvidia-modprobe` creates the nodes)")

// DeviceNode is a device node a container gets, with its host numbers.
type DeviceNode struct {
	Path         string // in the container and on the host, e.g. /dev/nvidia0
	Type         byte   // 'c'
	Major, Minor int64
	Mode         uint32 // permission bits
	UID, GID     uint32
}

// Mount is a read-only bind mount of a host file into a container.
type Mount struct {
	Source      string // on the host (under Host.Root)
	Destination string // in the container
}

// Edits is what a container needs in order to use some GPUs.
type Edits struct {
	DeviceNodes []DeviceNode
	Mounts      []Mount // all read-only
	Env         []string
}

// Host finds the host-side pieces of GPU access: device nodes, the
// driver's libraries and binaries. The zero Host is the real one.
type Host struct {
	// Root is the host's root directory ("/" when empty); tests point it
	// at a fake tree.
	Root string
	// Ldconfig returns `ldconfig -p` output for the host. Nil runs
	// ldconfig -p -C Root/etc/ld.so.cache.
	Ldconfig func() ([]byte, error)
	// Lib, when set, resolves UUIDs that /proc/driver/nvidia does not
	// list, and MIG instances to their GPU and instance IDs.
	Lib *Discoverer
}

// driverLibs are the user-space libraries nvidia-container-toolkit mounts
// for the "utility" and "compute" capabilities.
var driverLibs = []string{
	"libnvidia-ml.so", "libnvidia-cfg.so", // utility
	"libcuda.so", "libcudadebugger.so", "libnvidia-opencl.so", "libnvidia-gpucomp.so",
	"libnvidia-ptxjitcompiler.so", "libnvidia-fatbinaryloader.so", "libnvidia-allocator.so",
	"libnvidia-compiler.so", "libnvidia-nvvm.so", "libnvidia-pkcs11.so", "libnvidia-pkcs11-openssl3.so", // compute
}

// driverBins are the binaries mounted into /usr/bin.
var driverBins = []string{
	"nvidia-smi", "nvidia-debugdump", "nvidia-persistenced",
	"nvidia-cuda-mps-control", "nvidia-cuda-mps-server",
}

// controlDevices are shared by every GPU; the ones the host has are given.
var controlDevices = []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}

func (h *Host) path(p string) string {
	root := h.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, p)
}

// Edits returns the device nodes of exactly the given GPUs (whole GPUs or
// MIG instances, by UUID) plus the control devices, read-only mounts of
// the driver's libraries and binaries, and NVIDIA_VISIBLE_DEVICES /
// CUDA_VISIBLE_DEVICES. No other GPU's node is listed, so a container
// built from Edits cannot open a GPU it was not given.
func (h *Host) Edits(uuids []string) (*Edits, error) {
	if len(uuids) == 0 {
		return &Edits{}, nil
	}
	minors, err := h.procMinors()
	if err != nil {
		return nil, err
	}
	var devs []Device
	if h.Lib != nil {
		if devs, err = h.Lib.Devices(); err != nil {
			return nil, err
		}
	}
	e := &Edits{}
	seen := map[string]bool{}
	addNode := func(p string) error {
		if seen[p] {
			return nil
		}
		n, err := deviceNode(h.path(p))
		if err != nil {
			return err
		}
		n.Path = p
		seen[p] = true
		e.DeviceNodes = append(e.DeviceNodes, n)
		return nil
	}
	for _, u := range uuids {
		minor, ok := minors[u]
		var mig *Device
		if !ok {
			for i := range devs {
				if devs[i].UUID == u {
					minor, ok = devs[i].Minor, devs[i].Minor >= 0
					if devs[i].ParentUUID != "" {
						mig = &devs[i]
					}
				}
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, u)
		}
		if err := addNode(fmt.Sprintf("/dev/nvidia%d", minor)); err != nil {
			return nil, fmt.Errorf("%w: GPU %s: %v", ErrNoDeviceNode, u, err)
		}
		if mig != nil {
			caps, err := h.migCaps(minor, mig.GPUInstanceID, mig.ComputeInstanceID)
			if err != nil {
				return nil, fmt.Errorf("gpu: MIG instance %s: %w", u, err)
			}
			for _, c := range caps {
				if err := addNode(c); err != nil {
					return nil, fmt.Errorf("%w: MIG instance %s: %v", ErrNoDeviceNode, u, err)
				}
			}
		}
	}
	for _, c := range controlDevices {
		if _, err := os.Stat(h.path(c)); err == nil {
			if err := addNode(c); err != nil {
				return nil, err
			}
		}
	}
	libs, err := h.libraries()
	if err != nil {
		return nil, err
	}
	e.Mounts = append(e.Mounts, libs...)
	for _, b := range driverBins {
		for _, dir := range []string{"/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin", "/sbin"} {
			src := h.path(filepath.Join(dir, b))
			if fi, err := os.Stat(src); err == nil && fi.Mode().IsRegular() {
				e.Mounts = append(e.Mounts, Mount{Source: src, Destination: filepath.Join("/usr/bin", b)})
				break
			}
		}
	}
	list := strings.Join(uuids, ",")
	e.Env = []string{"NVIDIA_VISIBLE_DEVICES=" + list, "CUDA_VISIBLE_DEVICES=" + list, "NVIDIA_DRIVER_CAPABILITIES=compute,utility"}
	return e, nil
}

// procMinors reads UUID → minor from the driver's
// /proc/driver/nvidia/gpus/BUS/information files.
func (h *Host) procMinors() (map[string]int, error) {
	out := map[string]int{}
	files, err := filepath.Glob(h.path("/proc/driver/nvidia/gpus/*/information"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		uuid, minor := parseInformation(b)
		if uuid != "" && minor >= 0 {
			out[uuid] = minor
		}
	}
	return out, nil
}

// parseInformation reads "GPU UUID:" and "Device Minor:" from a driver
// information file.
func parseInformation(b []byte) (uuid string, minor int) {
	minor = -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "GPU UUID":
			uuid = v
		case "Device Minor":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				minor = n
			}
		}
	}
	return uuid, minor
}

// migCaps finds the /dev/nvidia-caps nodes that grant access to one MIG
// instance, from /proc/driver/nvidia/capabilities.
func (h *Host) migCaps(minor, gi, ci int) ([]string, error) {
	base := fmt.Sprintf("/proc/driver/nvidia/capabilities/gpu%d/mig/gi%d", minor, gi)
	var out []string
	for _, f := range []string{base + "/access", fmt.Sprintf("%s/ci%d/access", base, ci)} {
		b, err := os.ReadFile(h.path(f))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		n := -1
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "DeviceFileMinor" {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if n < 0 {
			return nil, fmt.Errorf("%s has no DeviceFileMinor", f)
		}
		out = append(out, fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", n))
	}
	return out, nil
}

// ldArch is ldconfig's tag for this machine's libraries.
func ldArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86-64"
	case "arm64":
		return "AArch64"
	case "ppc64le":
		return "64bit"
	}
	return ""
}

// libraries mounts each driver library the ldconfig cache lists: the real
// file at its own path and at the path of the cache's name (the soname
// link), both read-only, so the dynamic loader finds it either way.
func (h *Host) libraries() ([]Mount, error) {
	ld := h.Ldconfig
	if ld == nil {
		ld = func() ([]byte, error) {
			bin, err := exec.LookPath("ldconfig")
			if err != nil {
				bin = "/sbin/ldconfig"
			}
			return exec.Command(bin, "-p", "-C", h.path("/etc/ld.so.cache")).Output()
		}
	}
	out, err := ld()
	if err != nil {
		return nil, fmt.Errorf("gpu: read the host's ldconfig cache (ldconfig -p): %w", err)
	}
	entries := ParseLdconfig(out, ldArch())
	var mounts []Mount
	seen := map[string]bool{}
	for _, en := range entries {
		if !isDriverLib(en.Name) {
			continue
		}
		real, err := filepath.EvalSymlinks(h.path(en.Path))
		if err != nil {
			continue // the cache is stale: the file is gone
		}
		rel := real
		if root := h.path("/"); root != "/" {
			r, err := filepath.Rel(root, real)
			if err != nil || strings.HasPrefix(r, "..") {
				continue // a link out of the host tree
			}
			rel = "/" + r
		}
		for _, dst := range []string{rel, en.Path} {
			if !seen[dst] {
				seen[dst] = true
				mounts = append(mounts, Mount{Source: real, Destination: dst})
			}
		}
	}
	sort.SliceStable(mounts, func(i, j int) bool { return mounts[i].Destination < mounts[j].Destination })
	return mounts, nil
}

func isDriverLib(name string) bool {
	for _, l := range driverLibs {
		if name == l || strings.HasPrefix(name, l+".") {
			return true
		}
	}
	return false
}

// LdEntry is one library of the ldconfig cache.
type LdEntry struct {
	Name string // "libcuda.so.1"
	Arch string // "x86-64", or "" for the 32-bit libc6 entries
	Path string // "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
}

// ParseLdconfig reads `ldconfig -p` output, keeping the entries of arch
// (all when arch is ""). Lines it does not understand are skipped.
func ParseLdconfig(out []byte, arch string) []LdEntry {
	var es []LdEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		lhs, p, ok := strings.Cut(line, " => ")
		if !ok {
			continue
		}
		name, tags, ok := strings.Cut(lhs, " (")
		if !ok || !strings.HasSuffix(tags, ")") {
			continue
		}
		p = strings.TrimSpace(p)
		if !filepath.IsAbs(p) || name == "" {
			continue
		}
		var a string
		for _, t := range strings.Split(strings.TrimSuffix(tags, ")"), ",") {
			switch t = strings.TrimSpace(t); t {
			case "x86-64", "AArch64", "64bit":
				a = t
			}
		}
		if arch != "" && a != arch {
			continue
		}
		es = append(es, LdEntry{Name: strings.TrimSpace(name), Arch: a, Path: filepath.Clean(p)})
	}
	return es
}
