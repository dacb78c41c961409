package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestIPAMAllocate(t *testing.T) {
	tests := []struct {
		name   string
		subnet string
		n      int // allocations that must succeed
	}{
		{name: "slash30 has one address", subnet: "10.1.0.0/30", n: 1},
		{name: "slash29", subnet: "10.1.0.0/29", n: 5},
		{name: "slash24", subnet: "10.1.0.0/24", n: 253},
		{name: "unmasked prefix", subnet: "10.1.0.77/28", n: 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := OpenIPAM(filepath.Join(t.TempDir(), "leases"), netip.MustParsePrefix(tt.subnet))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[netip.Addr]bool{}
			for i := 0; i < tt.n; i++ {
				ip, err := a.Allocate(fmt.Sprint("c", i))
				if err != nil {
					t.Fatalf("allocation %d: %v", i, err)
				}
				if seen[ip] {
					t.Fatalf("address %s handed out twice", ip)
				}
				seen[ip] = true
				if !a.Subnet().Contains(ip) || ip == a.Gateway() || ip == a.Subnet().Addr() || ip == a.broadcast() {
					t.Fatalf("address %s is reserved or outside %s", ip, a.Subnet())
				}
			}
			if _, err := a.Allocate("one-too-many"); !errors.Is(err, ErrExhausted) {
				t.Fatalf("allocation past the end: %v, want ErrExhausted", err)
			}
		})
	}
}

func TestIPAMSameOwnerSameAddress(t *testing.T) {
	a, err := OpenIPAM(filepath.Join(t.TempDir(), "leases"), netip.MustParsePrefix("10.2.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	x, _ := a.Allocate("x")
	y, err := a.Allocate("x")
	if err != nil || x != y {
		t.Fatalf("second allocation for the same owner: %s, %v; want %s", y, err, x)
	}
}

func TestIPAMReleaseAndRoundRobin(t *testing.T) {
	a, err := OpenIPAM(filepath.Join(t.TempDir(), "leases"), netip.MustParsePrefix("10.3.0.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := a.Allocate("a")
	if err := a.Release("a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release("a"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	next, _ := a.Allocate("b")
	if next == first {
		t.Fatalf("released address %s reused at once", first)
	}
	// Fill the rest; the released one comes back last.
	var got []netip.Addr
	for i := 0; ; i++ {
		ip, err := a.Allocate(fmt.Sprint("f", i))
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip)
	}
	if len(got) != 4 || got[len(got)-1] != first {
		t.Fatalf("filled %v; want 4 addresses ending with the released %s", got, first)
	}
}

func TestIPAMPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases")
	p := netip.MustParsePrefix("10.4.0.0/24")
	a, _ := OpenIPAM(path, p)
	want := map[string]netip.Addr{}
	for _, o := range []string{"a", "b", "c"} {
		want[o], _ = a.Allocate(o)
	}
	_ = a.Release("b")
	b, err := OpenIPAM(path, p)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := b.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 2 || leases[0].Owner != "a" || leases[0].Addr != want["a"] || leases[1].Owner != "c" || leases[1].Addr != want["c"] {
		t.Fatalf("leases after reopen: %v", leases)
	}
	if ip, _ := b.Allocate("a"); ip != want["a"] {
		t.Fatalf("owner a got %s after reopen, want %s", ip, want["a"])
	}
	if ip, _ := b.Allocate("d"); ip == want["a"] || ip == want["c"] {
		t.Fatalf("in-use address %s handed out after reopen", ip)
	}
	// Another subnet is refused while leases exist, accepted once empty.
	if _, err := OpenIPAM(path, netip.MustParsePrefix("10.5.0.0/24")); !errors.Is(err, ErrSubnetInUse) {
		t.Fatalf("subnet change with leases: %v, want ErrSubnetInUse", err)
	}
	for _, o := range []string{"a", "c", "d"} {
		_ = b.Release(o)
	}
	if _, err := OpenIPAM(path, netip.MustParsePrefix("10.5.0.0/24")); err != nil {
		t.Fatalf("subnet change without leases: %v", err)
	}
}

func TestIPAMConcurrentOpeners(t *testing.T) {
	// Two IPAMs on one file stand for two processes: the file lock keeps
	// their addresses apart.
	path := filepath.Join(t.TempDir(), "leases")
	p := netip.MustParsePrefix("10.6.0.0/24")
	a1, _ := OpenIPAM(path, p)
	a2, _ := OpenIPAM(path, p)
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for w, a := range []*IPAM{a1, a2, a1, a2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				owner := fmt.Sprint(w, "-", i)
				ip, err := a.Allocate(owner)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if o, dup := seen[ip]; dup {
					t.Errorf("%s given to %s and %s", ip, o, owner)
				}
				seen[ip] = owner
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestIPAMBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []string{"10.0.0.0/31", "10.0.0.0/4", "fd00::/64"} {
		if _, err := OpenIPAM(filepath.Join(dir, "x.json"), netip.MustParsePrefix(s)); !errors.Is(err, ErrBadSubnet) {
			t.Errorf("subnet %s: %v, want ErrBadSubnet", s, err)
		}
	}
	path := filepath.Join(dir, "bad")
	os.WriteFile(path, []byte("a file, not a lease directory"), 0o600)
	if _, err := OpenIPAM(path, netip.MustParsePrefix("10.0.0.0/24")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt file: %v, want ErrCorrupt", err)
	}
}

func TestResolvConfDropsLoopback(t *testing.T) {
	got := string(resolvConf([]byte("search example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions ndots:1\n")))
	want := "search example\nnameserver 10.0.0.2\noptions ndots:1\n"
	if got != want {
		t.Fatalf("resolv.conf = %q, want %q", got, want)
	}
}

func TestValidatePorts(t *testing.T) {
	tests := []struct {
		name string
		p    Port
		ok   bool
	}{
		{name: "tcp", p: Port{HostPort: 8080, ContainerPort: 80}, ok: true},
		{name: "udp with ip", p: Port{HostIP: "127.0.0.1", HostPort: 53, ContainerPort: 53, Protocol: "udp"}, ok: true},
		{name: "zero", p: Port{HostPort: 0, ContainerPort: 80}},
		{name: "too big", p: Port{HostPort: 70000, ContainerPort: 80}},
		{name: "sctp", p: Port{HostPort: 1, ContainerPort: 1, Protocol: "sctp"}},
		{name: "bad ip", p: Port{HostIP: "x", HostPort: 1, ContainerPort: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidatePorts([]Port{tt.p}); (err == nil) != tt.ok {
				t.Fatalf("ValidatePorts(%+v) = %v", tt.p, err)
			}
		})
	}
}
