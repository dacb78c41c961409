// Package simnode simulates a fleet of berth agents through the real server
// API: it registers nodes with realistic capacities, heartbeats them, and
// (optionally) acknowledges the allocations placed on them as running, the
// way an agent does once its containers start. The end-to-end tests and the
// scheduling benchmark use it to drive real servers without real hosts.
//
//	fleet, err := simnode.Start(ctx, simnode.Config{Client: c, Count: 100, Ack: true})
//	defer fleet.Stop()
//	fleet.Silence(nodeID) // stop heartbeating: the server should mark it down
package simnode
