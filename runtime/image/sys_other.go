//go:build !linux

package image

// lockFile is a no-op where berth cannot unpack layers anyway.
func lockFile(path string) (func(), error) { return func() {}, nil }

func processAlive(pid int) bool { return true }
