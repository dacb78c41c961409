// Package container is berth's node-local container runtime: the part that
// runc and containerd-shim play for docker.
//
// A Manager keeps one directory per container under DATA_DIR/containers:
//
//	ID/config.json   the Spec, written by Create
//	ID/init.plan     what init does, written by Start (also its once-only lock)
//	ID/state.json    pids and start time, written by the shim once the process runs
//	ID/exit.json     how it ended, written by the shim (atomically) when it exits
//	ID/container.log JSON lines of stdout and stderr (package logs), rotated by size
//	ID/shim.log      the shim's own errors, if any
//	ID/attach.sock   the shim's socket for Attach (Spec.Tty or OpenStdin)
//	ID/upper, work   the overlay's writable layer and its work directory
//	.rootfs          the mount point every container's init mounts its
//	                 overlay on, inside its own mount namespace
//
// The container's stdin is /dev/null, unless the spec asks for a terminal
// (Tty: init opens one in the container's /dev/pts and hands the master to
// the shim) or an open stdin (a pipe the shim feeds). The shim then serves
// attach.sock, so Attach reaches the container from any Manager, across
// agent restarts; OpenPTY gives an Exec a terminal of its own.
//
// Start re-executes the binary as a detached shim (reexec name
// "berth-shim"), which re-executes it again as the container's init
// ("berth-init") in new mount, PID, UTS, IPC and network namespaces. Both
// run as C constructors of package shim before any Go runtime starts (Go
// versions in this package serve builds without cgo). Init
// mounts the overlay inside its own mount namespace (so the mount vanishes
// with the container and never leaks to the host), sets up /proc, /dev and
// /sys with docker's masked and read-only paths, pivots into the root,
// drops to the user and capabilities, and execs the user's process as PID
// 1. See README.md for the sequence.
//
// Every Manager method reads the truth from disk and the kernel (pidfds
// checked against process start times), so a Manager in a new process
// re-attaches to containers started by one that was killed: Wait still
// returns the real exit code. Exec joins a running container through the
// nsenter subpackage's C constructor, which setns()es before the Go
// runtime starts; binaries that use this package get it through its import.
//
// Containers run under Docker's default seccomp profile (package
// runtime/seccomp) unless Spec.Seccomp says otherwise, with Docker's
// capabilities and masked paths; Spec.Privileged, Spec.ReadonlyRootfs,
// Spec.NoNewPrivileges and Spec.UserNS change that. The shim and init run
// from a sealed memfd copy of the binary. README.md's Security section has
// the details.
//
// Binaries must call reexec.Run first thing in main (tests in TestMain).
package container
