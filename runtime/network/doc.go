// Package network gives containers on one node their network: a bridge
// (berth0 by default) with a per-node subnet, a veth pair and a network
// namespace per container, addresses from an IPAM whose leases live on
// disk, outbound masquerade, published ports through DNAT, and user
// networks whose containers find each other by name.
//
// # Use
//
// The engine opens a node's networks with OpenNetworks: the default bridge
// (Config: bridge $BERTH_BRIDGE or berth0, subnet $BERTH_BRIDGE_SUBNET or
// 10.209.0.0/24) and every user network defined under the data directory.
// For each container it calls Manager.Setup on the network the task names
// and gets back an Endpoint: the path of a network namespace for the
// container's init to join (a bind-mounted nsfs file under
// /run/berth/netns/<hash of the data directory>/<id>) and the resolv.conf
// and hosts files to bind into it. Networks.Teardown undoes it on removal
// and succeeds when nothing is left; Networks.Reconcile, at agent start,
// tears down the endpoints of containers that no longer exist and gives
// live ones back a missing bridge port or DNAT rule.
//
//	Setup(id):  lease (IPAM) → endpoint record → resolv.conf, hosts
//	            → unshare(CLONE_NEWNET) + bind mount → veth (host end on the
//	            bridge, peer "eth0" created inside the namespace)
//	            → lo, eth0 address, default route → DNAT rules (if ports)
//	Teardown:   DNAT rules → unmount the namespace (the kernel deletes the
//	            veth pair with it) → files → lease → record
//
// # Design choices
//
// Crash safety: an endpoint's record (DATA/network/endpoints/<id>.json)
// and its lease are written before any kernel object is made, so whatever
// a crash leaves behind is named by a record and Reconcile finds it. Leases
// are one O_EXCL file per address plus a symlink per owner, under a file
// lock, so two processes never share an address and a restart loses none.
//
// Namespace files live outside the data directory so that deleting one (a
// test's temporary directory) is never blocked by a mount; New sweeps the
// namespace directories whose data directory is gone.
//
// The veth pair is not deleted explicitly: deleting a net device waits for
// an RCU grace period (about 27 ms on a 2-CPU VM), while unmounting the
// namespace file lets the kernel delete the pair in its batched namespace
// cleanup shortly after Teardown returns. That keeps setup plus teardown
// near 4 ms.
//
// Packet filtering goes through the iptables binary (iptables-restore for
// batches), not nftables: "iptables" (the nf_tables backend here) is used
// when its nat table can be listed, "iptables-legacy" otherwise. berth owns
// the chains BERTH-DNAT and BERTH-POSTROUTING (nat) and BERTH-FORWARD and
// BERTH-ISOLATE (filter); a rule belongs to one bridge (its name or subnet
// is in it) or one container (a "berth:ID" comment), so several bridges
// and agents share the chains safely.
//
// Published ports are DNAT rules in BERTH-DNAT, jumped to from PREROUTING
// and OUTPUT for local destination addresses: they answer on every host
// address, the bridge's included, and on 127.0.0.1. For loopback the
// bridge has route_localnet=1 and traffic from 127.0.0.0/8 leaving through
// the bridge is masqueraded (there is no userland proxy). Traffic that was
// DNATed and leaves through the bridge towards the subnet is masqueraded
// too, and bridge ports are in hairpin mode, so a container reaches another
// container's published port, and its own, through a host address.
//
// User networks (Networks.Create) each get a bridge ("bn" and a hash), a
// /24 of 10.210.0.0/16 unless a subnet is given, and an embedded DNS
// resolver on the bridge address, port 53, which the containers get as
// their nameserver: it answers the network's container names and aliases
// and forwards everything else to the host's resolvers. Traffic between a
// user network and any other berth bridge is dropped in BERTH-ISOLATE,
// except traffic to a published port.
//
// The kernel parts are Linux only; elsewhere Setup returns ErrNotSupported.
package network
