package cgroups

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
)

// runDeviceProgram executes the marshalled bytecode of a device program
// against one access, the way the kernel would, for the instructions
// DeviceProgram emits. It is deliberately independent of the asm package:
// it reads raw 8-byte instructions with resolved jump offsets.
func runDeviceProgram(t testing.TB, insts asm.Instructions, devType, access, major, minor uint32) uint64 {
	t.Helper()
	var buf bytes.Buffer
	if err := insts.Marshal(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	code := buf.Bytes()
	if len(code)%8 != 0 {
		t.Fatalf("bytecode length %d", len(code))
	}
	ctx := [3]uint32{access<<16 | devType, major, minor}
	var reg [11]uint64
	isCtx := [11]bool{1: true} // R1 points at the context
	for pc, steps := 0, 0; ; steps++ {
		if pc < 0 || pc*8 >= len(code) || steps > 10000 {
			t.Fatalf("pc %d out of the program (%d insns) or looping", pc, len(code)/8)
		}
		in := code[pc*8 : pc*8+8]
		op := in[0]
		dst, src := in[1]&0x0f, in[1]>>4
		off := int16(binary.LittleEndian.Uint16(in[2:4]))
		imm := int32(binary.LittleEndian.Uint32(in[4:8]))
		pc++
		switch op {
		case 0x61: // ldxw dst, [src+off]
			if !isCtx[src] || off%4 != 0 || off < 0 || off > 8 {
				t.Fatalf("load from r%d%+d is not a context field", src, off)
			}
			reg[dst], isCtx[dst] = uint64(ctx[off/4]), false
		case 0x54: // and32 dst, imm
			reg[dst], isCtx[dst] = uint64(uint32(reg[dst])&uint32(imm)), false
		case 0x74: // rsh32 dst, imm
			reg[dst], isCtx[dst] = uint64(uint32(reg[dst])>>uint32(imm)), false
		case 0xbc: // mov32 dst, src
			reg[dst], isCtx[dst] = uint64(uint32(reg[src])), false
		case 0xb4: // mov32 dst, imm
			reg[dst], isCtx[dst] = uint64(uint32(imm)), false
		case 0x55: // jne dst, imm
			if reg[dst] != uint64(int64(imm)) {
				pc += int(off)
			}
		case 0x15: // jeq dst, imm
			if reg[dst] == uint64(int64(imm)) {
				pc += int(off)
			}
		case 0x5d: // jne dst, src
			if reg[dst] != reg[src] {
				pc += int(off)
			}
		case 0x95: // exit
			return reg[0]
		default:
			t.Fatalf("unexpected opcode %#x at %d", op, pc-1)
		}
	}
}

// referenceDecision is the rule semantics DeviceProgram promises, written
// forwards: walk the rules in order and let every match (an 'a' rule
// matches everything) overwrite the decision.
func referenceDecision(rules []DeviceRule, devType byte, access, major, minor uint32) bool {
	allow := true
	for _, r := range rules {
		if r.Type == 'a' {
			allow = r.Allow
			continue
		}
		if r.Type != devType || (r.Major >= 0 && uint32(r.Major) != major) || (r.Minor >= 0 && uint32(r.Minor) != minor) {
			continue
		}
		acc := uint32(accessBits(r.Access))
		if (r.Allow && access&acc == access) || (!r.Allow && access&acc != 0) {
			allow = r.Allow
		}
	}
	return allow
}

type devQuery struct {
	typ          byte
	major, minor uint32
	access       string
}

func (q devQuery) bits() (uint32, uint32) {
	typ := uint32(bpfDevChar)
	if q.typ == 'b' {
		typ = bpfDevBlock
	}
	return typ, uint32(accessBits(q.access))
}

func TestDeviceProgramDecisions(t *testing.T) {
	tests := []struct {
		name  string
		rules []DeviceRule
		q     devQuery
		allow bool
	}{
		{"default null rw", DefaultDevices(), devQuery{'c', 1, 3, "rw"}, true},
		{"default zero r", DefaultDevices(), devQuery{'c', 1, 5, "r"}, true},
		{"default urandom rwm", DefaultDevices(), devQuery{'c', 1, 9, "rwm"}, true},
		{"default pts", DefaultDevices(), devQuery{'c', 136, 7, "rw"}, true},
		{"default ptmx", DefaultDevices(), devQuery{'c', 5, 2, "rw"}, true},
		{"default tun", DefaultDevices(), devQuery{'c', 10, 200, "rw"}, true},
		{"default mknod any char", DefaultDevices(), devQuery{'c', 8, 0, "m"}, true},
		{"default mknod any block", DefaultDevices(), devQuery{'b', 8, 0, "m"}, true},
		{"default read disk", DefaultDevices(), devQuery{'b', 8, 0, "r"}, false},
		{"default kmsg", DefaultDevices(), devQuery{'c', 1, 11, "r"}, false},
		{"default mem", DefaultDevices(), devQuery{'c', 1, 1, "rw"}, false},
		{"default fuse", DefaultDevices(), devQuery{'c', 10, 229, "rw"}, false},
		{"default fuse mknod allowed as in Docker", DefaultDevices(), devQuery{'c', 10, 229, "m"}, true},
		{"default null as block", DefaultDevices(), devQuery{'b', 1, 3, "r"}, false},
		{"no rules allow all", nil, devQuery{'b', 8, 0, "rw"}, true},
		{"allow all then deny one", []DeviceRule{{Type: 'a', Allow: true}, {Type: 'c', Major: 1, Minor: 3, Access: "w"}}, devQuery{'c', 1, 3, "rw"}, false},
		{"allow all then deny write, read ok", []DeviceRule{{Type: 'a', Allow: true}, {Type: 'c', Major: 1, Minor: 3, Access: "w"}}, devQuery{'c', 1, 3, "r"}, true},
		{"read-only rule refuses write", []DeviceRule{{Type: 'a'}, {Type: 'c', Major: 1, Minor: 9, Access: "r", Allow: true}}, devQuery{'c', 1, 9, "w"}, false},
		{"read-only rule refuses rw", []DeviceRule{{Type: 'a'}, {Type: 'c', Major: 1, Minor: 9, Access: "r", Allow: true}}, devQuery{'c', 1, 9, "rw"}, false},
		{"later allow overrides deny", []DeviceRule{{Type: 'a'}, {Type: 'c', Major: 4, Minor: -1, Access: "rwm"}, {Type: 'c', Major: 4, Minor: 1, Access: "rw", Allow: true}}, devQuery{'c', 4, 1, "r"}, true},
		{"later 'a' clears earlier rules", []DeviceRule{{Type: 'c', Major: 1, Minor: 3, Access: "rwm", Allow: true}, {Type: 'a'}}, devQuery{'c', 1, 3, "r"}, false},
		{"wildcard major", []DeviceRule{{Type: 'a'}, {Type: 'c', Major: -1, Minor: 3, Access: "r", Allow: true}}, devQuery{'c', 77, 3, "r"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			insts, err := DeviceProgram(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			typ, acc := tt.q.bits()
			got := runDeviceProgram(t, insts, typ, acc, tt.q.major, tt.q.minor)
			if (got == 1) != tt.allow {
				t.Fatalf("%c %d:%d %s: program returned %d, want allow=%v\n%v", tt.q.typ, tt.q.major, tt.q.minor, tt.q.access, got, tt.allow, insts)
			}
			if ref := referenceDecision(tt.rules, tt.q.typ, acc, tt.q.major, tt.q.minor); ref != tt.allow {
				t.Fatalf("reference model says %v", ref)
			}
		})
	}
}

// TestDeviceProgramMatchesReference compares the program with the
// reference model over random rule lists and every access combination.
func TestDeviceProgramMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pick := func(vals ...int64) int64 { return vals[rng.Intn(len(vals))] }
	accesses := []string{"r", "w", "m", "rw", "rm", "wm", "rwm"}
	for iter := 0; iter < 300; iter++ {
		var rules []DeviceRule
		for n := rng.Intn(8); n >= 0; n-- {
			r := DeviceRule{Allow: rng.Intn(2) == 0, Major: pick(-1, 1, 5), Minor: pick(-1, 3, 9), Access: accesses[rng.Intn(len(accesses))]}
			switch rng.Intn(5) {
			case 0:
				r.Type = 'a'
			case 1:
				r.Type = 'b'
			default:
				r.Type = 'c'
			}
			rules = append(rules, r)
		}
		insts, err := DeviceProgram(rules)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []byte{'c', 'b'} {
			for _, major := range []uint32{1, 5, 7} {
				for _, minor := range []uint32{3, 9, 4} {
					for _, a := range accesses {
						q := devQuery{typ, major, minor, a}
						bt, acc := q.bits()
						got := runDeviceProgram(t, insts, bt, acc, major, minor) == 1
						if want := referenceDecision(rules, typ, acc, major, minor); got != want {
							t.Fatalf("rules %v: %c %d:%d %s: program %v, reference %v", rules, typ, major, minor, a, got, want)
						}
					}
				}
			}
		}
	}
}

func TestDeviceProgramShape(t *testing.T) {
	insts, err := DeviceProgram(DefaultDevices())
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprint(insts)
	// The context is read once, then each rule is a block ending in exit,
	// then the default.
	if !strings.HasPrefix(strings.TrimSpace(text), "0: LdXMemW dst: r2 src: r1 off: 0 imm: 0") {
		t.Errorf("program does not start by loading access_type:\n%s", text)
	}
	var exits int
	for _, in := range insts {
		if in.OpCode.JumpOp() == asm.Exit {
			exits++
		}
	}
	// 14 rules, the leading "a" becomes the default: 13 blocks + default.
	if exits != 14 {
		t.Errorf("%d exits, want 14:\n%s", exits, text)
	}
	last := insts[len(insts)-2]
	if last.Constant != 0 || last.Symbol() == "" {
		t.Errorf("default block %v: want r0 = 0 (deny) under a label", last)
	}

	for _, bad := range [][]DeviceRule{
		{{Type: 'x', Access: "r"}},
		{{Type: 'c', Major: 1, Minor: 3, Access: "rx"}},
		{{Type: 'c', Major: 1, Minor: 3}},
		{{Type: 'c', Major: 1 << 31, Minor: 3, Access: "r"}},
		{{Type: 'c', Major: -2, Minor: 3, Access: "r"}},
	} {
		if _, err := DeviceProgram(bad); err == nil {
			t.Errorf("DeviceProgram(%v) accepted a bad rule", bad)
		}
	}
}

func TestDeviceRuleString(t *testing.T) {
	tests := []struct {
		r    DeviceRule
		want string
	}{
		{DeviceRule{Type: 'a'}, "a *:* rwm"},
		{DeviceRule{Type: 'c', Major: 1, Minor: 3, Access: "rwm"}, "c 1:3 rwm"},
		{DeviceRule{Type: 'c', Major: -1, Minor: -1, Access: "m"}, "c *:* m"},
		{DeviceRule{Type: 'b', Major: 8, Minor: -1, Access: "r"}, "b 8:* r"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.r.String(); got != tt.want {
				t.Fatalf("String() = %q", got)
			}
		})
	}
}

