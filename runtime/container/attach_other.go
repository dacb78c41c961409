//go:build !linux

package container

import (
	"net"
	"os"
)

// Attach fails: containers need Linux.
func (m *Manager) Attach(id string) (net.Conn, error) { return nil, ErrNotSupported }

// OpenPTY fails: containers need Linux.
func (m *Manager) OpenPTY(id string) (master, slave *os.File, err error) {
	return nil, nil, ErrNotSupported
}

// Resize fails: containers need Linux.
func Resize(f *os.File, rows, cols uint16) error { return ErrNotSupported }
