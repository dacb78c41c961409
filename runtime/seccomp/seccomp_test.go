package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// dockerDefaultCaps is docker's default capability set.
var dockerDefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func nr(t *testing.T, arch, name string) uint32 {
	t.Helper()
	n, ok := SyscallNumber(arch, name)
	if !ok {
		t.Fatalf("no syscall %s on %s", name, arch)
	}
	return n
}

func TestDefaultProfileDecisions(t *testing.T) {
	const (
		eperm  = RetErrno | 1
		enosys = RetErrno | 38
	)
	sysAdmin := append(slices.Clone(dockerDefaultCaps), "CAP_SYS_ADMIN")
	tests := []struct {
		name    string
		arch    string // GOARCH the filter is built for
		audit   string // GOARCH of the calling task
		syscall string
		nr      uint32 // used when syscall is empty
		args    [6]uint64
		caps    []string
		want    uint32
	}{
		{"read", "amd64", "amd64", "read", 0, [6]uint64{}, nil, RetAllow},
		{"execve", "amd64", "amd64", "execve", 0, [6]uint64{}, nil, RetAllow},
		{"unshare", "amd64", "amd64", "unshare", 0, [6]uint64{}, nil, eperm},
		{"mount", "amd64", "amd64", "mount", 0, [6]uint64{}, nil, eperm},
		{"keyctl", "amd64", "amd64", "keyctl", 0, [6]uint64{}, nil, eperm},
		{"add_key", "amd64", "amd64", "add_key", 0, [6]uint64{}, nil, eperm},
		{"kexec_load", "amd64", "amd64", "kexec_load", 0, [6]uint64{}, sysAdmin, eperm},
		{"mount with CAP_SYS_ADMIN", "amd64", "amd64", "mount", 0, [6]uint64{}, sysAdmin, RetAllow},
		{"unshare with CAP_SYS_ADMIN", "amd64", "amd64", "unshare", 0, [6]uint64{}, sysAdmin, RetAllow},
		{"clone of a thread", "amd64", "amd64", "clone", 0, [6]uint64{0x3d0f00}, nil, RetAllow},
		{"clone into a new user namespace", "amd64", "amd64", "clone", 0, [6]uint64{0x10000000}, nil, eperm},
		{"clone of a new mount namespace", "amd64", "amd64", "clone", 0, [6]uint64{0x00020000}, nil, eperm},
		{"clone flags in the high word do not matter", "amd64", "amd64", "clone", 0, [6]uint64{1 << 40}, nil, RetAllow},
		{"clone with CAP_SYS_ADMIN", "amd64", "amd64", "clone", 0, [6]uint64{0x10000000}, sysAdmin, RetAllow},
		{"clone3 falls back", "amd64", "amd64", "clone3", 0, [6]uint64{}, nil, enosys},
		{"clone3 with CAP_SYS_ADMIN", "amd64", "amd64", "clone3", 0, [6]uint64{}, sysAdmin, RetAllow},
		{"personality linux", "amd64", "amd64", "personality", 0, [6]uint64{0}, nil, RetAllow},
		{"personality 0xffffffff query", "amd64", "amd64", "personality", 0, [6]uint64{0xffffffff}, nil, RetAllow},
		{"personality other", "amd64", "amd64", "personality", 0, [6]uint64{4}, nil, eperm},
		{"personality with a high word", "amd64", "amd64", "personality", 0, [6]uint64{1 << 32}, nil, eperm},
		{"ptrace", "amd64", "amd64", "ptrace", 0, [6]uint64{}, nil, RetAllow},
		{"chown", "amd64", "amd64", "chown", 0, [6]uint64{}, nil, RetAllow},
		{"socket AF_INET", "amd64", "amd64", "socket", 0, [6]uint64{2}, nil, RetAllow},
		{"newer than the table", "amd64", "amd64", "", 1000, [6]uint64{}, nil, enosys},
		{"gap in the table", "amd64", "amd64", "", 390, [6]uint64{}, nil, eperm},
		{"x32 read", "amd64", "amd64", "", x32Bit, [6]uint64{}, nil, eperm},
		{"i386 read on amd64", "amd64", "386", "read", 0, [6]uint64{}, nil, RetAllow},
		{"i386 socketcall", "amd64", "386", "socketcall", 0, [6]uint64{}, nil, RetAllow},
		{"i386 unshare", "amd64", "386", "unshare", 0, [6]uint64{}, nil, eperm},
		{"i386 personality ignores the high word", "amd64", "386", "personality", 0, [6]uint64{8 | 1<<32}, nil, RetAllow},
		{"arm64 read", "arm64", "arm64", "read", 0, [6]uint64{}, nil, RetAllow},
		{"arm64 unshare", "arm64", "arm64", "unshare", 0, [6]uint64{}, nil, eperm},
		{"arm on arm64 set_tls", "arm64", "arm", "set_tls", 0, [6]uint64{}, nil, RetAllow},
		{"arm64 filter kills an amd64 task", "arm64", "amd64", "read", 0, [6]uint64{}, nil, RetKillProcess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			caps := tc.caps
			if caps == nil {
				caps = dockerDefaultCaps
			}
			prog, err := Compile(Default(), Options{Arch: tc.arch, Caps: caps, Kernel: "6.18.0"})
			if err != nil {
				t.Fatal(err)
			}
			n := tc.nr
			if tc.syscall != "" {
				n = nr(t, tc.audit, tc.syscall)
			}
			got, err := prog.Evaluate(AuditArch(tc.audit), n, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s(%#x) = %#x, want %#x", tc.syscall, tc.args[0], got, tc.want)
			}
		})
	}
}

