package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// sysState is what the Manager learned about the kernel: whether the
// bridge and its rules are in place. It is changed under Manager.mu only;
// setup works on a copy.
type sysState struct {
	ready    bool
	bridgeIx int
	mtu      int
	nl       *netlink.Handle // in the Manager's namespace, kept open; safe for concurrent use
	dnsConn  *net.UDPConn    // the embedded resolver's socket
}

// Setup makes container req.ID's endpoint: an address lease, a network
// namespace with eth0 (the container end of a veth pair whose host end is
// on the bridge), lo, a default route via the bridge, the generated
// resolv.conf and hosts files, and DNAT rules for req.Ports. On error
// everything made so far is undone. Calling Setup for an ID that has an
// endpoint returns that endpoint.
func (m *Manager) Setup(ctx context.Context, req Request) (*Endpoint, error) {
	if !validID(req.ID) {
		return nil, fmt.Errorf("%w: endpoint ID %q must match [a-zA-Z0-9][a-zA-Z0-9_.-]*", ErrBadName, req.ID)
	}
	if err := ValidatePorts(req.Ports); err != nil {
		return nil, err
	}
	if ep, err := m.Endpoint(req.ID); err == nil {
		return ep, nil
	}
	sys, err := m.ensureBridge()
	if err != nil {
		return nil, err
	}
	ip, err := m.ipam.Allocate(req.ID)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(filesDir(m.cfg), req.ID)
	ep := &Endpoint{
		ID: req.ID, Name: req.Name, Aliases: req.Aliases, Bridge: m.cfg.Bridge, Addr: ip.String(), Gateway: m.Gateway().String(),
		Prefix: m.subnet.Bits(), HostVeth: hostVethName(req.ID),
		Netns: m.netnsPath(req.ID), Ports: req.Ports,
		ResolvConf: filepath.Join(dir, "resolv.conf"), Hosts: filepath.Join(dir, "hosts"),
	}
	// The record comes first: from here on a crash leaves nothing that
	// Reconcile cannot find.
	if err := m.writeEndpoint(ep); err != nil {
		_ = m.ipam.Release(req.ID)
		return nil, err
	}
	if err := m.setup(ep, req, sys); err != nil {
		if terr := m.Teardown(req.ID); terr != nil {
			return nil, fmt.Errorf("%w (and undoing it: %v)", err, terr)
		}
		return nil, err
	}
	if m.dns != nil {
		m.dns.add(req.ID, ip, append([]string{req.Name}, req.Aliases...)...)
	}
	return ep, nil
}

func (m *Manager) setup(ep *Endpoint, req Request, sys sysState) error {
	if err := os.MkdirAll(filepath.Dir(ep.ResolvConf), 0o755); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	host, err := os.ReadFile(m.cfg.ResolvConf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: read the host's resolver file: %w", err)
	}
	var ns []string
	if m.dns != nil {
		ns = []string{ep.Gateway}
	}
	if err := os.WriteFile(ep.ResolvConf, resolvConf(host, ns...), 0o644); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := os.WriteFile(ep.Hosts, hostsFile(ep.Addr, req.Hostname, req.Name), 0o644); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := newNetns(ep.Netns); err != nil {
		return err
	}
	if err := setupLinks(ep, sys); err != nil {
		return err
	}
	if len(ep.Ports) > 0 {
		if err := m.addPortRules(ep); err != nil {
			return err
		}
	}
	return nil
}

// setupLinks makes the veth pair, puts its host end on the bridge and
// configures the container end inside the namespace.
func setupLinks(ep *Endpoint, sys sysState) error {
	nsf, err := os.Open(ep.Netns)
	if err != nil {
		return fmt.Errorf("network: open netns: %w", err)
	}
	defer nsf.Close()
	// The host end is created up and on the bridge in the same request.
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: ep.HostVeth, MTU: sys.mtu, MasterIndex: sys.bridgeIx,
			TxQLen: -1, Flags: net.FlagUp},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(nsf.Fd())),
		PeerMTU:       uint32(sys.mtu),
		PeerTxQLen:    -1,
	}
	err = sys.nl.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		// The name comes from the container ID: a veth that has it is a
		// stale one of this same container (its state was lost).
		if old, lerr := sys.nl.LinkByName(ep.HostVeth); lerr == nil {
			_ = sys.nl.LinkDel(old)
		}
		veth.Index = 0
		err = sys.nl.LinkAdd(veth)
	}
	if err != nil {
		return fmt.Errorf("network: create veth %s: %w", ep.HostVeth, err)
	}
	// With br_netfilter, a container's packet to its own published port
	// goes back out the port it came in on: that needs hairpin mode.
	if err := sys.nl.LinkSetHairpin(veth, true); err != nil {
		return fmt.Errorf("network: hairpin on %s: %w", ep.HostVeth, err)
	}
	return configureInside(int(nsf.Fd()), ep)
}

