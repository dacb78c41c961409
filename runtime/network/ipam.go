package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// IPAM hands out the addresses of one subnet. Leases live in a JSON file
// that is rewritten atomically (temporary file and rename) under an
// exclusive file lock, so two processes sharing the file never hand out the
// same address and a restart loses no lease. The network address, the
// gateway (first host address) and the broadcast address are never leased.
// Its methods are safe for concurrent use; they do file I/O.
type IPAM struct {
	path   string
	subnet netip.Prefix
	mu     sync.Mutex
}

type ipamFile struct {
	Subnet string            `json:"subnet"`
	Last   string            `json:"last,omitempty"` // last address handed out
	Leases map[string]string `json:"leases"`         // address -> owner
}

// OpenIPAM opens (creating when missing) the lease file at path for
// subnet, an IPv4 prefix of /8 to /30. A file written for another subnet
// is taken over only when it holds no lease.
func OpenIPAM(path string, subnet netip.Prefix) (*IPAM, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() < 8 || subnet.Bits() > 30 {
		return nil, fmt.Errorf("%w: %s: want an IPv4 prefix between /8 and /30", ErrBadSubnet, subnet)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("network: ipam: %w", err)
	}
	a := &IPAM{path: path, subnet: subnet}
	err := a.update(func(f *ipamFile) error {
		if f.Subnet != "" && f.Subnet != subnet.String() {
			if len(f.Leases) > 0 {
				return fmt.Errorf("%w: %s holds %d leases in %s, not %s; remove their containers first",
					ErrSubnetInUse, path, len(f.Leases), f.Subnet, subnet)
			}
			f.Last = ""
		}
		f.Subnet = subnet.String()
		return nil
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

// Allocate leases an address to owner. An owner that already holds one
// gets the same address back. Addresses are handed out round robin, so a
// released address is not reused at once. ErrExhausted when none is free.
func (a *IPAM) Allocate(owner string) (netip.Addr, error) {
	if owner == "" {
		return netip.Addr{}, errors.New("network: ipam: empty lease owner")
	}
	var got netip.Addr
	err := a.update(func(f *ipamFile) error {
		for ip, o := range f.Leases {
			if o == owner {
				got, _ = netip.ParseAddr(ip)
				return nil
			}
		}
		first := a.Gateway().Next()
		last := a.broadcast().Prev()
		start := first
		if l, err := netip.ParseAddr(f.Last); err == nil && a.subnet.Contains(l) && l.Less(last) && !l.Less(first) {
			start = l.Next()
		}
		ip := start
		for {
			if _, used := f.Leases[ip.String()]; !used {
				f.Leases[ip.String()] = owner
				f.Last = ip.String()
				got = ip
				return nil
			}
			if ip == last {
				ip = first
			} else {
				ip = ip.Next()
			}
			if ip == start {
				return fmt.Errorf("%w: all %d addresses of %s are leased", ErrExhausted, len(f.Leases), a.subnet)
			}
		}
	})
	return got, err
}

// Release drops owner's lease; it is not an error when there is none.
func (a *IPAM) Release(owner string) error {
	return a.update(func(f *ipamFile) error {
		for ip, o := range f.Leases {
			if o == owner {
				delete(f.Leases, ip)
			}
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
	err := a.view(func(f *ipamFile) {
		for ip, o := range f.Leases {
			if addr, err := netip.ParseAddr(ip); err == nil {
				out = append(out, Lease{Addr: addr, Owner: o})
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, err
}

func (a *IPAM) broadcast() netip.Addr {
	b := a.subnet.Addr().As4()
	host := uint32(1)<<(32-a.subnet.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (a *IPAM) view(fn func(*ipamFile)) error {
	return a.update(func(f *ipamFile) error { fn(f); return errNoWrite })
}

var errNoWrite = errors.New("no write")

// update runs fn on the file's content under both locks and writes the
// result back unless fn fails.
func (a *IPAM) update(fn func(*ipamFile) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := lockFile(a.path + ".lock")
	if err != nil {
		return fmt.Errorf("network: ipam: lock %s: %w", a.path, err)
	}
	defer unlock()
	f := &ipamFile{}
	switch b, err := os.ReadFile(a.path); {
	case err == nil:
		if err := json.Unmarshal(b, f); err != nil {
			return fmt.Errorf("%w: %s: %v; move it away to start with no leases", ErrCorrupt, a.path, err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("network: ipam: %w", err)
	}
	if f.Leases == nil {
		f.Leases = map[string]string{}
	}
	if err := fn(f); err != nil {
		if err == errNoWrite {
			return nil
		}
		return err
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return writeFileAtomic(a.path, b)
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