// reference decides one call from the profile directly, in Go, for
// comparison with the compiled program.
func reference(p *Profile, opts Options, audit, n uint32, args [6]uint64) uint32 {
	def := actionRet(p.DefaultAction, p.DefaultErrnoRet)
	var ar arch
	native := archByName[nativeArch[opts.Arch]]
	names := []string{nativeArch[opts.Arch]}
	if len(p.ArchMap) > 0 {
		for _, m := range p.ArchMap {
			if m.Arch == names[0] {
				names = append(names, m.SubArches...)
			}
		}
	} else {
		names = append(names, p.Architectures...)
	}
	found := false
	for _, name := range names {
		a := archByName[name]
		if a.table != "" && a.audit == audit {
			ar, found = a, true
			break
		}
	}
	if !found {
		return RetKillProcess
	}
	if ar.table == "amd64" && n >= x32Bit {
		return def
	}
	var maxNr uint32
	for _, v := range syscallTables[ar.table] {
		maxNr = max(maxNr, v)
	}
	if def != RetAllow && def != RetLog && n > maxNr {
		return RetErrno | 38
	}
	caps := map[string]bool{}
	for _, c := range opts.Caps {
		caps[c] = true
	}
	for _, s := range p.Syscalls {
		if !applies(s, native.short, caps, opts.Kernel) {
			continue
		}
		names := s.Names
		if s.Name != "" {
			names = []string{s.Name}
		}
		match := false
		for _, name := range names {
			if v, ok := syscallTables[ar.table][name]; ok && v == n {
				match = true
			}
		}
		if !match {
			continue
		}
		ret := actionRet(s.Action, s.ErrnoRet)
		for _, r := range expandRules(s.Args, ret, ar.wide) {
			if holds(r.conds, args) {
				return r.ret
			}
		}
	}
	return def
}

func holds(conds []cond, args [6]uint64) bool {
	for _, c := range conds {
		v := args[(c.off-offArgs)/8]
		want, mask := c.value, c.value2
		if !c.wide {
			v, want, mask = v&0xffffffff, want&0xffffffff, mask&0xffffffff
		}
		var ok bool
		switch c.op {
		case "SCMP_CMP_EQ":
			ok = v == want
		case "SCMP_CMP_NE":
			ok = v != want
		case "SCMP_CMP_LT":
			ok = v < want
		case "SCMP_CMP_LE":
			ok = v <= want
		case "SCMP_CMP_GT":
			ok = v > want
		case "SCMP_CMP_GE":
			ok = v >= want
		case "SCMP_CMP_MASKED_EQ":
			ok = v&want == mask
		}
		if !ok {
			return false
		}
	}
	return true
}

