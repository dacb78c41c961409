package seccomp

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Errors returned by this package.
var (
	// ErrInvalidProfile: the profile is not valid JSON or names an unknown
	// action, operator or architecture; the message says where.
	ErrInvalidProfile = errors.New("seccomp: invalid profile")
	// ErrUnsupported: the profile asks for something berth does not do
	// (SCMP_ACT_NOTIFY, an architecture without a syscall table).
	ErrUnsupported = errors.New("seccomp: unsupported by berth")
	// ErrTooLarge: the profile compiles to more than the kernel's 4096 BPF
	// instructions; use fewer argument conditions.
	ErrTooLarge = errors.New("seccomp: program too large for the kernel (4096 instructions)")
	// ErrNotSupported: seccomp needs Linux.
	ErrNotSupported = errors.New("seccomp: not supported on this platform (Linux only)")
)

// MaxProfileSize bounds the JSON accepted by Parse.
const MaxProfileSize = 1 << 20

// Profile is a seccomp profile in Docker's JSON format.
type Profile struct {
	DefaultAction   string `json:"defaultAction"`
	DefaultErrnoRet *uint  `json:"defaultErrnoRet,omitempty"`
	// Architectures lists the architectures the filter accepts; ArchMap
	// instead maps a native architecture to its compat ones (Docker's
	// default uses ArchMap). Only the entries of the host's arch matter.
	Architectures []string  `json:"architectures,omitempty"`
	ArchMap       []ArchMap `json:"archMap,omitempty"`
	Flags         []string  `json:"flags,omitempty"`
	Syscalls      []Syscall `json:"syscalls"`
}

// ArchMap is an architecture with its sub-architectures, in libseccomp's
// names (SCMP_ARCH_X86_64).
type ArchMap struct {
	Arch      string   `json:"architecture"`
	SubArches []string `json:"subArchitectures"`
}

