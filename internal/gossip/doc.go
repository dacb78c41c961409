// Package gossip is berth's membership layer: one hashicorp/memberlist pool
// that servers and agents join together.
//
// Each member advertises a small JSON Meta (role, HTTP and Raft addresses,
// datacenter, node ID) that stays under memberlist's 512-byte limit. Servers
// use the pool to find each other for --bootstrap-expect and to map the Raft
// leader's address to its HTTP address; the leader uses it to learn that an
// agent died before that agent's heartbeat TTL runs out. Capacity and
// allocations never travel over gossip, only over HTTP.
//
// Usage:
//
//	pool, err := gossip.Start(gossip.Config{
//		Name: "server-1", BindAddr: "127.0.0.1", Port: 9472,
//		Join: []string{"10.0.0.2:9472"},
//		Meta: gossip.Meta{Role: gossip.RoleServer, HTTPAddr: "127.0.0.1:9470"},
//	})
//	defer pool.Shutdown()
//	for ev := range pool.Events() { ... }
//
// The configuration is tuned for fast failure detection on a LAN, loopback
// or network namespaces: a member that stops answering is declared failed
// within about two seconds.
//
// Encryption: a Keyring (LoadKeyring, from --encrypt and a JSON file in
// the member's data directory) makes memberlist encrypt and authenticate
// every message with AES-GCM; a node without one of the keys can neither
// join nor be heard. Pool.KeyringOp installs, uses, removes or lists a key
// on every live member through memberlist user messages over its reliable
// (TCP) channel and collects their answers, so a key rotates with no
// downtime: install the new key everywhere, use it everywhere, remove the
// old one. Each member saves its keyring after every change.
package gossip