func TestCPUQuotaAndWeight(t *testing.T) {
	tests := []struct {
		cpus  float64
		quota int64
	}{{1.5, 150000}, {0.5, 50000}, {2, 200000}, {0, 0}, {-1, 0}, {0.001, 1000}, {0.333, 33300}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.cpus), func(t *testing.T) {
			q, p := CPUQuota(tt.cpus)
			if q != tt.quota || p != 100000 {
				t.Fatalf("CPUQuota(%v) = %d, %d", tt.cpus, q, p)
			}
		})
	}
	weights := []struct{ shares, weight uint64 }{{0, 0}, {2, 1}, {1024, 39}, {512, 20}, {262144, 10000}, {1 << 20, 10000}, {1, 1}}
	for _, w := range weights {
		if got := SharesToWeight(w.shares); got != w.weight {
			t.Errorf("SharesToWeight(%d) = %d, want %d", w.shares, got, w.weight)
		}
	}
}

// FuzzDeviceProgram decodes arbitrary bytes into a rule list (4 bytes a
// rule) and checks the compiled program against the reference model for
// every device and access in a small universe.
func FuzzDeviceProgram(f *testing.F) {
	f.Add([]byte{0, 0, 0, 7, 1, 1, 1, 3})
	f.Add([]byte{4, 0, 0, 7, 3, 2, 2, 1, 2, 0, 1, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*32 {
			return
		}
		nums := []int64{-1, 1, 5}
		var rules []DeviceRule
		for i := 0; i+4 <= len(data); i += 4 {
			r := DeviceRule{
				Allow: data[i]&1 == 1,
				Type:  []byte{'a', 'c', 'b'}[int(data[i]>>1)%3],
				Major: nums[int(data[i+1])%3],
				Minor: nums[int(data[i+2])%3],
			}
			acc := data[i+3] % 8
			if acc == 0 {
				acc = 7
			}
			for bit, c := range "rwm" {
				if acc&(1<<bit) != 0 {
					r.Access += string(c)
				}
			}
			rules = append(rules, r)
		}
		insts, err := DeviceProgram(rules)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []byte{'c', 'b'} {
			for _, major := range []uint32{1, 5, 9} {
				for _, minor := range []uint32{1, 5, 9} {
					for acc := uint32(1); acc < 8; acc++ {
						bt := uint32(bpfDevChar)
						if typ == 'b' {
							bt = bpfDevBlock
						}
						got := runDeviceProgram(t, insts, bt, acc, major, minor) == 1
						if want := referenceDecision(rules, typ, acc, major, minor); got != want {
							t.Fatalf("rules %v: %c %d:%d access %b: program %v, reference %v", rules, typ, major, minor, acc, got, want)
						}
					}
				}
			}
		}
	})
}
