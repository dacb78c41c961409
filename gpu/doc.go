// Package gpu finds a host's NVIDIA GPUs and works out what a container
// needs in order to use some of them.
//
// Discovery goes through an injected nvml.Interface (go-nvml), so tests
// run against go-nvml's stateful fakes (pkg/nvml/mock/dgxa100, dgxh100)
// and a host without NVIDIA's driver is just another case:
//
//	d, err := gpu.Open()          // nvml.New(); ErrNoDriver without libnvidia-ml
//	if errors.Is(err, gpu.ErrNoDriver) { /* report 0 GPUs */ }
//	defer d.Close()
//	devs, err := d.Devices()      // whole GPUs, then MIG instances
//	go d.Watch(ctx, onXid)        // critical Xid errors mark a device unhealthy
//	stats, err := d.Stats()       // utilization and memory for metrics
//
// A Discoverer is safe for concurrent use. Devices reads everything again
// from NVML on each call (a few hundred calls on an 8-GPU host), except
// health, which the Discoverer remembers from Watch. A GPU that stops
// answering after it was first seen (it fell off the bus, Xid 79) stays
// listed with its last known description, unhealthy. Optional NVML calls
// that a driver, a GPU or a fake lacks (ERROR_NOT_SUPPORTED, or a go-nvml
// mock method nobody set) leave their field at its "unknown" value.
//
// go-nvml needs cgo. A build without cgo, or with the nogpu tag, gets a
// Discoverer whose Open reports ErrNoDriver, so the agent and the CLI
// still build (and report zero GPUs).
//
// MIG: when a GPU has MIG mode on, each MIG device (a compute instance
// inside a GPU instance) is reported as a device of its own with its own
// UUID, its profile name ("1g.5gb", "3g.20gb"), its memory and
// ParentUUID set to the GPU. The GPU itself is still listed (placement
// skips a GPU that has MIG instances).
//
// NVLink: each GPU's enabled links are followed to the remote PCI device;
// a remote that is another GPU is a peer. Where the remote is not a GPU
// (an NVSwitch, as on DGX A100/H100), NVML's P2P status over NVLink
// decides which GPUs are peers. Topology gives the pairwise matrix that
// `nvidia-smi topo -m` prints (X, NV#, PIX, PXB, PHB, NODE, SYS).
//
// Containers: Host.Edits turns assigned UUIDs into device nodes
// (/dev/nvidiaN of exactly the assigned GPUs plus the control devices),
// read-only mounts of the driver's user-space libraries (found through the
// ldconfig cache) and binaries, and NVIDIA_VISIBLE_DEVICES /
// CUDA_VISIBLE_DEVICES, the way nvidia-container-toolkit's legacy mode
// does. A MIG instance gets its GPU's node plus the /dev/nvidia-caps nodes
// of its GPU and compute instance (from /proc/driver/nvidia/capabilities).
// Host.Root makes it run against a fake host tree in tests. The engine
// prefers a CDI spec (/etc/cdi, /var/run/cdi) when one names the devices.
//
// The package imports only the standard library and go-nvml; the agent
// converts Devices into api.GPUDevice and the engine converts Edits into
// its container spec.
package gpu