// newNetns creates a network namespace and bind-mounts it on path. The
// namespace is made by a goroutine locked to its thread, which goes back to
// its original namespace before unlocking; if it cannot, it stays locked
// and the Go runtime throws the thread away (or, for the main thread,
// parks it for good) instead of running other goroutines in the wrong
// namespace.
func newNetns(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("network: netns file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid := strconv.Itoa(unix.Gettid())
		orig, err := os.Open("/proc/self/task/" + tid + "/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network: open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network: new network namespace: %w", err)
			return
		}
		err = unix.Mount("/proc/self/task/"+tid+"/ns/net", path, "", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("network: bind-mount network namespace on %s: %w", path, err)
		}
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// configureInside brings up lo and eth0 in the namespace nsfd, gives eth0
// its address and routes everything via the gateway.
func configureInside(nsfd int, ep *Endpoint) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(nsfd), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network: netlink in the container's namespace: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("network: container lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("network: container lo up: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("network: container eth0: %w", err)
	}
	addr := net.ParseIP(ep.Addr).To4()
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: addr, Mask: net.CIDRMask(ep.Prefix, 32)}}); err != nil {
		return fmt.Errorf("network: container address %s: %w", ep.Addr, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("network: container eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(ep.Gateway).To4()}); err != nil {
		return fmt.Errorf("network: container default route: %w", err)
	}
	return nil
}

// Teardown removes container id's endpoint: DNAT rules, the veth pair, the
// namespace's bind mount and file, the generated files, the lease and the
// record. It succeeds when there is nothing to remove.
func (m *Manager) Teardown(id string) error {
	if !validID(id) {
		return nil // Setup never made one
	}
	ep, err := m.Endpoint(id)
	if errors.Is(err, os.ErrNotExist) {
		return m.ipam.Release(id)
	}
	if m.dns != nil && err == nil {
		if a, perr := netip.ParseAddr(ep.Addr); perr == nil {
			m.dns.remove(id, a)
		}
	}
	if err != nil {
		// A record that cannot be read still names its parts.
		ep = &Endpoint{ID: id, HostVeth: hostVethName(id), Netns: m.netnsPath(id)}
	}
	var errs []error
	if len(ep.Ports) > 0 {
		if err := m.deletePortRules(id); err != nil {
			errs = append(errs, err)
		}
	}
	// The veth pair dies with the namespace: unmounting its file drops the
	// last reference (the container's processes are gone by now) and the
	// kernel deletes both ends in its namespace cleanup, batched and off
	// this path. Deleting the veth here instead would wait for an RCU
	// grace period (about 27 ms on a 2-CPU VM).
	switch err := unix.Unmount(ep.Netns, unix.MNT_DETACH); err {
	case nil:
	case unix.EINVAL, unix.ENOENT:
		// Not mounted: a veth still present is not tied to a namespace
		// that goes away, so delete it now.
		if l, err := netlink.LinkByName(ep.HostVeth); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("network: delete veth %s: %w", ep.HostVeth, err))
			}
		} else if !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: veth %s: %w", ep.HostVeth, err))
		}
	default:
		errs = append(errs, fmt.Errorf("network: unmount %s: %w", ep.Netns, err))
	}
	if err := os.Remove(ep.Netns); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := os.RemoveAll(filepath.Join(filesDir(m.cfg), id)); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if len(errs) > 0 {
		// Keep the record and the lease so that a later Teardown or
		// Reconcile can finish the job.
		return errors.Join(errs...)
	}
	if err := m.ipam.Release(id); err != nil {
		return err
	}
	if err := os.Remove(m.endpointPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// ensureBridge makes the bridge, its address, the sysctls and the base
// iptables rules, once per Manager (and again after a failure).
func (m *Manager) ensureBridge() (sysState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sys.ready {
		if l, err := netlink.LinkByIndex(m.sys.bridgeIx); err == nil && l.Attrs().Name == m.cfg.Bridge {
			return m.sys, nil
		}
		m.sys.ready = false
	}
	err := m.makeBridge()
	return m.sys, err
}

func (m *Manager) makeBridge() error {
	br, err := netlink.LinkByName(m.cfg.Bridge)
	if isNotFound(err) {
		if subnetOnHost(m.subnet) {
			return fmt.Errorf("%w: %s overlaps an address already on this host; set %s to a free prefix", ErrBadSubnet, m.subnet, SubnetEnv)
		}
		err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: m.cfg.Bridge, TxQLen: -1}})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("network: create bridge %s: %w", m.cfg.Bridge, err)
		}
		br, err = netlink.LinkByName(m.cfg.Bridge)
	}
	if err != nil {
		return fmt.Errorf("network: bridge %s: %w", m.cfg.Bridge, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("network: %s exists and is a %s, not a bridge; remove it or pick another bridge name", m.cfg.Bridge, br.Type())
	}
	gw := m.Gateway()
	if err := netlink.AddrReplace(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32)}}); err != nil {
		return fmt.Errorf("network: bridge %s address %s: %w", m.cfg.Bridge, gw, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("network: bridge %s up: %w", m.cfg.Bridge, err)
	}
	for _, s := range []struct{ path, val string }{
		{"/proc/sys/net/ipv4/ip_forward", "1"},
		{"/proc/sys/net/ipv4/conf/" + m.cfg.Bridge + "/route_localnet", "1"},
	} {
		if err := os.WriteFile(s.path, []byte(s.val), 0o644); err != nil {
			return fmt.Errorf("network: sysctl %s: %w", s.path, err)
		}
	}
	if m.sys.nl == nil {
		if m.sys.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return fmt.Errorf("network: netlink: %w", err)
		}
	}
	if err := m.baseRules(); err != nil {
		return err
	}
	if m.dns != nil && m.sys.dnsConn == nil {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: gw.AsSlice(), Port: 53})
		if err != nil {
			return fmt.Errorf("network: embedded DNS on %s:53: %w", gw, err)
		}
		m.sys.dnsConn = c
		go m.dns.serve(c)
	}
	m.sys.mtu = uplinkMTU()
	m.sys.bridgeIx = br.Attrs().Index
	m.sys.ready = true
	return nil
}