// Syscall is one rule: the action for the named calls when every argument
// condition holds (when several conditions test the same argument they
// are alternatives instead, as runc treats them).
type Syscall struct {
	Name     string   `json:"name,omitempty"` // old single-name form
	Names    []string `json:"names,omitempty"`
	Action   string   `json:"action"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Args     []Arg    `json:"args,omitempty"`
	Comment  string   `json:"comment,omitempty"`
	Includes *Filter  `json:"includes,omitempty"`
	Excludes *Filter  `json:"excludes,omitempty"`
}

// Arg compares argument Index (0-5) with Value using Op (SCMP_CMP_EQ, NE,
// LT, LE, GT, GE, or MASKED_EQ: arg & Value == ValueTwo).
type Arg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

// Filter makes a rule depend on the container and the host: Includes
// needs every listed capability, one of the arches and at least
// MinKernel; Excludes drops the rule on any listed capability or arch, or
// from MinKernel on. Arches use libseccomp's short names (amd64, arm64).
type Filter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

//go:embed default.json
var defaultJSON []byte

var (
	defaultOnce    sync.Once
	defaultProfile *Profile
)

// Default returns Docker's default profile. The caller must not modify it.
func Default() *Profile {
	defaultOnce.Do(func() {
		p, err := Parse(defaultJSON)
		if err != nil {
			panic("seccomp: the embedded default profile is invalid: " + err.Error())
		}
		defaultProfile = p
	})
	return defaultProfile
}

// DefaultJSON returns Docker's default profile as JSON.
func DefaultJSON() []byte { return append([]byte(nil), defaultJSON...) }

// actions are libseccomp's action names; SCMP_ACT_KILL kills the thread.
var actions = map[string]bool{
	"SCMP_ACT_KILL": true, "SCMP_ACT_KILL_THREAD": true, "SCMP_ACT_KILL_PROCESS": true,
	"SCMP_ACT_TRAP": true, "SCMP_ACT_ERRNO": true, "SCMP_ACT_TRACE": true,
	"SCMP_ACT_ALLOW": true, "SCMP_ACT_LOG": true,
}

var ops = map[string]bool{
	"SCMP_CMP_NE": true, "SCMP_CMP_LT": true, "SCMP_CMP_LE": true, "SCMP_CMP_EQ": true,
	"SCMP_CMP_GE": true, "SCMP_CMP_GT": true, "SCMP_CMP_MASKED_EQ": true,
}

// Parse decodes and checks a profile. An empty profile (no default action
// and no rules) is valid and means unconfined, as with Docker.
func Parse(data []byte) (*Profile, error) {
	if len(data) > MaxProfileSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidProfile, len(data), MaxProfileSize)
	}
	var p Profile
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidProfile, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Unconfined reports whether the profile filters nothing (Docker treats
// a profile without a default action or rules so).
func (p *Profile) Unconfined() bool {
	return p == nil || (p.DefaultAction == "" && len(p.Syscalls) == 0)
}

// Validate checks every field Compile relies on.
func (p *Profile) Validate() error {
	if p.Unconfined() {
		return nil
	}
	if err := checkAction(p.DefaultAction, p.DefaultErrnoRet); err != nil {
		return fmt.Errorf("%w: defaultAction: %w", ErrInvalidProfile, err)
	}
	if len(p.Architectures) > 0 && len(p.ArchMap) > 0 {
		return fmt.Errorf("%w: both architectures and archMap are set; use one", ErrInvalidProfile)
	}
	for _, a := range p.Architectures {
		if _, ok := archByName[a]; !ok {
			return fmt.Errorf("%w: unknown architecture %q", ErrInvalidProfile, a)
		}
	}
	for _, m := range p.ArchMap {
		for _, a := range append([]string{m.Arch}, m.SubArches...) {
			if _, ok := archByName[a]; !ok {
				return fmt.Errorf("%w: unknown architecture %q in archMap", ErrInvalidProfile, a)
			}
		}
	}
	for _, f := range p.Flags {
		switch f {
		case "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW":
		default:
			return fmt.Errorf("%w: unknown flag %q", ErrInvalidProfile, f)
		}
	}
	for i, s := range p.Syscalls {
		if s.Name != "" && len(s.Names) > 0 {
			return fmt.Errorf("%w: syscalls[%d]: both name and names are set; use names", ErrInvalidProfile, i)
		}
		names := s.Names
		if s.Name != "" {
			names = []string{s.Name}
		}
		if len(names) == 0 {
			return fmt.Errorf("%w: syscalls[%d]: no names", ErrInvalidProfile, i)
		}
		for _, n := range names {
			if n == "" || len(n) > 64 {
				return fmt.Errorf("%w: syscalls[%d]: bad syscall name %q", ErrInvalidProfile, i, n)
			}
		}
		if err := checkAction(s.Action, s.ErrnoRet); err != nil {
			return fmt.Errorf("%w: syscalls[%d] (%s): %w", ErrInvalidProfile, i, names[0], err)
		}
		if len(s.Args) > 6 {
			return fmt.Errorf("%w: syscalls[%d] (%s): %d argument conditions, at most 6", ErrInvalidProfile, i, names[0], len(s.Args))
		}
		for _, a := range s.Args {
			if a.Index > 5 {
				return fmt.Errorf("%w: syscalls[%d] (%s): argument index %d, must be 0-5", ErrInvalidProfile, i, names[0], a.Index)
			}
			if !ops[a.Op] {
				return fmt.Errorf("%w: syscalls[%d] (%s): unknown operator %q", ErrInvalidProfile, i, names[0], a.Op)
			}
		}
		for _, f := range []*Filter{s.Includes, s.Excludes} {
			if f == nil {
				continue
			}
			if f.MinKernel != "" {
				if _, _, err := parseKernel(f.MinKernel); err != nil {
					return fmt.Errorf("%w: syscalls[%d] (%s): %w", ErrInvalidProfile, i, names[0], err)
				}
			}
		}
	}
	return nil
}

func checkAction(a string, errno *uint) error {
	if a == "SCMP_ACT_NOTIFY" {
		return fmt.Errorf("%w: SCMP_ACT_NOTIFY (no notification listener)", ErrUnsupported)
	}
	if !actions[a] {
		return fmt.Errorf("unknown action %q", a)
	}
	if errno != nil && *errno > 4095 {
		return fmt.Errorf("errnoRet %d out of range 0-4095", *errno)
	}
	return nil
}

// parseKernel reads "MAJOR.MINOR" as Docker's minKernel does.
func parseKernel(v string) (major, minor uint64, err error) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) != 2 {
		return 0, 0, fmt.Errorf("kernel version %q: want MAJOR.MINOR", v)
	}
	if major, err = strconv.ParseUint(parts[0], 10, 8); err == nil {
		minor, err = strconv.ParseUint(parts[1], 10, 8)
	}
	if err != nil || (major == 0 && minor == 0) {
		return 0, 0, fmt.Errorf("kernel version %q: want MAJOR.MINOR", v)
	}
	return major, minor, nil
}

// kernelAtLeast compares a running kernel release ("6.18.44-fc") with
// "MAJOR.MINOR".
func kernelAtLeast(release, want string) bool {
	wm, wn, err := parseKernel(want)
	if err != nil {
		return false
	}
	rel := release
	if i := strings.IndexFunc(rel, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		rel = rel[:i]
	}
	parts := strings.Split(rel, ".")
	if len(parts) < 2 {
		return false
	}
	m, err1 := strconv.ParseUint(parts[0], 10, 32)
	n, err2 := strconv.ParseUint(parts[1], 10, 32)
	if err1 != nil || err2 != nil {
		return false
	}
	return m > wm || (m == wm && n >= wn)
}
