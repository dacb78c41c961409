package seccomp

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
)

// arch is an architecture the filter can recognise.
type arch struct {
	table string // key in syscallTables ("" when berth has no table)
	audit uint32 // AUDIT_ARCH_*
	wide  bool   // 64-bit arguments
	short string // libseccomp's short name, as in includes.arches
}

// archByName lists libseccomp's architecture names. Those without a table
// are accepted in profiles and ignored unless they are the host's.
var archByName = map[string]arch{
	"SCMP_ARCH_X86":         {"386", 0x40000003, false, "x86"},
	"SCMP_ARCH_X86_64":      {"amd64", 0xC000003E, true, "amd64"},
	"SCMP_ARCH_X32":         {"", 0xC000003E, true, "x32"},
	"SCMP_ARCH_ARM":         {"arm", 0x40000028, false, "arm"},
	"SCMP_ARCH_AARCH64":     {"arm64", 0xC00000B7, true, "arm64"},
	"SCMP_ARCH_MIPS":        {"", 0, false, "mips"},
	"SCMP_ARCH_MIPS64":      {"", 0, true, "mips64"},
	"SCMP_ARCH_MIPS64N32":   {"", 0, false, "mips64n32"},
	"SCMP_ARCH_MIPSEL":      {"", 0, false, "mipsel"},
	"SCMP_ARCH_MIPSEL64":    {"", 0, true, "mipsel64"},
	"SCMP_ARCH_MIPSEL64N32": {"", 0, false, "mipsel64n32"},
	"SCMP_ARCH_PPC":         {"", 0, false, "ppc"},
	"SCMP_ARCH_PPC64":       {"", 0, true, "ppc64"},
	"SCMP_ARCH_PPC64LE":     {"", 0, true, "ppc64le"},
	"SCMP_ARCH_S390":        {"", 0, false, "s390"},
	"SCMP_ARCH_S390X":       {"", 0, true, "s390x"},
	"SCMP_ARCH_PARISC":      {"", 0, false, "parisc"},
	"SCMP_ARCH_PARISC64":    {"", 0, true, "parisc64"},
	"SCMP_ARCH_RISCV64":     {"", 0, true, "riscv64"},
	"SCMP_ARCH_LOONGARCH64": {"", 0, true, "loongarch64"},
}

// nativeArch maps GOARCH to libseccomp's architecture name.
var nativeArch = map[string]string{
	"386": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM", "arm64": "SCMP_ARCH_AARCH64",
	"mips": "SCMP_ARCH_MIPS", "mips64": "SCMP_ARCH_MIPS64", "mipsle": "SCMP_ARCH_MIPSEL", "mips64le": "SCMP_ARCH_MIPSEL64",
	"ppc64": "SCMP_ARCH_PPC64", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
	"riscv64": "SCMP_ARCH_RISCV64", "loong64": "SCMP_ARCH_LOONGARCH64",
}

// AuditArch returns the AUDIT_ARCH_* value of a GOARCH, 0 if unknown.
func AuditArch(goarch string) uint32 {
	return archByName[nativeArch[goarch]].audit
}

// SyscallNumber returns the number of a syscall on a GOARCH (386, amd64,
// arm, arm64).
func SyscallNumber(goarch, name string) (uint32, bool) {
	n, ok := syscallTables[goarch][name]
	return n, ok
}

// x32Bit marks x32 system calls on amd64 (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

const (
	errnoEPERM  = 1
	errnoENOSYS = 38
)

// Options describe the container and host a profile is compiled for.
type Options struct {
	// Arch is the host's GOARCH; empty means runtime.GOARCH.
	Arch string
	// Caps are the container's bounding capabilities ("CAP_SYS_ADMIN"),
	// which select the rules with includes/excludes caps.
	Caps []string
	// Kernel is the host's release ("6.18.44"), for minKernel; empty
	// means the running kernel's.
	Kernel string
}

// cond is one argument comparison.
type cond struct {
	off           uint32 // offset of the argument's low word
	op            string
	value, value2 uint64
	wide          bool // compare the high word too (64-bit arches)
}

