// Package cgroups puts each container in its own control group and reads
// back what it uses: memory, CPU quota and shares, pids, cpuset and the
// device allowlist, on cgroup v1 and on cgroup v2, written as direct
// cgroupfs code.
//
// New looks at /sys/fs/cgroup once: a cgroup2 mount there means the unified
// layout (v2); anything else means the per-controller v1 hierarchies
// (memory, cpu, cpuacct, cpuset, pids, devices, freezer under
// /sys/fs/cgroup/NAME). A hybrid host's controller-less cgroup2 mount at
// /sys/fs/cgroup/unified does not count. NewV1 and NewV2 take the root
// explicitly; the unit tests point them at fake trees of plain files.
//
// A container's cgroup is <hierarchy>/berth/NAME:
//
//	m, err := cgroups.New()
//	quota, period := cgroups.CPUQuota(1.5) // --cpus 1.5
//	cg, err := m.Create(containerID, &cgroups.Resources{
//		MemoryLimit: 256 << 20, CPUQuota: quota, CPUPeriod: period,
//		PidsLimit: 1024, // Devices nil: Docker's default allowlist
//	})
//	err = cg.Add(initPid)
//	st, err := cg.Stats()     // usage, OOM kills
//	err = cg.Kill()           // SIGKILL everything, wait until empty
//	err = cg.Delete()         // no directory left in any hierarchy
//
// # v1
//
// Limits go to memory.limit_in_bytes, cpu.cfs_quota_us/cpu.cfs_period_us,
// cpu.shares, pids.max and cpuset.cpus/mems (berth/ and each container get
// their parent's cpus and mems first, since an empty v1 cpuset refuses
// tasks). Devices are "a" written to devices.deny followed by the rules.
// OOM kills come from the oom_kill line of memory.oom_control. Kill
// freezes the cgroup (freezer.state FROZEN), kills every pid, thaws, and
// waits for cgroup.procs to empty.
//
// # v2
//
// The first Create enables cpuset, cpu, memory and pids (those listed in
// cgroup.controllers) in cgroup.subtree_control of the root and of berth/,
// with no systemd involved. Limits go to memory.max, cpu.max ("quota
// period"), cpu.weight (converted from shares by SharesToWeight), pids.max
// and cpuset.cpus/mems; stats come from memory.current, memory.peak,
// cpu.stat, pids.current and the oom_kill line of memory.events. Kill
// writes cgroup.kill, or freezes with cgroup.freeze where that is missing.
//
// berth expects to own the top of the cgroup2 tree it is given. Inside a
// container whose /sys/fs/cgroup is a non-root cgroup that holds
// processes, the kernel's "no internal processes" rule refuses the
// subtree_control writes; the controllers are then reported as not
// enabled and limits that need them fail with ErrNotSupported.
//
// v2 has no devices controller: DeviceProgram compiles the rules into a
// BPF_PROG_TYPE_CGROUP_DEVICE program (github.com/cilium/ebpf/asm), which
// is loaded and attached to the cgroup's directory with
// BPF_F_ALLOW_MULTI; an Update attaches the new program before detaching
// the old. The generated instructions are unit-tested by an interpreter in
// the tests, and loading, attaching and enforcement are tested on the real
// cgroup2 mount of a v1 host (/sys/fs/cgroup/unified), where BPF device
// programs work although no controller is enabled. The controller files
// of v2 (memory.max, cpu.max, ...) are tested against a fake tree only: no
// host with controllers on cgroup2 was available.
//
// Every Cgroup also implements Pather, which gives its directory per
// controller for callers that must join it from a child process.
package cgroups
