package container

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/runtime/cgroups"
)

// Errors returned by this package. Start errors raised inside the container
// (a missing executable, an unknown user) come back as a *StartError that
// matches ErrExecutableNotFound, ErrPermission or ErrUser with errors.Is.
var (
	// ErrNotFound: no container has that ID, ID prefix or name.
	ErrNotFound = errors.New("container: no such container")
	// ErrAmbiguous: an ID prefix matches several containers; give more of the ID.
	ErrAmbiguous = errors.New("container: ID prefix matches several containers; use more characters")
	// ErrExists: a container with that ID or name already exists; remove it first or pick another name.
	ErrExists = errors.New("container: a container with that ID or name already exists")
	// ErrRunning: the operation needs a stopped container; stop it first or force it.
	ErrRunning = errors.New("container: container is running; stop it first or force removal")
	// ErrNotRunning: the operation needs a running container.
	ErrNotRunning = errors.New("container: container is not running")
	// ErrAlreadyStarted: Start was called on a container that ran before; create a new one.
	ErrAlreadyStarted = errors.New("container: container was already started; create a new one")
	// ErrInvalidSpec: the spec is malformed; the message says which field.
	ErrInvalidSpec = errors.New("container: invalid spec")
	// ErrExecutableNotFound: the command is not in the container's PATH (exit code 127).
	ErrExecutableNotFound = errors.New("container: executable file not found")
	// ErrPermission: the command exists but cannot be executed (exit code 126).
	ErrPermission = errors.New("container: permission denied")
	// ErrUser: the user or group is not known inside the container's /etc/passwd or /etc/group.
	ErrUser = errors.New("container: unable to find user or group")
	// ErrNotSupported: containers need Linux.
	ErrNotSupported = errors.New("container: not supported on this platform (Linux only)")
	// ErrNotAttachable: the container has neither a terminal nor an open stdin; run it with -t or -i, or read its logs.
	ErrNotAttachable = errors.New("container: container was started without a terminal or open stdin; use logs to read its output")
)

