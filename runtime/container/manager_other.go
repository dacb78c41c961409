//go:build !linux

package container

import (
	"context"
	"io"
	"syscall"
	"time"

	"github.com/berth-dev/berth/runtime/cgroups"
)

// Manager runs containers; on this platform every method fails with
// ErrNotSupported.
type Manager struct{}

// NewManager fails: containers need Linux.
func NewManager(root string, cg cgroups.Manager) (*Manager, error) { return nil, ErrNotSupported }

func (m *Manager) Create(spec *Spec) (*Container, error) { return nil, ErrNotSupported }
func (m *Manager) Start(id string) error                 { return ErrNotSupported }
func (m *Manager) Wait(ctx context.Context, id string) (*ExitStatus, error) {
	return nil, ErrNotSupported
}
func (m *Manager) Kill(id string, sig syscall.Signal) error    { return ErrNotSupported }
func (m *Manager) Stop(id string, timeout time.Duration) error { return ErrNotSupported }
func (m *Manager) Remove(id string, force bool) error          { return ErrNotSupported }
func (m *Manager) Get(id string) (*Container, error)           { return nil, ErrNotSupported }
func (m *Manager) List() ([]*Container, error)                 { return nil, ErrNotSupported }
func (m *Manager) Stats(id string) (*cgroups.Stats, error)     { return nil, ErrNotSupported }
func (m *Manager) Logs(id string, opts LogOptions) (io.ReadCloser, error) {
	return nil, ErrNotSupported
}
func (m *Manager) Exec(ctx context.Context, id string, p *Process, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return -1, ErrNotSupported
}
