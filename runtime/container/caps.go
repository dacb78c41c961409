package container

import (
	"fmt"
	"sort"
	"strings"
)

// capNames maps capability names (without CAP_) to their numbers.
var capNames = map[string]int{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
	"KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
	"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
	"IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
	"SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
	"SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28,
	"AUDIT_WRITE": 29, "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32,
	"MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36,
	"AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

// DefaultCaps is docker's default capability set.
var DefaultCaps = []string{
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
	"SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
}

// CapSet is a capability bit mask (bit N is capability N).
type CapSet uint64

// Has reports whether capability number c is in the set.
func (s CapSet) Has(c int) bool { return s&(1<<uint(c)) != 0 }

// Names lists the set's capabilities as "CAP_X", sorted by number.
func (s CapSet) Names() []string {
	var out []string
	for n, c := range capNames {
		if s.Has(c) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return capNames[out[i]] < capNames[out[j]] })
	for i := range out {
		out[i] = "CAP_" + out[i]
	}
	return out
}

func capNumber(name string) (int, bool) {
	n, ok := capNames[strings.TrimPrefix(strings.ToUpper(name), "CAP_")]
	return n, ok
}

// ParseCaps applies docker's rules to the default set: add, then drop;
// "ALL" in add means every capability, "ALL" in drop starts from nothing
// (so capabilities in add still apply).
func ParseCaps(add, drop []string) (CapSet, error) {
	var set CapSet
	for _, n := range DefaultCaps {
		c, _ := capNumber(n)
		set |= 1 << uint(c)
	}
	var all CapSet
	for _, c := range capNames {
		all |= 1 << uint(c)
	}
	var addSet, dropSet CapSet
	for _, n := range add {
		if strings.EqualFold(n, "ALL") {
			addSet = all
			continue
		}
		c, ok := capNumber(n)
		if !ok {
			return 0, fmt.Errorf("%w: unknown capability %q in cap-add", ErrInvalidSpec, n)
		}
		addSet |= 1 << uint(c)
	}
	for _, n := range drop {
		if strings.EqualFold(n, "ALL") {
			dropSet = all
			continue
		}
		c, ok := capNumber(n)
		if !ok {
			return 0, fmt.Errorf("%w: unknown capability %q in cap-drop", ErrInvalidSpec, n)
		}
		dropSet |= 1 << uint(c)
	}
	if dropSet == all {
		return addSet, nil
	}
	return (set | addSet) &^ (dropSet &^ addSet), nil
}

var rlimitNames = map[string]int{
	"CPU": 0, "FSIZE": 1, "DATA": 2, "STACK": 3, "CORE": 4, "RSS": 5, "NPROC": 6,
	"NOFILE": 7, "MEMLOCK": 8, "AS": 9, "LOCKS": 10, "SIGPENDING": 11, "MSGQUEUE": 12,
	"NICE": 13, "RTPRIO": 14, "RTTIME": 15,
}

func rlimitNumber(name string) (int, bool) {
	n, ok := rlimitNames[strings.TrimPrefix(strings.ToUpper(name), "RLIMIT_")]
	return n, ok
}
