package cgroups

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// attachDeviceFilter loads insts as a BPF_PROG_TYPE_CGROUP_DEVICE program
// and attaches it to the cgroup directory dir with BPF_F_ALLOW_MULTI, then
// detaches the filters that were there before (an earlier Create or
// Update). The new filter goes on first, so there is no moment without
// one: while both are attached the kernel requires both to allow.
//
// The program stays attached after its file descriptor is closed, until it
// is detached or the cgroup is removed.
func attachDeviceFilter(dir string, insts asm.Instructions) error {
	// Kernels before 5.11 charge BPF programs to RLIMIT_MEMLOCK. Raising
	// it may be refused (no CAP_SYS_RESOURCE); loading then says why.
	_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})

	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cgroups: open %s for the device filter: %w", dir, err)
	}
	defer d.Close()
	fd := int(d.Fd())

	old, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		return fmt.Errorf("cgroups: list device filters of %s: %w", dir, err)
	}

	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "berth_devices",
		Type:         ebpf.CGroupDevice,
		Instructions: insts,
		License:      DeviceProgramLicense,
	})
	if err != nil {
		return fmt.Errorf("cgroups: load the device filter for %s (needs CAP_SYS_ADMIN or CAP_BPF): %w", dir, err)
	}
	defer prog.Close()

	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  fd,
		Program: prog,
		Attach:  ebpf.AttachCGroupDevice,
		Flags:   unix.BPF_F_ALLOW_MULTI,
	}); err != nil {
		return fmt.Errorf("cgroups: attach the device filter to %s: %w", dir, err)
	}

	for _, ap := range old.Programs {
		p, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("cgroups: open old device filter %d of %s: %w", ap.ID, dir, err)
		}
		err = link.RawDetachProgram(link.RawDetachProgramOptions{
			Target:  fd,
			Program: p,
			Attach:  ebpf.AttachCGroupDevice,
		})
		p.Close()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroups: detach old device filter %d of %s: %w", ap.ID, dir, err)
		}
	}
	return nil
}
