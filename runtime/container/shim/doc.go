// Package shim holds the two processes of a container that must not pay
// for a Go runtime, written in C and run from a constructor before the Go
// runtime starts: the shim, which lives as long as its container and so
// costs about a megabyte instead of a Go runtime's eight, and the
// container's init, which would otherwise spend milliseconds starting a
// runtime and the berth binary's package initialisers only to exec.
//
// When the binary is started with argv[0] "berth-shim", the constructor
// takes over and never returns:
//
//	berth-shim DIR LOG_MAX_SIZE LOG_MAX_FILES CLONE_FLAGS
//
// fd 3 reports to the manager ("pid N", then "ok" or "err CODE MESSAGE");
// fd 4 is the read end of the manager's go pipe, which the shim hands to
// init as its fd 5. The shim clones init (argv[0] "berth-init", argv[1]
// DIR) in the namespaces of CLONE_FLAGS with stdout and stderr on pipes,
// fd 3 a pipe carrying DIR/init.plan and fd 4 a pipe for init's start
// error. Init prepares the root while the manager moves it into the cgroup
// (on cgroup v1 that waits for an RCU grace period) and execs the command
// only once the manager's byte arrives, so no user code runs outside the
// cgroup. The shim then writes state.json, copies the container's output
// into DIR/container.log as JSON lines (the format of package logs,
// rotated by size), waits for init and writes exit.json atomically.
//
// A plan that starts with "tty" or "stdin" makes the container
// attachable. With "tty", the shim hands init a socket as its fd 6; init
// opens a terminal in the container's /dev/pts after pivot_root, sends the
// master back over it (SCM_RIGHTS) and makes the slave the command's
// stdio and controlling terminal. With "stdin", the command's stdin is a
// pipe whose write end the shim keeps. Either way the shim serves
// DIR/attach.sock: clients exchange package api's attach frames with it
// (stdin, resize, close-stdin in; stdout, stderr out), output goes to the
// log as well (a terminal's as stdout), and output made while nobody is
// attached (the newest 64 KiB) is handed to the next client. The shim
// outlives the agent, so a restarted agent attaches again.
//
// Init (argv[0] "berth-init") reads the plan, a list of NUL-terminated
// operations that package container's initPlan documents and builds
// (mounts, pivot_root, masked paths, hostname, rlimits, user, capabilities,
// environment, command), executes it and execs the command, or writes
// "CODE message" to fd 4 and exits with CODE (127, or 126 for a command
// that cannot be executed).
//
// Package container holds the same shim and init in Go for builds
// without cgo.
package shim
