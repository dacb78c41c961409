// Package network gives containers on one node their network: a bridge
// (berth0 by default) with a per-node subnet, a veth pair and a network
// namespace per container, addresses from an IPAM whose leases live on
// disk, outbound masquerade, and published ports through DNAT.
//
// A Manager owns one bridge network. Setup makes a container's endpoint and
// returns the path of its network namespace (a bind-mounted nsfs file under
// /run/berth/netns/<hash of the data directory>/<id>) for the container's
// init to join; Teardown undoes it and
// succeeds when nothing is left; Reconcile, called when the agent starts,
// tears down every endpoint whose container no longer exists.
//
// Crash safety: an endpoint's record (DATA/network/endpoints/<id>.json)
// and its address lease are written before any kernel object is made, so
// whatever a crash leaves behind is named by a record and Reconcile finds it.
//
// Packet filtering goes through the iptables binary (iptables-restore for
// batches). Both the nf_tables and the legacy backends work; New picks
// "iptables" when its nat table can be listed and "iptables-legacy"
// otherwise. Published ports are DNAT rules in the nat chain BERTH-DNAT,
// jumped to from PREROUTING and OUTPUT for local destination addresses, so
// they answer on every host address, the bridge's included, and on
// 127.0.0.1: for loopback the bridge has route_localnet=1 and traffic from
// 127.0.0.0/8 leaving through the bridge is masqueraded (no userland
// proxy). Traffic that was DNATed and leaves through the bridge towards the
// subnet is masqueraded too, so a container reaches another's published
// port, and its own (hairpin), through a host address.
//
// The kernel parts are Linux only; elsewhere Setup returns ErrNotSupported.
package network
