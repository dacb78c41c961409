//go:build linux && cgo

package nsenter

/*
#cgo CFLAGS: -Wall -O2
extern void berth_nsenter(int argc, char **argv);
void __attribute__((constructor)) berth_nsenter_init(int argc, char **argv, char **envp) { berth_nsenter(argc, argv); }
*/
import "C"

// Available reports whether this binary can join containers (it has cgo).
const Available = true
