package build

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by this package; check them with errors.Is.
var (
	// ErrDockerfile: the Dockerfile cannot be parsed or asks for something
	// impossible (an unknown instruction, a bad flag, an unknown stage).
	// The message names the line.
	ErrDockerfile = errors.New("build: bad Dockerfile")
	// ErrStepFailed: a RUN step exited non-zero (see StepError).
	ErrStepFailed = errors.New("build: a build step failed")
	// ErrSource: a COPY or ADD source is missing from the build context
	// (or is excluded by .dockerignore) or lies outside it.
	ErrSource = errors.New("build: COPY/ADD source not found in the build context")
	// ErrBadContext: the uploaded build context is not a valid tar, or
	// holds unsafe paths.
	ErrBadContext = errors.New("build: bad build context")
	// ErrOptions: the build options are invalid (a bad tag, network or
	// platform).
	ErrOptions = errors.New("build: invalid build options")
	// ErrNotSupported: builds need Linux.
	ErrNotSupported = errors.New("build: only supported on Linux")
)

// StepError is a RUN step that failed. It matches ErrStepFailed.
type StepError struct {
	Step        int    // 1-based step number
	Total       int    // steps in the build
	Instruction string // as written, e.g. "RUN make"
	ExitCode    int    // the command's exit status
	Tail        []string
}

func (e *StepError) Error() string {
	msg := fmt.Sprintf("build: step [%d/%d] %s: exit code %d", e.Step, e.Total, e.Instruction, e.ExitCode)
	if len(e.Tail) > 0 {
		msg += "\n" + strings.Join(e.Tail, "\n")
	}
	return msg
}

// Is makes a StepError match ErrStepFailed.
func (e *StepError) Is(target error) bool { return target == ErrStepFailed }

// lineError wraps ErrDockerfile with the line the problem is on.
func lineError(line int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		return fmt.Errorf("%w: line %d: %s", ErrDockerfile, line, msg)
	}
	return fmt.Errorf("%w: %s", ErrDockerfile, msg)
}