// rule is an action taken when all of its conditions hold.
type rule struct {
	ret   uint32
	conds []cond
}

// Compile builds the filter of profile p for one container. An
// unconfined profile returns a nil program.
func Compile(p *Profile, opts Options) (Program, error) {
	if p.Unconfined() {
		return nil, nil
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	goarch := opts.Arch
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	kernel := opts.Kernel
	if kernel == "" {
		kernel = hostKernel()
	}
	nativeName, ok := nativeArch[goarch]
	if !ok || archByName[nativeName].table == "" {
		return nil, fmt.Errorf("%w: no syscall table for %s (berth has amd64, 386, arm64 and arm)", ErrUnsupported, goarch)
	}
	native := archByName[nativeName]
	// The native arch always, then the compat arches the profile names.
	archNames := []string{nativeName}
	if len(p.ArchMap) > 0 {
		for _, m := range p.ArchMap {
			if m.Arch == nativeName {
				archNames = append(archNames, m.SubArches...)
			}
		}
	} else {
		archNames = append(archNames, p.Architectures...)
	}
	var arches []arch
	seen := map[uint32]bool{}
	for _, n := range archNames {
		a := archByName[n]
		if a.table == "" || seen[a.audit] {
			continue // x32 and arches without tables: default action / kill
		}
		seen[a.audit] = true
		arches = append(arches, a)
	}

	defRet := actionRet(p.DefaultAction, p.DefaultErrnoRet)
	caps := map[string]bool{}
	for _, c := range opts.Caps {
		caps[strings.ToUpper(c)] = true
	}
	type named struct {
		names []string
		rules []rule // relative to argument offsets, filled per arch
		args  []Arg
		ret   uint32
	}
	var active []named
	for _, s := range p.Syscalls {
		if !applies(s, native.short, caps, kernel) {
			continue
		}
		names := s.Names
		if s.Name != "" {
			names = []string{s.Name}
		}
		active = append(active, named{names: names, args: s.Args, ret: actionRet(s.Action, s.ErrnoRet)})
	}

	var a asm
	badArch := a.newLabel()
	archLabels := make([]label, len(arches))
	a.load(offArch)
	for i, ar := range arches {
		archLabels[i] = a.newLabel()
		a.jump(opJeqK, ar.audit, archLabels[i], next)
	}
	a.mark(badArch)
	a.ret(RetKillProcess)
	for i, ar := range arches {
		a.mark(archLabels[i])
		table := syscallTables[ar.table]
		byNr := map[uint32][]rule{}
		for _, s := range active {
			rs := expandRules(s.args, s.ret, ar.wide)
			for _, name := range s.names {
				nr, ok := table[name]
				if !ok {
					continue // not on this arch (or newer than the table)
				}
				byNr[nr] = append(byNr[nr], rs...)
			}
		}
		var maxNr uint32
		for _, nr := range table {
			if nr > maxNr {
				maxNr = nr
			}
		}
		a.load(offNr)
		if ar.audit == archByName["SCMP_ARCH_X86_64"].audit {
			// x32 calls share the arch value; berth has no x32 table.
			deny := a.newLabel()
			ok := a.newLabel()
			a.jump(opJgeK, x32Bit, deny, ok)
			a.mark(deny)
			a.ret(defRet)
			a.mark(ok)
		}
		if defRet != RetAllow && defRet != RetLog {
			// A call newer than the profile gets ENOSYS, so the C
			// library falls back to an older one (as runc does).
			enosys := a.newLabel()
			ok := a.newLabel()
			a.jump(opJgtK, maxNr, enosys, ok)
			a.mark(enosys)
			a.ret(RetErrno | errnoENOSYS)
			a.mark(ok)
		}
		nrs := make([]uint32, 0, len(byNr))
		for nr := range byNr {
			nrs = append(nrs, nr)
		}
		slices.Sort(nrs)
		emitTree(&a, nrs, byNr, defRet)
	}
	prog, err := a.assemble()
	if err != nil {
		return nil, err
	}
	return Program(prog), nil
}

// applies evaluates a rule's includes and excludes as Docker does.
func applies(s Syscall, archShort string, caps map[string]bool, kernel string) bool {
	if f := s.Excludes; f != nil {
		if slices.Contains(f.Arches, archShort) {
			return false
		}
		for _, c := range f.Caps {
			if caps[strings.ToUpper(c)] {
				return false
			}
		}
		if f.MinKernel != "" && kernelAtLeast(kernel, f.MinKernel) {
			return false
		}
	}
	if f := s.Includes; f != nil {
		if len(f.Arches) > 0 && !slices.Contains(f.Arches, archShort) {
			return false
		}
		for _, c := range f.Caps {
			if !caps[strings.ToUpper(c)] {
				return false
			}
		}
		if f.MinKernel != "" && !kernelAtLeast(kernel, f.MinKernel) {
			return false
		}
	}
	return true
}

// expandRules turns a rule's argument list into rules: all conditions
// together, or, when an argument is tested twice, one rule per condition
// (libseccomp would AND them into a rule that never matches; runc splits).
func expandRules(args []Arg, ret uint32, wide bool) []rule {
	conds := make([]cond, len(args))
	count := map[uint]int{}
	split := false
	for i, a := range args {
		conds[i] = cond{off: offArgs + 8*uint32(a.Index), op: a.Op, value: a.Value, value2: a.ValueTwo, wide: wide}
		count[a.Index]++
		if count[a.Index] > 1 {
			split = true
		}
	}
	if !split {
		return []rule{{ret: ret, conds: conds}}
	}
	out := make([]rule, len(conds))
	for i, c := range conds {
		out[i] = rule{ret: ret, conds: []cond{c}}
	}
	return out
}

func actionRet(action string, errno *uint) uint32 {
	e := uint32(errnoEPERM)
	if errno != nil {
		e = uint32(*errno)
	}
	switch action {
	case "SCMP_ACT_ALLOW":
		return RetAllow
	case "SCMP_ACT_ERRNO":
		return RetErrno | (e & retDataMask)
	case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD":
		return RetKillThread
	case "SCMP_ACT_KILL_PROCESS":
		return RetKillProcess
	case "SCMP_ACT_TRAP":
		return RetTrap
	case "SCMP_ACT_TRACE":
		return RetTrace | (e & retDataMask)
	case "SCMP_ACT_LOG":
		return RetLog
	}
	return RetKillProcess // Validate refuses anything else
}

// segment is a run of consecutive syscall numbers with the same
// unconditional action, or one number whose rules test arguments.
type segment struct {
	lo, hi uint32
	ret    uint32
	rules  []rule // set for a number with argument conditions
}

// segments groups the sorted numbers: most allowed syscalls come in runs
// (0-20, 22-24, ...), so a few dozen ranges stand for hundreds of names.
func segments(nrs []uint32, byNr map[uint32][]rule) []segment {
	var out []segment
	for _, nr := range nrs {
		rs := byNr[nr]
		if len(rs[0].conds) > 0 {
			out = append(out, segment{lo: nr, hi: nr, rules: rs})
			continue
		}
		if n := len(out); n > 0 && out[n-1].rules == nil && out[n-1].hi+1 == nr && out[n-1].ret == rs[0].ret {
			out[n-1].hi = nr
			continue
		}
		out = append(out, segment{lo: nr, hi: nr, ret: rs[0].ret})
	}
	return out
}

// leafSize is how many segments a leaf of the search tree tests in turn.
const leafSize = 4

// emitTree emits a binary search over the segments of nrs (sorted) with A
// holding the syscall number; every path ends in a return.
func emitTree(a *asm, nrs []uint32, byNr map[uint32][]rule, defRet uint32) {
	emitSegments(a, segments(nrs, byNr), defRet)
}

func emitSegments(a *asm, segs []segment, defRet uint32) {
	if len(segs) <= leafSize {
		emitLeaf(a, segs, defRet)
		return
	}
	mid := len(segs) / 2
	right := a.newLabel()
	a.jump(opJgeK, segs[mid].lo, right, next)
	emitSegments(a, segs[:mid], defRet)
	a.mark(right)
	emitSegments(a, segs[mid:], defRet)
}

// emitLeaf tests the segments in ascending order: past a segment's end,
// on to the next; inside it, its action; below its start, the default
// (the segments before it were passed already).
func emitLeaf(a *asm, segs []segment, defRet uint32) {
	def := a.newLabel()
	shared := map[uint32]label{} // unconditional actions, one return each
	var sharedOrder []uint32
	bodies := make([]label, len(segs))
	for i, sg := range segs {
		var target label
		if sg.rules == nil {
			l, ok := shared[sg.ret]
			if !ok {
				l = a.newLabel()
				shared[sg.ret] = l
				sharedOrder = append(sharedOrder, sg.ret)
			}
			target = l
		} else {
			target = a.newLabel()
			bodies[i] = target
		}
		if sg.lo == sg.hi {
			a.jump(opJeqK, sg.lo, target, next)
			continue
		}
		skip := a.newLabel()
		a.jump(opJgtK, sg.hi, skip, next)
		a.jump(opJgeK, sg.lo, target, def)
		a.mark(skip)
	}
	a.mark(def)
	a.ret(defRet)
	for _, r := range sharedOrder {
		a.mark(shared[r])
		a.ret(r)
	}
	for i, sg := range segs {
		if sg.rules != nil {
			a.mark(bodies[i])
			emitRules(a, sg.rules, defRet)
		}
	}
}

// emitRules tests each rule in order; the first that holds returns its
// action, and none holding returns the default.
func emitRules(a *asm, rs []rule, defRet uint32) {
	for _, r := range rs {
		if len(r.conds) == 0 {
			a.ret(r.ret)
			return
		}
		fail := a.newLabel()
		for _, c := range r.conds {
			emitCond(a, c, fail)
		}
		a.ret(r.ret)
		a.mark(fail)
	}
	a.ret(defRet)
}

// emitCond falls through when c holds and jumps to fail otherwise. The
// kernel hands 64-bit arguments as two little-endian words; on 32-bit
// arches only the low word is compared, as libseccomp does.
func emitCond(a *asm, c cond, fail label) {
	lo, hi := uint32(c.value), uint32(c.value>>32)
	pass := a.newLabel()
	// hiEq is where the low word is tested: the high words are equal.
	hiEq := a.newLabel()
	switch c.op {
	case "SCMP_CMP_EQ":
		if c.wide {
			a.load(c.off + 4)
			a.jump(opJeqK, hi, next, fail)
		}
		a.load(c.off)
		a.jump(opJeqK, lo, next, fail)
	case "SCMP_CMP_NE":
		if c.wide {
			a.load(c.off + 4)
			a.jump(opJeqK, hi, next, pass)
		}
		a.load(c.off)
		a.jump(opJeqK, lo, fail, next)
	case "SCMP_CMP_MASKED_EQ":
		d := c.value2
		if c.wide {
			a.load(c.off + 4)
			a.emit(opAndK, hi)
			a.jump(opJeqK, uint32(d>>32), next, fail)
		}
		a.load(c.off)
		a.emit(opAndK, lo)
		a.jump(opJeqK, uint32(d), next, fail)
	case "SCMP_CMP_GT", "SCMP_CMP_GE":
		if c.wide {
			a.load(c.off + 4)
			a.jump(opJgtK, hi, pass, next)
			a.jump(opJeqK, hi, hiEq, fail)
		}
		a.mark(hiEq)
		a.load(c.off)
		op := uint16(opJgtK)
		if c.op == "SCMP_CMP_GE" {
			op = opJgeK
		}
		a.jump(op, lo, next, fail)
	case "SCMP_CMP_LT", "SCMP_CMP_LE":
		if c.wide {
			a.load(c.off + 4)
			a.jump(opJgtK, hi, fail, next)
			a.jump(opJeqK, hi, hiEq, pass)
		}
		a.mark(hiEq)
		a.load(c.off)
		op := uint16(opJgeK)
		if c.op == "SCMP_CMP_LE" {
			op = opJgtK
		}
		a.jump(op, lo, fail, next)
	}
	a.mark(pass)
}
