//go:build linux && cgo

package shim

/*
#cgo CFLAGS: -Wall -O2
extern void berth_shim(int argc, char **argv);
extern void berth_init(int argc, char **argv);
void __attribute__((constructor)) berth_shim_init(int argc, char **argv, char **envp) {
	berth_shim(argc, argv);
	berth_init(argc, argv);
}
*/
import "C"
