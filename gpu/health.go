//go:build cgo && !nogpu

package gpu

import (
	"context"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ignoredXids are Xid errors an application causes (a bad kernel, a killed
// context), which leave the GPU fine; nvidia's device plugin skips the same.
var ignoredXids = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

// noInstance is NVML's "not a MIG event" value of an event's instance IDs.
const noInstance = 0xFFFFFFFF

// Watch blocks until ctx ends, waiting for critical Xid errors on every
// GPU. A critical Xid that is not an application error marks the device
// unhealthy (the GPU, or the one MIG instance the event names) in every
// later Devices, and calls onXid (which may be nil) from Watch's
// goroutine. It returns ctx's error, ErrNoEvents when no GPU accepts Xid
// events, or an NVML error when waiting fails.
func (d *Discoverer) Watch(ctx context.Context, onXid func(uuid string, xid uint64)) error {
	gpus, migs, err := d.scan()
	if err != nil {
		return err
	}
	var set nvml.EventSet
	if ret := optional(func() nvml.Return {
		var r nvml.Return
		set, r = d.lib.EventSetCreate()
		return r
	}); ret != nvml.SUCCESS {
		return fmt.Errorf("%w: %s", ErrNoEvents, ret.Error())
	}
	defer optional(set.Free)
	registered := 0
	for _, g := range gpus {
		var supported uint64
		if optional(func() nvml.Return {
			var r nvml.Return
			supported, r = g.h.GetSupportedEventTypes()
			return r
		}) == nvml.SUCCESS && supported&nvml.EventTypeXidCriticalError == 0 {
			continue
		}
		if optional(func() nvml.Return {
			return g.h.RegisterEvents(nvml.EventTypeXidCriticalError, set)
		}) == nvml.SUCCESS {
			registered++
		}
	}
	if registered == 0 {
		return ErrNoEvents
	}
	type instance struct {
		parent string
		gi, ci int
	}
	migByID := map[instance]string{}
	for _, m := range migs {
		migByID[instance{m.ParentUUID, m.GPUInstanceID, m.ComputeInstanceID}] = m.UUID
	}
	wait := d.WaitMillis
	if wait == 0 {
		wait = 1000
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, ret := set.Wait(wait)
		switch ret {
		case nvml.SUCCESS:
		case nvml.ERROR_TIMEOUT:
			continue
		default:
			return nvmlErr("wait for events", ret)
		}
		if e.EventType != nvml.EventTypeXidCriticalError || ignoredXids[e.EventData] || e.Device == nil {
			continue
		}
		uuid := deviceUUID(e.Device, gpus)
		if uuid == "" {
			continue
		}
		if e.GpuInstanceId != noInstance && e.ComputeInstanceId != noInstance {
			if m, ok := migByID[instance{uuid, int(e.GpuInstanceId), int(e.ComputeInstanceId)}]; ok {
				uuid = m
			}
		}
		d.MarkUnhealthy(uuid, e.EventData)
		if onXid != nil {
			onXid(uuid, e.EventData)
		}
	}
}

// MarkUnhealthy records that a device failed with an Xid; a GPU's MIG
// instances fail with it. Only a new Discoverer forgets it.
func (d *Discoverer) MarkUnhealthy(uuid string, xid uint64) {
	d.mu.Lock()
	d.sick[uuid] = xid
	d.mu.Unlock()
}

// Unhealthy returns the devices marked unhealthy and the Xid of each.
func (d *Discoverer) Unhealthy() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint64, len(d.sick))
	for u, x := range d.sick {
		out[u] = x
	}
	return out
}

// deviceUUID names an event's GPU, by the handle discovery saw when the
// GPU no longer answers (as after Xid 79).
func deviceUUID(dev nvml.Device, gpus []gpuHandle) (uuid string) {
	if optional(func() nvml.Return {
		var r nvml.Return
		uuid, r = dev.GetUUID()
		return r
	}) == nvml.SUCCESS {
		return uuid
	}
	for _, g := range gpus {
		same := false
		optional(func() nvml.Return { // handles of an uncomparable type panic
			same = g.h == dev
			return nvml.SUCCESS
		})
		if same {
			return g.dev.UUID
		}
	}
	return ""
}
