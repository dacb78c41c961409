// Package reexec lets the berth binary run itself as a helper process: a
// container's init, its shim, or an exec'd process joining a container.
//
// A package registers a handler under a name in its init function. The
// parent starts /proc/self/exe with argv[0] set to that name, and main (or a
// test's TestMain) calls Run first thing, which dispatches to the handler
// and reports whether it did. Handlers never return: they exit the process.
package reexec

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

var handlers = map[string]func(){}

// Register adds a handler for argv[0] == name. It is called from init
// functions only, before main runs, so it takes no lock. Registering the
// same name twice is a programming error and panics.
func Register(name string, fn func()) {
	if _, ok := handlers[name]; ok {
		panic(fmt.Sprintf("reexec: handler %q registered twice", name))
	}
	handlers[name] = fn
}

// Run dispatches to the handler registered for this process's argv[0], if
// there is one, and reports whether it ran one.
func Run() bool {
	fn, ok := handlers[filepath.Base(os.Args[0])]
	if !ok {
		return false
	}
	fn()
	return true
}

// Self is the path that re-executes the running binary.
func Self() string { return "/proc/self/exe" }

// Command returns a command that runs the handler registered as name with
// the given arguments.
func Command(name string, args ...string) *exec.Cmd {
	return &exec.Cmd{Path: Self(), Args: append([]string{name}, args...)}
}
