//go:build !linux

package network

import (
	"context"
	"net/netip"
)

type sysState struct{}

// Setup needs Linux.
func (m *Manager) Setup(ctx context.Context, req Request) (*Endpoint, error) {
	return nil, ErrNotSupported
}

// Teardown needs Linux.
func (m *Manager) Teardown(id string) error { return ErrNotSupported }

// Remove needs Linux.
func (m *Manager) Remove() error { return ErrNotSupported }

// PortRules needs Linux.
func (m *Manager) PortRules(id string) ([]string, error) { return nil, ErrNotSupported }

// LinkExists is always false off Linux.
func LinkExists(name string) bool { return false }

func sweepNetns(root string) {}

func subnetOnHost(p netip.Prefix) bool { return false }

func (m *Manager) restore(ep *Endpoint) error { return nil }
