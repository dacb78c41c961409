//go:build !unix

package network

// lockFile is a no-op where flock is missing; the in-process mutex still
// serialises one process.
func lockFile(path string) (func(), error) { return func() {}, nil }
