//go:build linux && cgo

package nsenter

/*
#cgo CFLAGS: -Wall -O2
extern void berth_nsenter(void);
void __attribute__((constructor)) berth_nsenter_init(void) { berth_nsenter(); }
*/
import "C"

// Available reports whether this binary can join containers (it has cgo).
const Available = true
