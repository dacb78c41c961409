package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// IPAM hands out the addresses of one subnet. Its leases live in a
// directory: one file per leased address, named by the address and holding
// its owner, created with O_EXCL, and a symlink per owner ("o-OWNER") that
// points at its address. Creating and removing small files costs far less
// than rewriting one lease table (replacing a file by rename makes ext4
// flush it), and no lease file is ever half written. An exclusive file lock
// keeps two processes sharing the directory from handing out the same
// address; a restart loses no lease. The network address, the gateway
// (first host address) and the broadcast address are never leased. Its
// methods are safe for concurrent use; they do file I/O.
type IPAM struct {
	dir    string
	subnet netip.Prefix
	mu     sync.Mutex
	last   netip.Addr // last address handed out by this process
}

// OpenIPAM opens (creating when missing) the lease directory at dir for
// subnet, an IPv4 prefix of /8 to /30. A directory used for another subnet
// is taken over only when it holds no lease.
func OpenIPAM(dir string, subnet netip.Prefix) (*IPAM, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() < 8 || subnet.Bits() > 30 {
		return nil, fmt.Errorf("%w: %s: want an IPv4 prefix between /8 and /30", ErrBadSubnet, subnet)
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a lease directory; move it away to start with no leases", ErrCorrupt, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("network: ipam: %w", err)
	}
	a := &IPAM{dir: dir, subnet: subnet}
	err := a.locked(func() error {
		cur, err := os.ReadFile(filepath.Join(dir, "subnet"))
		if err == nil && string(cur) == subnet.String() {
			return nil
		}
		if err == nil {
			if leases, _ := a.leases(); len(leases) > 0 {
				return fmt.Errorf("%w: %s holds %d leases in %s, not %s; remove their containers first",
					ErrSubnetInUse, dir, len(leases), cur, subnet)
			}
		}
		return writeFileAtomic(filepath.Join(dir, "subnet"), []byte(subnet.String()))
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Subnet is the prefix the IPAM hands addresses from.
func (a *IPAM) Subnet() netip.Prefix { return a.subnet }

// Gateway is the subnet's first host address, kept for the bridge.
func (a *IPAM) Gateway() netip.Addr { return a.subnet.Addr().Next() }

// validOwner keeps owners usable in a file name.
func validOwner(owner string) bool {
	if owner == "" || len(owner) > 200 {
		return false
	}
	for i := 0; i < len(owner); i++ {
		c := owner[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func (a *IPAM) ownerLink(owner string) string { return filepath.Join(a.dir, "o-"+owner) }

// Allocate leases an address to owner ([a-zA-Z0-9_.-]+). An owner that
// already holds one gets the same address back. Addresses are handed out
// round robin, so a released address is not reused at once. ErrExhausted
// when none is free.
func (a *IPAM) Allocate(owner string) (netip.Addr, error) {
	if !validOwner(owner) {
		return netip.Addr{}, fmt.Errorf("network: ipam: bad lease owner %q", owner)
	}
	var got netip.Addr
	err := a.locked(func() error {
		if ip, ok := a.held(owner); ok {
			got = ip
			return nil
		}
		used := map[netip.Addr]bool{}
		ents, err := os.ReadDir(a.dir)
		if err != nil {
			return fmt.Errorf("network: ipam: %w", err)
		}
		for _, e := range ents {
			if ip, err := netip.ParseAddr(e.Name()); err == nil {
				used[ip] = true
			}
		}
		first := a.Gateway().Next()
		last := a.broadcast().Prev()
		start := first
		if a.last.IsValid() && a.subnet.Contains(a.last) && a.last.Less(last) && !a.last.Less(first) {
			start = a.last.Next()
		}
		ip := start
		for {
			if !used[ip] {
				// The owner's link comes first: every lease file then has
				// one, and Release never has to search.
				link := a.ownerLink(owner)
				_ = os.Remove(link)
				if err := os.Symlink(ip.String(), link); err != nil {
					return fmt.Errorf("network: ipam: %w", err)
				}
				f, err := os.OpenFile(filepath.Join(a.dir, ip.String()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err == nil {
					_, err = f.WriteString(owner)
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					os.Remove(link)
					return fmt.Errorf("network: ipam: lease %s: %w", ip, err)
				}
				a.last, got = ip, ip
				return nil
			}
			if ip == last {
				ip = first
			} else {
				ip = ip.Next()
			}
			if ip == start {
				return fmt.Errorf("%w: all %d addresses of %s are leased", ErrExhausted, len(used), a.subnet)
			}
		}
	})
	return got, err
}

// held returns owner's address if its link points at a lease it owns.
func (a *IPAM) held(owner string) (netip.Addr, bool) {
	target, err := os.Readlink(a.ownerLink(owner))
	if err != nil {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(target)
	if err != nil {
		return netip.Addr{}, false
	}
	b, err := os.ReadFile(filepath.Join(a.dir, ip.String()))
	if err != nil || string(b) != owner {
		return netip.Addr{}, false
	}
	return ip, true
}

// Release drops owner's lease; it is not an error when there is none.
func (a *IPAM) Release(owner string) error {
	if !validOwner(owner) {
		return nil // never leased
	}
	return a.locked(func() error {
		link := a.ownerLink(owner)
		if ip, ok := a.held(owner); ok {
			if err := os.Remove(filepath.Join(a.dir, ip.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("network: ipam: %w", err)
			}
		}
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("network: ipam: %w", err)
		}
		return nil
	})
}

// Lease is one leased address.
type Lease struct {
	Addr  netip.Addr
	Owner string
}

// Leases lists the leases, by address.
func (a *IPAM) Leases() ([]Lease, error) {
	var out []Lease
	err := a.locked(func() (err error) { out, err = a.leases(); return })
	return out, err
}

func (a *IPAM) leases() ([]Lease, error) {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return nil, fmt.Errorf("network: ipam: %w", err)
	}
	var out []Lease
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if err != nil {
			continue
		}
		out = append(out, Lease{Addr: ip, Owner: strings.TrimSpace(string(b))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

func (a *IPAM) broadcast() netip.Addr {
	b := a.subnet.Addr().As4()
	host := uint32(1)<<(32-a.subnet.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// locked runs fn under the process's mutex and the directory's file lock.
func (a *IPAM) locked(fn func() error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := lockFile(filepath.Join(a.dir, ".lock"))
	if err != nil {
		return fmt.Errorf("network: ipam: lock %s: %w", a.dir, err)
	}
	defer unlock()
	return fn()
}

// writeFileAtomic replaces path with data so that a reader (or a crash)
// sees either the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("network: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("network: write %s: %w", path, err)
	}
	return nil
}
