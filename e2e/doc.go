// Package e2e holds berth's end-to-end tests. They start the real berth
// binary (BERTH_BIN, built by `make test`) and assert on what a user sees:
// CLI output, exit codes and HTTP responses. The tests carry the build tag
// e2e and need root.
package e2e