// checkAgainstReference evaluates every syscall number of every arch the
// filter knows, with argument vectors near the profile's constants.
func checkAgainstReference(t testing.TB, p *Profile, opts Options, prog Program, rng *rand.Rand, tries int) {
	t.Helper()
	var consts []uint64
	for _, s := range p.Syscalls {
		for _, a := range s.Args {
			consts = append(consts, a.Value, a.Value+1, a.Value-1, a.ValueTwo, a.Value|1<<33)
		}
	}
	consts = append(consts, 0, 1, 0xffffffff, 1<<32, ^uint64(0))
	for _, goarch := range []string{"amd64", "386", "arm64", "arm"} {
		audit := AuditArch(goarch)
		for _, n := range syscallTables[goarch] {
			for i := 0; i < tries; i++ {
				var args [6]uint64
				for j := range args {
					if rng.IntN(3) == 0 {
						args[j] = rng.Uint64()
					} else {
						args[j] = consts[rng.IntN(len(consts))]
					}
				}
				got, err := prog.Evaluate(audit, n, args)
				if err != nil {
					t.Fatal(err)
				}
				if want := reference(p, opts, audit, n, args); got != want {
					t.Fatalf("%s nr %d args %#x: program %#x, profile %#x", goarch, n, args, got, want)
				}
			}
		}
	}
}

func TestCompiledProgramMatchesProfile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, arch := range []string{"amd64", "arm64"} {
		for _, caps := range [][]string{dockerDefaultCaps, append(slices.Clone(dockerDefaultCaps), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF")} {
			opts := Options{Arch: arch, Caps: caps, Kernel: "6.18.0"}
			prog, err := Compile(Default(), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s, %d caps: %d instructions", arch, len(caps), len(prog))
			checkAgainstReference(t, Default(), opts, prog, rng, 8)
		}
	}
}

// TestFarJumpsGetTrampolines builds rules long enough that a conditional
// jump cannot reach its target in 255 instructions.
func TestFarJumpsGetTrampolines(t *testing.T) {
	var calls []Syscall
	ops := []string{"SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ"}
	for i, name := range []string{"read", "write", "openat", "close", "ioctl", "mmap", "socket", "connect"} {
		for r := 0; r < 8; r++ {
			var args []Arg
			for k := 0; k < 5; k++ {
				args = append(args, Arg{Index: uint(k), Value: uint64(i*1000 + r*10 + k), ValueTwo: uint64(k), Op: ops[(i+r+k)%len(ops)]})
			}
			calls = append(calls, Syscall{Names: []string{name}, Action: "SCMP_ACT_ALLOW", Args: args})
		}
	}
	calls = append(calls, Syscall{Names: []string{"getpid", "exit_group"}, Action: "SCMP_ACT_ALLOW"})
	p := &Profile{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: calls}
	opts := Options{Arch: "amd64", Kernel: "6.18.0"}
	prog, err := Compile(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	jas := 0
	for _, ins := range prog {
		if ins.Code == opJa {
			jas++
		}
	}
	if jas == 0 || len(prog) < 600 {
		t.Fatalf("%d instructions, %d BPF_JA: the test does not exercise far jumps", len(prog), jas)
	}
	checkAgainstReference(t, p, opts, prog, rand.New(rand.NewPCG(3, 4)), 4)
	for _, n := range []string{"read", "socket"} {
		var args [6]uint64
		for k := range args {
			args[k] = 1 // hits neither EQ and passes NE/GT... on some rule; compare only
		}
		got, _ := prog.Evaluate(AuditArch("amd64"), nr(t, "amd64", n), args)
		if want := reference(p, opts, AuditArch("amd64"), nr(t, "amd64", n), args); got != want {
			t.Errorf("%s: %#x, want %#x", n, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, json string
		want       error
	}{
		{"not json", `{`, ErrInvalidProfile},
		{"unknown action", `{"defaultAction":"SCMP_ACT_MAYBE"}`, ErrInvalidProfile},
		{"notify", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}`, ErrUnsupported},
		{"no names", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}`, ErrInvalidProfile},
		{"name and names", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"read","names":["write"],"action":"SCMP_ACT_ALLOW"}]}`, ErrInvalidProfile},
		{"bad index", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}`, ErrInvalidProfile},
		{"bad op", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"EQ"}]}]}`, ErrInvalidProfile},
		{"bad arch", `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_Z80"]}`, ErrInvalidProfile},
		{"both arch forms", `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}`, ErrInvalidProfile},
		{"bad kernel", `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"four"}}]}`, ErrInvalidProfile},
		{"errno too big", `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}`, ErrInvalidProfile},
		{"empty means unconfined", `{}`, nil},
		{"docker's default", string(DefaultJSON()), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.json))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse: %v, want %v", err, tc.want)
			}
			if err == nil && tc.name == "empty means unconfined" && !p.Unconfined() {
				t.Error("an empty profile should be unconfined")
			}
		})
	}
}

