//go:build !cgo || nogpu

package gpu

import "context"

// Discoverer is empty in a build without NVML (no cgo, or the nogpu
// tag): Open reports ErrNoDriver and the host has no GPUs.
type Discoverer struct{}

// Open always fails with ErrNoDriver: this binary was built without NVML.
func Open() (*Discoverer, error) { return nil, ErrNoDriver }

// Close does nothing.
func (d *Discoverer) Close() error { return nil }

// Devices reports ErrNoDriver.
func (d *Discoverer) Devices() ([]Device, error) { return nil, ErrNoDriver }

// Topology reports ErrNoDriver.
func (d *Discoverer) Topology() (*Topology, error) { return nil, ErrNoDriver }

// Stats reports ErrNoDriver.
func (d *Discoverer) Stats() ([]Stat, error) { return nil, ErrNoDriver }

// Watch reports ErrNoDriver.
func (d *Discoverer) Watch(ctx context.Context, onXid func(uuid string, xid uint64)) error {
	return ErrNoDriver
}

// MarkUnhealthy does nothing.
func (d *Discoverer) MarkUnhealthy(uuid string, xid uint64) {}

// Unhealthy returns nothing.
func (d *Discoverer) Unhealthy() map[string]uint64 { return nil }
