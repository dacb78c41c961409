package agent

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hostAttributes reads what needs Linux system calls: kernel release,
// cgroup version, free disk under the data dir.
func hostAttributes(dataDir string) map[string]string {
	attrs := map[string]string{}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		attrs["kernel.version"] = unix.ByteSliceToString(u.Release[:])
		if host := unix.ByteSliceToString(u.Nodename[:]); host != "" {
			attrs["unique.hostname"] = strings.TrimSpace(host)
		}
	}
	var fs unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &fs) == nil {
		if fs.Type == unix.CGROUP2_SUPER_MAGIC {
			attrs["cgroup.version"] = "2"
		} else {
			attrs["cgroup.version"] = "1"
		}
	}
	if unix.Statfs(dataDir, &fs) == nil {
		attrs["disk.free_mb"] = strconv.FormatUint(fs.Bavail*uint64(fs.Bsize)>>20, 10)
	}
	return attrs
}
