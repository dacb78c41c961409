// Package shim is the container shim written in C, run from a constructor
// before the Go runtime starts, so that the process that lives as long as
// each container costs about a megabyte instead of a Go runtime's eight.
//
// When the binary is started with argv[0] "berth-shim", the constructor
// takes over and never returns:
//
//	berth-shim DIR LOG_MAX_SIZE LOG_MAX_FILES CLONE_FLAGS
//
// fd 3 reports to the manager ("pid N", then "ok" or "err CODE MESSAGE"),
// fd 4 carries one byte once the manager has put init in the container's
// cgroup. The shim clones init (argv[0] "berth-init", argv[1] DIR) in the
// namespaces of CLONE_FLAGS with stdout and stderr on pipes, fd 3 a pipe
// carrying DIR/config.json and fd 4 a pipe for init's start error. It then
// writes state.json, copies the container's output into DIR/container.log
// as JSON lines (the format of package logs, rotated by size), waits for
// init and writes exit.json atomically.
//
// Package container holds the same shim in Go for builds without cgo.
package shim
