//go:build !linux

package seccomp

// Install loads prog into the calling thread; it needs Linux.
func Install(prog Program) error {
	if len(prog) == 0 {
		return nil
	}
	return ErrNotSupported
}

func hostKernel() string { return "" }
