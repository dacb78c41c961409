//go:build !linux

package image

import (
	"os"
	"time"
)

// lockFile is a no-op where berth cannot unpack layers anyway.
func lockFile(path string) (func(), error) { return func() {}, nil }

func processAlive(pid int) bool { return true }

func changeTime(path string) (time.Time, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}
