// Package e2e holds berth's end-to-end tests and system benchmarks. They
// start the real berth binary (BERTH_BIN, built by `make test`) and assert
// on what a user sees: CLI output, exit codes and HTTP responses.
//
//   - harness.go (no build tag): several `berth server` processes on
//     loopback that a test can SIGKILL, SIGSTOP and restart; the scheduling
//     benchmark uses it too, so it builds without tags.
//   - netns.go (tag e2e): simulated hosts, each a network namespace with
//     its own address on a private bridge, running berth via nsenter.
//   - dev_cluster.go (tag e2e): one `berth dev` process with its own data
//     dir and ports, for the docker-style CLI tests.
//
// Tests that run containers or make namespaces need root and skip with a
// reason without it; CI runs as root. `make test` runs the tagged tests;
// `make bench` runs the benchmarks (BenchmarkSchedule5000Nodes,
// BenchmarkRunRmTrue).
package e2e
