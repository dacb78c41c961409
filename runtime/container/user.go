package container

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// ExecUser is a resolved user: the IDs a process runs with and its home.
type ExecUser struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups: the primary group, then those listing the user
	Home     string
}

// ResolveUser resolves spec ("", "uid", "uid:gid", "name", "name:group")
// against the contents of /etc/passwd and /etc/group (either may be nil,
// as for an image without them). Numeric IDs need no entry, like docker.
func ResolveUser(spec string, passwd, group io.Reader) (*ExecUser, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		userPart = "0"
	}
	if hasGroup && groupPart == "" {
		return nil, fmt.Errorf("%w: empty group in %q", ErrUser, spec)
	}
	users := parseColonFile(passwd, 7)
	groups := parseColonFile(group, 4)

	u := &ExecUser{Home: "/"}
	name := ""
	found := false
	uidNum, uidErr := strconv.ParseUint(userPart, 10, 32)
	for _, f := range users {
		if (uidErr == nil && f[2] == userPart) || (uidErr != nil && f[0] == userPart) {
			uid, err1 := strconv.ParseUint(f[2], 10, 32)
			gid, err2 := strconv.ParseUint(f[3], 10, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			u.UID, u.GID, u.Home, name, found = uint32(uid), uint32(gid), f[5], f[0], true
			break
		}
	}
	if !found {
		if uidErr != nil {
			return nil, fmt.Errorf("%w: unable to find user %s: no matching entries in passwd file", ErrUser, userPart)
		}
		u.UID, u.GID = uint32(uidNum), 0
	}
	if u.Home == "" {
		u.Home = "/"
	}
	if hasGroup {
		gidNum, err := strconv.ParseUint(groupPart, 10, 32)
		if err == nil {
			u.GID = uint32(gidNum)
		} else {
			ok := false
			for _, f := range groups {
				if f[0] == groupPart {
					if g, err := strconv.ParseUint(f[2], 10, 32); err == nil {
						u.GID, ok = uint32(g), true
						break
					}
				}
			}
			if !ok {
				return nil, fmt.Errorf("%w: unable to find group %s: no matching entries in group file", ErrUser, groupPart)
			}
		}
	}
	u.Groups = []uint32{u.GID}
	if name != "" {
		for _, f := range groups {
			for _, m := range strings.Split(f[3], ",") {
				if m == name {
					if g, err := strconv.ParseUint(f[2], 10, 32); err == nil && !slices.Contains(u.Groups, uint32(g)) {
						u.Groups = append(u.Groups, uint32(g))
					}
					break
				}
			}
		}
	}
	return u, nil
}

// parseColonFile reads passwd/group style lines, padding each to n fields.
func parseColonFile(r io.Reader, n int) [][]string {
	if r == nil {
		return nil
	}
	var out [][]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, ":", n)
		for len(f) < n {
			f = append(f, "")
		}
		out = append(out, f)
	}
	return out
}
