package container

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-dev/berth/runtime/seccomp"
)

// Values of Spec.Seccomp.
const (
	// SeccompDefault (the empty string) is Docker's default profile.
	SeccompDefault = ""
	// SeccompUnconfined runs the container without a filter.
	SeccompUnconfined = "unconfined"
)

// allCaps is every capability berth knows, which a privileged container
// gets.
var allCaps = func() CapSet {
	var s CapSet
	for _, c := range capNames {
		s |= 1 << uint(c)
	}
	return s
}()

// privilegedCaps is every capability this process may hand on: a
// privileged container gets the host's bounding set, which lacks some
// capabilities on restricted hosts.
func privilegedCaps() CapSet {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return allCaps
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
				return CapSet(n) & allCaps
			}
		}
	}
	return allCaps
}

// effectiveCaps is the capability set the container's processes run with.
func effectiveCaps(s *Spec) (CapSet, error) {
	if s.Privileged {
		return privilegedCaps(), nil
	}
	return ParseCaps(s.CapAdd, s.CapDrop)
}

// CheckSeccomp validates a value of Spec.Seccomp without compiling it:
// "", "unconfined" or a profile in Docker's JSON format.
func CheckSeccomp(profile string) error {
	if profile == SeccompDefault || profile == SeccompUnconfined {
		return nil
	}
	if _, err := seccomp.Parse([]byte(profile)); err != nil {
		return fmt.Errorf("%w: seccomp profile: %w", ErrInvalidSpec, err)
	}
	return nil
}

type filterKey struct {
	profile [32]byte
	caps    CapSet
}

// filters caches compiled programs: a profile and a capability set
// always give the same program on one host, and compiling Docker's
// default takes about a millisecond, which a start should not pay.
var filters sync.Map // filterKey → seccomp.Program

// seccompFor returns the filter of a container's processes: nil when it
// is privileged or unconfined.
func seccompFor(s *Spec, caps CapSet) (seccomp.Program, error) {
	if s.Privileged || s.Seccomp == SeccompUnconfined {
		return nil, nil
	}
	key := filterKey{profile: sha256.Sum256([]byte(s.Seccomp)), caps: caps}
	if p, ok := filters.Load(key); ok {
		return p.(seccomp.Program), nil
	}
	prof := seccomp.Default()
	if s.Seccomp != SeccompDefault {
		var err error
		if prof, err = seccomp.Parse([]byte(s.Seccomp)); err != nil {
			return nil, fmt.Errorf("%w: seccomp profile: %w", ErrInvalidSpec, err)
		}
	}
	prog, err := seccomp.Compile(prof, seccomp.Options{Caps: caps.Names()})
	if err != nil {
		return nil, fmt.Errorf("container: seccomp profile: %w", err)
	}
	filters.Store(key, prog)
	return prog, nil
}

// seccompLate reports whether the filter can be the last thing before
// exec: it can when no_new_privs is set or the process keeps
// CAP_SYS_ADMIN. Otherwise, as runc does, it is loaded before the
// capabilities are dropped (installing a filter without no_new_privs
// needs CAP_SYS_ADMIN), and the few calls after it (setgroups, setresuid,
// capset, prctl, chdir, execve) must be allowed by the profile.
func seccompLate(nnp bool, caps CapSet) bool {
	return nnp || caps.Has(capNames["SYS_ADMIN"])
}
