package seccomp

import (
	"encoding/binary"
	"fmt"
)

// Instruction is one classic BPF instruction (struct sock_filter).
type Instruction struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// Classic BPF opcodes used here.
const (
	opLdAbs  = 0x20 // BPF_LD|BPF_W|BPF_ABS
	opAndK   = 0x54 // BPF_ALU|BPF_AND|BPF_K
	opJa     = 0x05 // BPF_JMP|BPF_JA
	opJeqK   = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
	opJgtK   = 0x25 // BPF_JMP|BPF_JGT|BPF_K
	opJgeK   = 0x35 // BPF_JMP|BPF_JGE|BPF_K
	opRetK   = 0x06 // BPF_RET|BPF_K
	maxInsns = 4096 // BPF_MAXINSNS
)

// Return values of a seccomp filter.
const (
	RetKillProcess uint32 = 0x80000000
	RetKillThread  uint32 = 0x00000000
	RetTrap        uint32 = 0x00030000
	RetErrno       uint32 = 0x00050000
	RetTrace       uint32 = 0x7ff00000
	RetLog         uint32 = 0x7ffc0000
	RetAllow       uint32 = 0x7fff0000
	retDataMask    uint32 = 0x0000ffff
)

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// label names a position in a program being assembled.
type label int

// next is the fall-through target of a conditional jump.
const next label = -1

// item is an instruction whose jumps name labels, or a label definition.
type item struct {
	ins    Instruction
	jt, jf label // conditional jumps
	ja     label // BPF_JA target
	def    label // >= 0: this item only defines a label
}

// asm assembles a program with symbolic forward jumps. Conditional jumps
// reach at most 255 instructions; the assembler inserts BPF_JA
// trampolines (32-bit offsets) where a target is further.
type asm struct {
	items  []item
	labels int
}

func (a *asm) newLabel() label { l := label(a.labels); a.labels++; return l }

func (a *asm) mark(l label) { a.items = append(a.items, item{def: l, jt: next, jf: next, ja: next}) }

func (a *asm) emit(code uint16, k uint32) {
	a.items = append(a.items, item{ins: Instruction{Code: code, K: k}, def: -1, jt: next, jf: next, ja: next})
}

func (a *asm) jump(code uint16, k uint32, jt, jf label) {
	a.items = append(a.items, item{ins: Instruction{Code: code, K: k}, def: -1, jt: jt, jf: jf, ja: next})
}

func (a *asm) ja(l label) {
	a.items = append(a.items, item{ins: Instruction{Code: opJa}, def: -1, jt: next, jf: next, ja: l})
}

func (a *asm) ret(v uint32)    { a.emit(opRetK, v) }
func (a *asm) load(off uint32) { a.emit(opLdAbs, off) }

