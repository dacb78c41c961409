//go:build !linux || !cgo

package nsenter

// Available reports whether this binary can join containers (it has cgo).
const Available = false
