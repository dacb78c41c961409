package engine

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/berth-dev/berth/gpu"
	"github.com/berth-dev/berth/runtime/container"
)

// gpuHost says where GPU access comes from. The zero value is the real
// host; tests point Root at a fake tree.
type gpuHost struct {
	Root     string                 // "/" when empty
	Ldconfig func() ([]byte, error) // `ldconfig -p`; nil runs it
	Lib      func() *gpu.Discoverer // NVML for MIG and CDI index names; nil or returning nil: none
}

// cdiDirs are CDI's standard spec directories, static then dynamic.
var cdiDirs = []string{"/etc/cdi", "/var/run/cdi"}

// cdiKind is the device kind nvidia-ctk writes specs for.
const cdiKind = "nvidia.com/gpu"

var (
	hostLibOnce sync.Once
	hostLib     *gpu.Discoverer
)

// sharedLib opens NVML once per process, for the few lookups injection
// needs; nil on a host without the driver.
func sharedLib() *gpu.Discoverer {
	hostLibOnce.Do(func() {
		if d, err := gpu.Open(); err == nil {
			hostLib = d
		}
	})
	return hostLib
}

// applyGPUs gives the container the GPUs assigned to its allocation (their
// UUIDs): device nodes, device-cgroup rules, driver libraries and the
// NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES variables.
func (e *Engine) applyGPUs(uuids []string, spec *container.Spec) error {
	if len(uuids) == 0 {
		return nil
	}
	return hostGPUs.apply(uuids, spec)
}

// hostGPUs is this host; tests point it at a fake tree.
var hostGPUs = gpuHost{Lib: sharedLib}

// apply uses the host's CDI spec when it names every assigned device
// (nvidia.com/gpu=UUID, or =INDEX); otherwise it does what
// nvidia-container-toolkit's legacy mode does (gpu.Host.Edits). Either
// way only the assigned GPUs' device nodes reach the container.
func (h gpuHost) apply(uuids []string, spec *container.Spec) error {
	done, err := h.applyCDI(uuids, spec)
	if err != nil || done {
		return err
	}
	host := &gpu.Host{Root: h.Root, Ldconfig: h.Ldconfig}
	if h.Lib != nil && slices.ContainsFunc(uuids, func(u string) bool { return strings.HasPrefix(u, "MIG-") }) {
		host.Lib = h.Lib()
	}
	ed, err := host.Edits(uuids)
	if err != nil {
		return fmt.Errorf("engine: give GPUs %v to the container: %w", uuids, err)
	}
	for _, n := range ed.DeviceNodes {
		spec.Devices = append(spec.Devices, container.Device{
			Path: n.Path, Type: n.Type, Major: n.Major, Minor: n.Minor, FileMode: n.Mode, UID: n.UID, GID: n.GID,
		})
	}
	for _, m := range ed.Mounts {
		spec.Mounts = append(spec.Mounts, container.Mount{Type: "bind", Source: m.Source, Destination: m.Destination, ReadOnly: true})
	}
	spec.Env = setEnv(spec.Env, ed.Env)
	return nil
}

// applyCDI injects the devices through the host's CDI specs. It reports
// false, with nothing changed, when the specs do not name every device.
func (h gpuHost) applyCDI(uuids []string, spec *container.Spec) (bool, error) {
	root := h.Root
	if root == "" {
		root = "/"
	}
	dirs := make([]string, len(cdiDirs))
	for i, d := range cdiDirs {
		dirs[i] = filepath.Join(root, d)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	if err != nil && cache == nil {
		return false, nil // unreadable spec dirs: use the legacy path
	}
	if len(cache.ListDevices()) == 0 {
		return false, nil
	}
	var index map[string]string
	names := make([]string, 0, len(uuids))
	for _, u := range uuids {
		name := cdiKind + "=" + u
		if cache.GetDevice(name) == nil {
			if index == nil {
				index = h.cdiIndexNames()
			}
			if n, ok := index[u]; ok && cache.GetDevice(cdiKind+"="+n) != nil {
				name = cdiKind + "=" + n
			} else {
				return false, nil
			}
		}
		names = append(names, name)
	}
	ospec := &oci.Spec{Process: &oci.Process{Env: slices.Clone(spec.Env)}, Linux: &oci.Linux{}}
	if _, err := cache.InjectDevices(ospec, names...); err != nil {
		return false, fmt.Errorf("engine: apply the CDI spec for %v: %w", names, err)
	}
	for _, d := range ospec.Linux.Devices {
		cd := container.Device{Path: d.Path, Type: 'c'}
		if d.Type != "" {
			cd.Type = d.Type[0]
		}
		cd.Major, cd.Minor = d.Major, d.Minor
		if d.FileMode != nil {
			cd.FileMode = uint32(d.FileMode.Perm())
		}
		if d.UID != nil {
			cd.UID = *d.UID
		}
		if d.GID != nil {
			cd.GID = *d.GID
		}
		spec.Devices = append(spec.Devices, cd)
	}
	for _, m := range ospec.Mounts {
		spec.Mounts = append(spec.Mounts, container.Mount{
			Type: "bind", Source: m.Source, Destination: m.Destination,
			ReadOnly: slices.Contains(m.Options, "ro"),
		})
	}
	spec.Env = ospec.Process.Env
	spec.Env = setEnv(spec.Env, []string{
		"NVIDIA_VISIBLE_DEVICES=" + strings.Join(uuids, ","),
		"CUDA_VISIBLE_DEVICES=" + strings.Join(uuids, ","),
	})
	if ospec.Hooks != nil {
		// berth runs no OCI hooks; nvidia's hooks refresh the ldcache and
		// make symlinks, and the mounted libraries work without them.
		slog.Debug("CDI hooks not run", "devices", names)
	}
	return true, nil
}

// cdiIndexNames maps UUIDs to nvidia-ctk's index names ("0", "1:0" for
// MIG device 0 of GPU 1), through NVML.
func (h gpuHost) cdiIndexNames() map[string]string {
	out := map[string]string{}
	if h.Lib == nil {
		return out
	}
	lib := h.Lib()
	if lib == nil {
		return out
	}
	devs, err := lib.Devices()
	if err != nil {
		return out
	}
	mig := map[string]int{}
	for _, d := range devs {
		if d.ParentUUID == "" {
			out[d.UUID] = strconv.Itoa(d.Index)
			continue
		}
		out[d.UUID] = fmt.Sprintf("%d:%d", d.Index, mig[d.ParentUUID])
		mig[d.ParentUUID]++
	}
	return out
}

// setEnv sets each KEY=VALUE of kv in env, replacing an earlier KEY.
func setEnv(env, kv []string) []string {
	for _, e := range kv {
		k, _, _ := strings.Cut(e, "=")
		env = slices.DeleteFunc(env, func(x string) bool {
			xk, _, _ := strings.Cut(x, "=")
			return xk == k
		})
		env = append(env, e)
	}
	return env
}
