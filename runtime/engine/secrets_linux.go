package engine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mountSecretFS mounts a fresh tmpfs of size bytes at dir (replacing one
// left there), private to root.
func mountSecretFS(dir string, size int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unmountSecretFS(dir)
	opts := fmt.Sprintf("mode=0700,size=%d", size)
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts)
}

// unmountSecretFS detaches every tmpfs mounted at dir (stacked ones too).
func unmountSecretFS(dir string) {
	for i := 0; i < 8; i++ {
		if unix.Unmount(dir, unix.MNT_DETACH) != nil {
			return
		}
	}
}