// Container statuses, as in State.Status.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// Defaults applied to a Spec by Create.
const (
	DefaultStopTimeout = 10 * time.Second
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 3
	DefaultPath        = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Spec is everything needed to run one container. The glue above this
// package turns an image and a job task into a Spec.
type Spec struct {
	ID   string // 64 hex digits, or any [a-zA-Z0-9][a-zA-Z0-9_.-]*
	Name string // display name; unique among containers when set

	// Layers are read-only layer directories, lowest first. The overlay's
	// lowerdir lists them in reverse, as overlayfs wants the top first.
	Layers []string
	// Args is the command, Entrypoint and Cmd already combined (CombineArgs).
	Args []string
	Env  []string
	// Cwd is the working directory; it is created when missing, like docker.
	Cwd string
	// User is "uid[:gid]" or "name[:group]", resolved inside the rootfs
	// from /etc/passwd and /etc/group. Empty means root.
	User string
	// Hostname defaults to the first 12 characters of ID.
	Hostname string
	Mounts   []Mount

	Resources       cgroups.Resources
	CapAdd, CapDrop []string // "NET_ADMIN", "CAP_NET_ADMIN" or "ALL"
	NoNewPrivileges bool
	// Rlimits are clamped to the current hard limit instead of failing.
	Rlimits []Rlimit

	StopSignal  string        // default SIGTERM
	StopTimeout time.Duration // default 10s

	// Network is "none" (a new network namespace with only lo up), "host",
	// or the path of a network namespace to join (/var/run/netns/NAME).
	Network string
	// Devices are extra device nodes created in the container's /dev;
	// Create adds a rule allowing each to the device cgroup.
	Devices []Device

	LogMaxSize  int64 // bytes per log file; default 10 MiB
	LogMaxFiles int   // files kept, the current one included; default 3

	ReadonlyRootfs bool

	// Tty gives the process a terminal, held by the shim and reached
	// with Attach; its output is logged as stdout. OpenStdin (without
	// Tty) makes stdin a pipe that attached clients write to.
	Tty       bool
	OpenStdin bool

	// Seccomp is the system call filter: "" for Docker's default profile,
	// "unconfined" for none, or a profile in Docker's JSON format.
	Seccomp string
	// Privileged gives every capability and every host device, no
	// seccomp filter, a writable /sys and no masked /proc paths, like
	// docker run --privileged.
	Privileged bool
	// UserNS, when set, runs the container in a user namespace: its
	// users and groups 0..Size-1 are the host's HostID.. (unprivileged
	// there), and the image's layers are mounted through the same
	// mapping (idmapped mounts), so its root owns the image's files but
	// nothing of the host's.
	UserNS *IDMap
}

// IDMap maps container IDs 0..Size-1, users and groups alike, to host
// IDs HostID..HostID+Size-1.
type IDMap struct {
	HostID uint32
	Size   uint32
}

// Mount is a bind mount or a tmpfs inside the container.
type Mount struct {
	Source      string   // host path for "bind"; ignored for "tmpfs"
	Destination string   // absolute path inside the container
	Type        string   // "bind" or "tmpfs"
	ReadOnly    bool     //
	Options     []string // tmpfs options such as "size=64m", "mode=1777"
}

// Rlimit is one resource limit, Type as "RLIMIT_NOFILE" or "nofile".
type Rlimit struct {
	Type string
	Soft uint64
	Hard uint64
}

// Device is a device node created in the container's /dev.
type Device struct {
	Path     string // inside the container, e.g. /dev/nvidia0
	Type     byte   // 'c' or 'b'
	Major    int64
	Minor    int64
	FileMode uint32 // permission bits; 0 means 0666
	UID, GID uint32
}

// Process is a command run inside a running container by Exec.
type Process struct {
	Args []string
	Env  []string // added to the container's environment, overriding it
	Cwd  string   // default: the container's Cwd
	User string   // default: the container's User
}

// Container is one container as found on disk.
type Container struct {
	ID    string
	Name  string
	Spec  *Spec
	State State
}

// State is a container's runtime state.
type State struct {
	Status     string    `json:"status"` // created, running or exited
	Pid        int       `json:"pid,omitempty"`
	ShimPid    int       `json:"shimPid,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	ExitCode   int       `json:"exitCode"`
	Signal     int       `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// ExitStatus is how a container ended.
type ExitStatus struct {
	Code       int       `json:"code"` // exit code, or 128+signal
	Signal     int       `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
	Error      string    `json:"error,omitempty"` // why it failed to start, if it did
}

// LogOptions select what Logs returns.
type LogOptions struct {
	Follow bool      // keep streaming until the container exits or the reader is closed
	Tail   int       // only the last Tail lines; 0 means all
	Since  time.Time // only lines at or after Since
}

// StartError is a failure to start the user process, reported by the
// container's init. Code is the exit code docker would give (127, 126).
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return "container: start failed: " + e.Msg }

// Is maps the exit code to the package's sentinel errors.
func (e *StartError) Is(target error) bool {
	switch target {
	case ErrExecutableNotFound:
		return e.Code == 127 && (strings.Contains(e.Msg, "not found") || strings.Contains(e.Msg, "no such file"))
	case ErrPermission:
		return e.Code == 126
	case ErrUser:
		return strings.Contains(e.Msg, "unable to find user") || strings.Contains(e.Msg, "unable to find group")
	}
	return false
}

// ValidID reports whether id can name a container (and its directory):
// 1 to 128 of [a-zA-Z0-9_.-], starting with a letter or digit.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Validate checks the spec and fills in defaults. It does not touch the disk.
func (s *Spec) Validate() error {
	if !ValidID(s.ID) {
		return fmt.Errorf("%w: ID %q must match [a-zA-Z0-9][a-zA-Z0-9_.-]*", ErrInvalidSpec, s.ID)
	}
	if s.Name != "" && !ValidID(s.Name) {
		return fmt.Errorf("%w: name %q must match [a-zA-Z0-9][a-zA-Z0-9_.-]*", ErrInvalidSpec, s.Name)
	}
	if len(s.Layers) == 0 {
		return fmt.Errorf("%w: no layers: a container needs at least one read-only layer directory", ErrInvalidSpec)
	}
	for _, l := range s.Layers {
		if !strings.HasPrefix(l, "/") || strings.ContainsAny(l, ":,") {
			return fmt.Errorf("%w: layer %q must be an absolute path without ':' or ','", ErrInvalidSpec, l)
		}
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return fmt.Errorf("%w: no command: set Args (the image has no Entrypoint or Cmd)", ErrInvalidSpec)
	}
	if s.Cwd == "" {
		s.Cwd = "/"
	}
	if !strings.HasPrefix(s.Cwd, "/") {
		return fmt.Errorf("%w: working directory %q must be absolute", ErrInvalidSpec, s.Cwd)
	}
	if s.Hostname == "" {
		s.Hostname = s.ID
		if len(s.Hostname) > 12 {
			s.Hostname = s.Hostname[:12]
		}
	}
	if len(s.Hostname) > 64 {
		return fmt.Errorf("%w: hostname %q is longer than 64 bytes", ErrInvalidSpec, s.Hostname)
	}
	for i, m := range s.Mounts {
		if !strings.HasPrefix(m.Destination, "/") || m.Destination == "/" {
			return fmt.Errorf("%w: mount %d: destination %q must be an absolute path other than /", ErrInvalidSpec, i, m.Destination)
		}
		switch m.Type {
		case "bind", "":
			if !strings.HasPrefix(m.Source, "/") {
				return fmt.Errorf("%w: mount %d: bind source %q must be an absolute host path", ErrInvalidSpec, i, m.Source)
			}
			s.Mounts[i].Type = "bind"
		case "tmpfs":
		default:
			return fmt.Errorf("%w: mount %d: type %q is not bind or tmpfs", ErrInvalidSpec, i, m.Type)
		}
	}
	if _, err := ParseCaps(s.CapAdd, s.CapDrop); err != nil {
		return err
	}
	if err := CheckSeccomp(s.Seccomp); err != nil {
		return err
	}
	if u := s.UserNS; u != nil {
		if u.HostID == 0 || u.Size == 0 || uint64(u.HostID)+uint64(u.Size) > 1<<32-1 {
			return fmt.Errorf("%w: user namespace range %d+%d must be a non-empty range of host IDs above 0", ErrInvalidSpec, u.HostID, u.Size)
		}
		if s.Privileged {
			return fmt.Errorf("%w: a privileged container cannot run in a user namespace", ErrInvalidSpec)
		}
	}
	if s.Privileged {
		// Every device, as docker --privileged.
		s.Resources.Devices = []cgroups.DeviceRule{{Allow: true, Type: 'a', Major: -1, Minor: -1, Access: "rwm"}}
	}
	for _, r := range s.Rlimits {
		if _, ok := rlimitNumber(r.Type); !ok {
			return fmt.Errorf("%w: unknown rlimit %q", ErrInvalidSpec, r.Type)
		}
	}
	if s.StopSignal == "" {
		s.StopSignal = "SIGTERM"
	}
	if _, err := ParseSignal(s.StopSignal); err != nil {
		return err
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	switch {
	case s.Network == "":
		s.Network = "none"
	case s.Network == "none", s.Network == "host", strings.HasPrefix(s.Network, "/"):
	default:
		return fmt.Errorf("%w: network %q must be none, host or a netns path", ErrInvalidSpec, s.Network)
	}
	for _, d := range s.Devices {
		if !strings.HasPrefix(d.Path, "/dev/") || strings.Contains(d.Path, "..") || (d.Type != 'c' && d.Type != 'b') {
			return fmt.Errorf("%w: device %q must be a 'c' or 'b' node under /dev", ErrInvalidSpec, d.Path)
		}
	}
	if len(s.Devices) > 0 && !s.Privileged {
		// A device node is of no use if the device cgroup denies it.
		if s.Resources.Devices == nil {
			s.Resources.Devices = cgroups.DefaultDevices()
		}
		for _, d := range s.Devices {
			s.Resources.Devices = append(s.Resources.Devices, cgroups.DeviceRule{Allow: true, Type: d.Type, Major: d.Major, Minor: d.Minor, Access: "rwm"})
		}
	}
	if s.LogMaxSize <= 0 {
		s.LogMaxSize = DefaultLogMaxSize
	}
	if s.LogMaxFiles <= 0 {
		s.LogMaxFiles = DefaultLogMaxFiles
	}
	return nil
}

// CombineArgs combines an image's Entrypoint and Cmd with the ones given
// at run time the way docker does: an entrypoint given at run time (even an
// empty one, entrypointSet) replaces the image's and drops the image's Cmd;
// a cmd given at run time replaces the image's Cmd; the result is
// entrypoint followed by cmd.
func CombineArgs(imgEntrypoint, imgCmd, entrypoint, cmd []string, entrypointSet bool) []string {
	ep := imgEntrypoint
	c := imgCmd
	if entrypointSet {
		ep = entrypoint
		c = nil
	}
	if len(cmd) > 0 {
		c = cmd
	}
	out := make([]string, 0, len(ep)+len(c))
	out = append(out, ep...)
	return append(out, c...)
}

var signals = map[string]syscall.Signal{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
	"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
	"STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
	"URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
	"POLL": 29, "PWR": 30, "SYS": 31,
}

// ParseSignal parses "SIGTERM", "TERM", "term" or "15".
func ParseSignal(s string) (syscall.Signal, error) {
	u := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := signals[u]; ok {
		return sig, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && n < 65 && fmt.Sprint(n) == s {
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("%w: unknown signal %q", ErrInvalidSpec, s)
}
