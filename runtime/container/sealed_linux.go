package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The shim, init and exec helpers run from a sealed in-memory copy of the
// berth binary, as runc does against CVE-2019-5736: a process in the
// container that opens /proc/PID/exe of one of them gets the copy, which
// no one can write, grow or shrink, instead of the binary on the host.
// The copy is made once per process and kept open for its lifetime.
var sealedExe struct {
	once sync.Once
	f    *os.File
	err  error
}

// sealedSelf returns a path that executes the sealed copy.
func sealedSelf() (string, error) {
	sealedExe.once.Do(func() {
		sealedExe.f, sealedExe.err = sealBinary("/proc/self/exe")
	})
	if sealedExe.err != nil {
		return "", sealedExe.err
	}
	return "/proc/self/fd/" + strconv.Itoa(int(sealedExe.f.Fd())), nil
}

func sealBinary(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("container: open own binary: %w", err)
	}
	defer src.Close()
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate("berth", flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // kernels before 6.3 lack MFD_EXEC
		fd, err = unix.MemfdCreate("berth", flags)
	}
	if err != nil {
		return nil, fmt.Errorf("container: memfd for a sealed copy of the binary (vm.memfd_noexec must allow executable memfds): %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:berth")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("container: copy own binary: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals|unix.F_SEAL_EXEC); err != nil {
		// F_SEAL_EXEC (6.3+) also pins the mode; older kernels refuse it.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
			f.Close()
			return nil, fmt.Errorf("container: seal the copy of the binary: %w", err)
		}
	}
	return f, nil
}
