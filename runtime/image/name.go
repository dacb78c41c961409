package image

import (
	"fmt"
	"regexp"
	"strings"
)

// The reference grammar is Docker's (distribution/reference): an optional
// registry host, path components of lower-case alphanumerics joined by
// separators, an optional tag.
var (
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	domainRE        = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$|^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$`)
	tagRE           = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestRE        = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	hex64RE         = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

const (
	// DefaultTag is the tag a name without one gets.
	DefaultTag = "latest"
	// dockerHub is the registry that familiar names ("busybox") live on.
	dockerHub = "docker.io"
	// maxNameLen is Docker's limit on the repository part of a name.
	maxNameLen = 255
)

// reference is a parsed image reference: domain (empty for Docker Hub),
// repository path, and a tag and/or digest.
type reference struct {
	domain string
	path   string
	tag    string
	digest string
}

// repo returns the repository in familiar form ("busybox",
// "localhost:5000/app").
func (r reference) repo() string {
	if r.domain == "" {
		return strings.TrimPrefix(r.path, "library/")
	}
	return r.domain + "/" + r.path
}

// familiar returns "repo:tag" (the form names are stored in).
func (r reference) familiar() string {
	return r.repo() + ":" + r.tag
}

// ParseName validates an image name and returns it in the familiar,
// normalised form the store keys names by: "busybox" and
// "docker.io/library/busybox" both give "busybox:latest", and
// "localhost:5000/app:v1" stays as it is. Digest references
// ("busybox@sha256:…") are not names: a name always carries a tag. The
// error wraps ErrInvalidName and says what is wrong.
func ParseName(s string) (string, error) {
	r, err := parseReference(s)
	if err != nil {
		return "", err
	}
	if r.digest != "" {
		return "", fmt.Errorf("%w %q: a name cannot carry a digest; use REPO:TAG", ErrInvalidName, s)
	}
	return r.familiar(), nil
}

// parseReference parses NAME[:TAG][@DIGEST]. A reference without tag or
// digest gets DefaultTag.
func parseReference(s string) (reference, error) {
	bad := func(why string, args ...any) (reference, error) {
		return reference{}, fmt.Errorf("%w %q: %s", ErrInvalidName, s, fmt.Sprintf(why, args...))
	}
	if s == "" {
		return bad("empty name")
	}
	if strings.TrimSpace(s) != s {
		return bad("leading or trailing white space")
	}
	var r reference
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.digest = rest[i+1:]
		rest = rest[:i]
		if !digestRE.MatchString(r.digest) {
			return bad("digest must be sha256: followed by 64 lower-case hex digits")
		}
	}
	// A tag follows the last colon unless that colon belongs to a host:port
	// (then a slash follows it).
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		r.tag = rest[i+1:]
		rest = rest[:i]
		if !tagRE.MatchString(r.tag) {
			return bad("tag %q must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", r.tag)
		}
	}
	if rest == "" {
		return bad("missing repository")
	}
	if hex64RE.MatchString(rest) {
		return bad("a repository name cannot be 64 hex digits (that is an image ID)")
	}
	parts := strings.Split(rest, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost" || strings.ToLower(parts[0]) != parts[0]) {
		r.domain = parts[0]
		parts = parts[1:]
		if !domainRE.MatchString(r.domain) {
			return bad("registry host %q is not a valid host[:port]", r.domain)
		}
	}
	for _, p := range parts {
		if !pathComponentRE.MatchString(p) {
			if strings.ToLower(p) != p {
				return bad("repository must be lower case")
			}
			return bad("path component %q must be lower-case letters and digits, joined by '.', '_', '__' or '-'", p)
		}
	}
	r.path = strings.Join(parts, "/")
	switch r.domain {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		r.domain = ""
	}
	if r.domain == "" && !strings.Contains(r.path, "/") {
		r.path = "library/" + r.path
	}
	if len(r.repo()) > maxNameLen {
		return bad("repository is longer than %d characters", maxNameLen)
	}
	if r.tag == "" && r.digest == "" {
		r.tag = DefaultTag
	}
	return r, nil
}

// FullName returns the fully qualified form of a familiar name, the form
// registries use: "busybox:latest" gives "docker.io/library/busybox:latest".
func FullName(s string) (string, error) {
	r, err := parseReference(s)
	if err != nil {
		return "", err
	}
	d := r.domain
	if d == "" {
		d = dockerHub
	}
	out := d + "/" + r.path
	if r.tag != "" {
		out += ":" + r.tag
	}
	if r.digest != "" {
		out += "@" + r.digest
	}
	return out, nil
}