func TestCustomProfile(t *testing.T) {
	p, err := Parse([]byte(`{
		"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [
			{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
			{"name": "kill", "action": "SCMP_ACT_KILL_PROCESS"}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(p, Options{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want uint32
	}{{"mkdir", RetErrno | 13}, {"mkdirat", RetErrno | 13}, {"kill", RetKillProcess}, {"unshare", RetAllow}} {
		if got, _ := prog.Evaluate(AuditArch("amd64"), nr(t, "amd64", c.name), [6]uint64{}); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, got, c.want)
		}
	}
	// An allow-by-default profile has no ENOSYS stub for new calls.
	if got, _ := prog.Evaluate(AuditArch("amd64"), 1000, [6]uint64{}); got != RetAllow {
		t.Errorf("unknown call: %#x, want allow", got)
	}
	if got, _ := prog.Evaluate(AuditArch("386"), 1, [6]uint64{}); got != RetKillProcess {
		t.Errorf("i386 call without i386 in the profile: %#x, want kill", got)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		rel, want string
		ok        bool
	}{{"6.18.44-fc-v769", "4.8", true}, {"4.8.0", "4.8", true}, {"4.7.10", "4.8", false}, {"3.19", "4.8", false}, {"5.0-rc1", "4.20", true}, {"junk", "4.8", false}} {
		if got := kernelAtLeast(c.rel, c.want); got != c.ok {
			t.Errorf("kernelAtLeast(%q, %q) = %v", c.rel, c.want, got)
		}
	}
}

func FuzzParseAndCompile(f *testing.F) {
	f.Add(DefaultJSON())
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}`))
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":4294967296,"op":"SCMP_CMP_GE"},{"index":2,"value":255,"valueTwo":3,"op":"SCMP_CMP_MASKED_EQ"}]}]}`))
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_KILL","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"},{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidProfile) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Parse error not from this package: %v", err)
			}
			return
		}
		// What Parse accepts survives a JSON round trip unchanged.
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(again); err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		for _, arch := range []string{"amd64", "arm64"} {
			opts := Options{Arch: arch, Caps: dockerDefaultCaps, Kernel: "6.18.0"}
			prog, err := Compile(p, opts)
			if err != nil {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("Compile: %v", err)
				}
				continue
			}
			if p.Unconfined() {
				if prog != nil {
					t.Fatal("unconfined profile compiled to a program")
				}
				continue
			}
			if len(prog) == 0 || len(prog) > maxInsns {
				t.Fatalf("%d instructions", len(prog))
			}
			seed := uint64(len(data))
			if len(data) > 8 {
				seed ^= uint64(data[len(data)-1])<<8 | uint64(data[len(data)/2])
			}
			checkAgainstReference(t, p, opts, prog, rand.New(rand.NewPCG(seed, 7)), 1)
		}
	})
}

func ExampleCompile() {
	prog, err := Compile(Default(), Options{Arch: "amd64", Caps: dockerDefaultCaps, Kernel: "6.18.0"})
	if err != nil {
		panic(err)
	}
	n, _ := SyscallNumber("amd64", "unshare")
	ret, _ := prog.Evaluate(AuditArch("amd64"), n, [6]uint64{})
	fmt.Println(strings.ToUpper(fmt.Sprintf("%#x", ret)) == "0X50001")
	// Output: true
}
