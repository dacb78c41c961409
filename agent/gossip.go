package agent

import (
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/gossip"
)

// GossipConfig joins the agent to the gossip pool, through which it finds
// the servers and through which the servers notice quickly that it died.
type GossipConfig struct {
	BindAddr string
	Port     int      // default 9472
	Join     []string // host:port of any members
}

// startGossip joins the pool and returns a function that lists the HTTP
// addresses of the live servers in it.
func (a *Agent) startGossip(gc GossipConfig) error {
	if gc.Port == 0 {
		gc.Port = 9472
	}
	if gc.BindAddr == "" {
		gc.BindAddr = a.cfg.BindAddr
	}
	pool, err := gossip.Start(gossip.Config{
		Name:     a.cfg.NodeName + ".agent",
		BindAddr: gc.BindAddr,
		Port:     gc.Port,
		Join:     gc.Join,
		Meta: gossip.Meta{
			Role: gossip.RoleAgent, HTTPAddr: a.node.HTTPAddr,
			Datacenter: a.cfg.Datacenter, NodeID: a.node.ID,
		},
		Logger:            a.log,
		RetryJoinInterval: 2 * time.Second,
		Keyring:           a.keyring,
	})
	if err != nil {
		return fmt.Errorf("agent: gossip on %s:%d: %w", gc.BindAddr, gc.Port, err)
	}
	a.pool = pool
	return nil
}

// gossipServers lists the HTTP addresses of live servers in the pool.
func (a *Agent) gossipServers() []string {
	if a.pool == nil {
		return nil
	}
	var out []string
	for _, p := range a.pool.Peers() {
		if p.Meta.Role == gossip.RoleServer && p.Status == gossip.StatusAlive && p.Meta.HTTPAddr != "" {
			out = append(out, p.Meta.HTTPAddr)
		}
	}
	return out
}