// assemble resolves the labels into offsets.
func (a *asm) assemble() ([]Instruction, error) {
	items := a.items
	for round := 0; ; round++ {
		if round > 64 {
			return nil, fmt.Errorf("seccomp: assembler did not converge")
		}
		pos := make([]int, len(items)) // index of the instruction an item becomes
		at := map[label]int{}
		n := 0
		for i, it := range items {
			pos[i] = n
			if it.def >= 0 {
				at[it.def] = n
				continue
			}
			n++
		}
		if n > maxInsns {
			return nil, fmt.Errorf("%w: %d instructions", ErrTooLarge, n)
		}
		far := func(i int, l label) bool { return l != next && at[l]-(pos[i]+1) > 255 }
		var out []item
		changed := false
		for i, it := range items {
			out = append(out, it)
			if it.def >= 0 || it.ins.Code&0x07 != 0x05 || it.ins.Code == opJa {
				continue
			}
			if !far(i, it.jt) && !far(i, it.jf) {
				continue
			}
			// Trampolines right after the jump: the jump's branches
			// land on them, and they jump on with 32-bit offsets.
			changed = true
			j := &out[len(out)-1]
			var tramp []item
			skip := label(next)
			if far(i, it.jt) {
				l := a.newLabel()
				tramp = append(tramp, item{def: l, jt: next, jf: next, ja: next}, item{ins: Instruction{Code: opJa}, def: -1, jt: next, jf: next, ja: it.jt})
				j.jt = l
			}
			if far(i, it.jf) {
				l := a.newLabel()
				tramp = append(tramp, item{def: l, jt: next, jf: next, ja: next}, item{ins: Instruction{Code: opJa}, def: -1, jt: next, jf: next, ja: it.jf})
				j.jf = l
			}
			// The fall-through must skip the trampolines.
			if j.jt == next || j.jf == next {
				skip = a.newLabel()
				if j.jt == next {
					j.jt = skip
				}
				if j.jf == next {
					j.jf = skip
				}
			}
			out = append(out, tramp...)
			if skip != next {
				out = append(out, item{def: skip, jt: next, jf: next, ja: next})
			}
		}
		items = out
		if changed {
			continue
		}
		prog := make([]Instruction, 0, n)
		for i, it := range items {
			if it.def >= 0 {
				continue
			}
			ins := it.ins
			off := func(l label) int {
				if l == next {
					return 0
				}
				t, ok := at[l]
				if !ok {
					panic("seccomp: jump to an undefined label")
				}
				return t - (pos[i] + 1)
			}
			if ins.Code == opJa {
				d := off(it.ja)
				if d < 0 {
					return nil, fmt.Errorf("seccomp: backward jump")
				}
				ins.K = uint32(d)
			} else if ins.Code&0x07 == 0x05 {
				t, f := off(it.jt), off(it.jf)
				if t < 0 || f < 0 || t > 255 || f > 255 {
					return nil, fmt.Errorf("seccomp: jump out of range")
				}
				ins.Jt, ins.Jf = uint8(t), uint8(f)
			}
			prog = append(prog, ins)
		}
		return prog, nil
	}
}

// Program is a compiled filter.
type Program []Instruction

// Bytes encodes the program as the kernel's struct sock_filter array in
// the host's (little-endian) byte order.
func (p Program) Bytes() []byte {
	out := make([]byte, 8*len(p))
	for i, ins := range p {
		binary.LittleEndian.PutUint16(out[8*i:], ins.Code)
		out[8*i+2] = ins.Jt
		out[8*i+3] = ins.Jf
		binary.LittleEndian.PutUint32(out[8*i+4:], ins.K)
	}
	return out
}

// Evaluate runs the program on one system call as the kernel would, and
// returns the filter's return value (RetAllow, RetErrno|errno, ...).
// arch is an AUDIT_ARCH_* value. A malformed program returns an error.
func (p Program) Evaluate(arch, nr uint32, args [6]uint64) (uint32, error) {
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], nr)
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(p); pc++ {
		ins := p[pc]
		switch ins.Code {
		case opLdAbs:
			if ins.K > 60 || ins.K%4 != 0 {
				return 0, fmt.Errorf("seccomp: load at %d out of seccomp_data", ins.K)
			}
			acc = binary.LittleEndian.Uint32(data[ins.K:])
		case opAndK:
			acc &= ins.K
		case opJa:
			pc += int(ins.K)
		case opJeqK, opJgtK, opJgeK:
			var t bool
			switch ins.Code {
			case opJeqK:
				t = acc == ins.K
			case opJgtK:
				t = acc > ins.K
			default:
				t = acc >= ins.K
			}
			if t {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case opRetK:
			return ins.K, nil
		default:
			return 0, fmt.Errorf("seccomp: unknown opcode %#x at %d", ins.Code, pc)
		}
	}
	return 0, fmt.Errorf("seccomp: program ends without a return")
}

// Decode reads a program encoded by Bytes.
func Decode(b []byte) (Program, error) {
	if len(b)%8 != 0 || len(b)/8 > maxInsns {
		return nil, fmt.Errorf("seccomp: %d bytes is not a BPF program of at most %d instructions", len(b), maxInsns)
	}
	p := make(Program, len(b)/8)
	for i := range p {
		p[i] = Instruction{
			Code: binary.LittleEndian.Uint16(b[8*i:]),
			Jt:   b[8*i+2],
			Jf:   b[8*i+3],
			K:    binary.LittleEndian.Uint32(b[8*i+4:]),
		}
	}
	return p, nil
}
