package cgroups

import (
	"fmt"
	"math"
	"strconv"

	"github.com/cilium/ebpf/asm"
)

// Access and type bits of struct bpf_cgroup_dev_ctx (include/uapi/linux/bpf.h):
// access_type is (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*.
const (
	bpfDevBlock = 1 // BPF_DEVCG_DEV_BLOCK
	bpfDevChar  = 2 // BPF_DEVCG_DEV_CHAR

	bpfAccMknod = 1 // BPF_DEVCG_ACC_MKNOD
	bpfAccRead  = 2 // BPF_DEVCG_ACC_READ
	bpfAccWrite = 4 // BPF_DEVCG_ACC_WRITE
	bpfAccAll   = bpfAccMknod | bpfAccRead | bpfAccWrite
)

// DeviceProgramLicense is the license string the device program is loaded
// with; the kernel only checks it for GPL-only helpers, which it uses none of.
const DeviceProgramLicense = "Apache"

// effectiveRules reduces an ordered rule list the way the v1 devices
// controller reads it: an 'a' rule sets the default (allow or deny
// everything) and clears every rule before it; later rules take precedence
// over earlier ones. A cgroup with no rules allows every device, as a new
// cgroup does.
func effectiveRules(rules []DeviceRule) (defaultAllow bool, rest []DeviceRule, err error) {
	defaultAllow = true
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return false, nil, err
		}
		if r.Type == 'a' {
			defaultAllow = r.Allow
			rest = rest[:0]
			continue
		}
		rest = append(rest, r)
	}
	return defaultAllow, rest, nil
}

func accessBits(access string) int32 {
	var b int32
	for _, c := range access {
		switch c {
		case 'r':
			b |= bpfAccRead
		case 'w':
			b |= bpfAccWrite
		case 'm':
			b |= bpfAccMknod
		}
	}
	return b
}

// DeviceProgram compiles an ordered device rule list into the instructions
// of a BPF_PROG_TYPE_CGROUP_DEVICE program, cgroup v2's replacement for the
// v1 devices controller. The program returns 1 to allow an access and 0 to
// refuse it with EPERM.
//
// Rules are tested from the last to the first, and the first that matches
// decides, so that a later rule overrides an earlier one as it does when
// the same list is written to devices.allow/devices.deny on v1. An allow
// rule matches when it grants every access requested; a deny rule matches
// when it names any of them. With no match the program returns the default
// set by the last 'a' rule (allow when there is none).
func DeviceProgram(rules []DeviceRule) (asm.Instructions, error) {
	defaultAllow, rest, err := effectiveRules(rules)
	if err != nil {
		return nil, err
	}
	// R1 points at struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }.
	insts := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // R2 = device type
		asm.And.Imm32(asm.R2, 0xFFFF),
		asm.LoadMem(asm.R3, asm.R1, 0, asm.Word), // R3 = requested access
		asm.RSh.Imm32(asm.R3, 16),
		asm.LoadMem(asm.R4, asm.R1, 4, asm.Word), // R4 = major
		asm.LoadMem(asm.R5, asm.R1, 8, asm.Word), // R5 = minor
	}
	label := func(i int) string { return "rule-" + strconv.Itoa(i) }
	block := 0
	for i := len(rest) - 1; i >= 0; i-- {
		r := rest[i]
		if r.Major > math.MaxInt32 || r.Minor > math.MaxInt32 {
			return nil, fmt.Errorf("cgroups: device rule %q: major and minor must fit in 31 bits for the v2 device filter", r.String())
		}
		next := label(block + 1)
		typ := int32(bpfDevChar)
		if r.Type == 'b' {
			typ = bpfDevBlock
		}
		b := asm.Instructions{asm.JNE.Imm(asm.R2, typ, next)}
		acc := accessBits(r.Access)
		if acc != bpfAccAll {
			b = append(b,
				asm.Mov.Reg32(asm.R1, asm.R3),
				asm.And.Imm32(asm.R1, acc))
			if r.Allow {
				// Requested access must be a subset of the rule's.
				b = append(b, asm.JNE.Reg(asm.R1, asm.R3, next))
			} else {
				// Any requested access the rule names refuses it.
				b = append(b, asm.JEq.Imm(asm.R1, 0, next))
			}
		}
		if r.Major >= 0 {
			b = append(b, asm.JNE.Imm(asm.R4, int32(r.Major), next))
		}
		if r.Minor >= 0 {
			b = append(b, asm.JNE.Imm(asm.R5, int32(r.Minor), next))
		}
		b = append(b, asm.Mov.Imm32(asm.R0, boolInt(r.Allow)), asm.Return())
		b[0] = b[0].WithSymbol(label(block))
		insts = append(insts, b...)
		block++
	}
	insts = append(insts,
		asm.Mov.Imm32(asm.R0, boolInt(defaultAllow)).WithSymbol(label(block)),
		asm.Return())
	return insts, nil
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
