// Package nsenter joins a running container's namespaces before the Go
// runtime starts. A mount namespace can only be joined by a single-threaded
// process, and a Go program is never single-threaded once its runtime runs,
// so, as runc does, a C constructor does it: when argv[0] is "berth-exec"
// and the environment variable _BERTH_NSENTER_PID is set, it waits for one byte on fd 3 (the manager
// puts the process in the container's cgroup meanwhile), setns()es into the
// ipc, uts, net, pid and mount namespaces of that pid, then forks so the
// child is really inside the PID namespace. The parent writes the child's
// pid to fd 4, forwards signals to it, and exits with its status; the child
// goes on into the Go runtime (the "berth-exec" handler of package
// container). Errors before the fork are written to fd 5 as "CODE message".
//
// Every binary that runs containers must import this package (package
// container does), so that the constructor is linked in.
package nsenter
