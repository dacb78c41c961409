package volume

import (
	"fmt"
	"path"
	"strings"
)

// Mount types.
const (
	TypeVolume = "volume"
	TypeBind   = "bind"
)

// Mount is one parsed -v spec.
type Mount struct {
	Type        string // TypeVolume or TypeBind
	Source      string // volume name, "" for an anonymous volume, or an absolute host path
	Destination string // absolute, clean path in the container
	ReadOnly    bool
}

// ParseMount parses a -v spec as `docker run` takes it:
//
//	NAME:/ctr[:ro|rw]    named volume (created on first use)
//	/host:/ctr[:ro|rw]   bind mount of a host path
//	/ctr                 anonymous volume
//
// Paths are cleaned. It refuses a relative destination or host path, "/"
// as the destination, empty parts, a bad volume name and options other
// than ro and rw, each with an error wrapping ErrInvalidMount.
func ParseMount(spec string) (Mount, error) {
	bad := func(format string, a ...any) (Mount, error) {
		return Mount{}, fmt.Errorf("%w %q: %s", ErrInvalidMount, spec, fmt.Sprintf(format, a...))
	}
	if spec == "" {
		return bad("empty; use NAME:/path, /host/path:/path or /path")
	}
	parts := strings.Split(spec, ":")
	var m Mount
	var src, dst, opts string
	switch len(parts) {
	case 1:
		dst = parts[0]
	case 2:
		src, dst = parts[0], parts[1]
	case 3:
		src, dst, opts = parts[0], parts[1], parts[2]
		if opts == "" {
			return bad("empty options after the last ':'; use ro or rw")
		}
	default:
		return bad("too many ':'; use SOURCE:/path[:ro|rw]")
	}
	if len(parts) > 1 && src == "" {
		return bad("empty source before ':'; use a volume name or an absolute host path")
	}
	if dst == "" {
		return bad("empty container path")
	}
	if len(parts) == 2 && (dst == "ro" || dst == "rw") {
		return bad("no container path before %q; use SOURCE:/path:%s", dst, dst)
	}
	if !strings.HasPrefix(dst, "/") {
		return bad("container path %q is not absolute", dst)
	}
	m.Destination = path.Clean(dst)
	if m.Destination == "/" {
		return bad("cannot mount over the container's root /")
	}
	switch {
	case src == "":
		m.Type = TypeVolume
	case strings.HasPrefix(src, "/"):
		m.Type, m.Source = TypeBind, path.Clean(src)
	default:
		if err := ValidName(src); err != nil {
			return bad("%q is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)", src)
		}
		m.Type, m.Source = TypeVolume, src
	}
	if opts != "" {
		seen := map[string]bool{}
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "ro", "rw":
				seen[o] = true
			default:
				return bad("unknown option %q; use ro or rw", o)
			}
		}
		if seen["ro"] && seen["rw"] {
			return bad("both ro and rw given")
		}
		m.ReadOnly = seen["ro"]
	}
	return m, nil
}

// String renders the mount as a spec that ParseMount reads back to the
// same Mount. (An anonymous volume cannot be read-only, as in Docker, so
// ParseMount never returns one.)
func (m Mount) String() string {
	s := m.Destination
	if m.Source != "" {
		s = m.Source + ":" + s
		if m.ReadOnly {
			s += ":ro"
		}
	}
	return s
}