// uplinkMTU is the MTU of the link holding the default route (1500 when
// there is none), so containers do not send frames the uplink drops.
func uplinkMTU() int {
	routes, err := netlink.RouteList(nil, unix.AF_INET)
	if err == nil {
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.LinkIndex > 0 {
				if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
					return l.Attrs().MTU
				}
			}
		}
	}
	return 1500
}

// Remove deletes the bridge and the base rules for its subnet. Endpoints
// still recorded are torn down first.
func (m *Manager) Remove() error {
	if err := m.Reconcile(nil); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sys.ready = false
	if m.sys.dnsConn != nil {
		m.sys.dnsConn.Close()
		m.sys.dnsConn = nil
	}
	var errs []error
	for _, r := range m.bridgeRules() {
		if m.ipt(append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...) == nil {
			if err := m.ipt(append([]string{"-t", r.table, "-D", r.chain}, r.spec...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if l, err := netlink.LinkByName(m.cfg.Bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("network: delete bridge %s: %w", m.cfg.Bridge, err))
		}
	}
	_ = os.Remove(filepath.Join(m.nsDir, ownerFile))
	_ = os.Remove(m.nsDir)
	return errors.Join(errs...)
}

// LinkExists reports whether a link of that name is in this namespace
// (tests use it to look for leaks).
func LinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// sweepNetns unmounts and removes the namespace files of data directories
// that no longer exist (a test's temporary directory, a wiped node), whose
// containers can never be removed through berth.
func sweepNetns(root string) {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, d := range dirs {
		dir := filepath.Join(root, d.Name())
		owner, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		if _, err := os.Stat(string(owner)); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			_ = unix.Unmount(p, unix.MNT_DETACH)
			_ = os.Remove(p)
		}
		_ = os.Remove(dir)
	}
}

// subnetOnHost reports whether p overlaps an address already on one of
// this namespace's links (another bridge, the uplink).
func subnetOnHost(p netip.Prefix) bool {
	addrs, err := netlink.AddrList(nil, unix.AF_INET)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if ok && netip.PrefixFrom(ip, ones).Masked().Overlaps(p) {
			return true
		}
	}
	return false
}

// restore gives a live endpoint back its place on the bridge and its DNAT
// rules when they are missing. An endpoint whose namespace is gone is left
// for Teardown.
func (m *Manager) restore(ep *Endpoint) error {
	if _, err := os.Stat(ep.Netns); err != nil {
		return nil
	}
	hostEnd, err := netlink.LinkByName(ep.HostVeth)
	if err != nil {
		return nil // the namespace died with its container
	}
	sys, err := m.ensureBridge()
	if err != nil {
		return err
	}
	if hostEnd.Attrs().MasterIndex != sys.bridgeIx {
		if err := sys.nl.LinkSetMasterByIndex(hostEnd, sys.bridgeIx); err != nil {
			return fmt.Errorf("network: put %s back on %s: %w", ep.HostVeth, m.cfg.Bridge, err)
		}
		_ = sys.nl.LinkSetUp(hostEnd)
		_ = sys.nl.LinkSetHairpin(hostEnd, true)
	}
	if len(ep.Ports) > 0 {
		rules, err := m.PortRules(ep.ID)
		if err != nil {
			return err
		}
		if len(rules) < len(ep.Ports) {
			if len(rules) > 0 {
				if err := m.deletePortRules(ep.ID); err != nil {
					return err
				}
			}
			return m.addPortRules(ep)
		}
	}
	return nil
}
