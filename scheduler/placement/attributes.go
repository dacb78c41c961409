package placement

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/api"
)

// Attribute targets a constraint, affinity or spread may name.
const (
	targetNodeName       = "${node.name}"
	targetNodeID         = "${node.id}"
	targetNodeDatacenter = "${node.datacenter}"
	prefixNodeLabel      = "${node.label."
	prefixAttr           = "${attr."
)

// defaultDatacenter is the datacenter of a node that reports none, and of
// a job that names none.
const defaultDatacenter = "dc1"

// validTarget reports whether s is an attribute reference resolveTarget
// understands.
func validTarget(s string) bool {
	switch s {
	case targetNodeName, targetNodeID, targetNodeDatacenter:
		return true
	}
	for _, p := range []string{prefixNodeLabel, prefixAttr} {
		if strings.HasPrefix(s, p) && strings.HasSuffix(s, "}") && len(s) > len(p)+1 {
			return true
		}
	}
	return false
}

// resolveTarget returns the node's value for an attribute reference such
// as ${node.label.rack}, and whether the node has it.
func resolveTarget(n *api.Node, target string) (string, bool) {
	switch target {
	case targetNodeName:
		return n.Name, true
	case targetNodeID:
		return n.ID, true
	case targetNodeDatacenter:
		return nodeDatacenter(n), true
	}
	if strings.HasPrefix(target, prefixNodeLabel) && strings.HasSuffix(target, "}") {
		v, ok := n.Labels[target[len(prefixNodeLabel):len(target)-1]]
		return v, ok
	}
	if strings.HasPrefix(target, prefixAttr) && strings.HasSuffix(target, "}") {
		v, ok := n.Attributes[target[len(prefixAttr):len(target)-1]]
		return v, ok
	}
	return "", false
}

func nodeDatacenter(n *api.Node) string {
	if n.Datacenter == "" {
		return defaultDatacenter
	}
	return n.Datacenter
}

// matcher is a compiled constraint or affinity test on one attribute.
type matcher struct {
	target string
	op     string
	value  string
	re     *regexp.Regexp
	ver    []versionCheck
	set    []string
}

// newMatcher compiles a constraint test. distinct_hosts is not a matcher:
// it depends on the plan, not on the node alone.
func newMatcher(target, op, value string) (*matcher, error) {
	if op == "" {
		op = api.OpEqual
	}
	m := &matcher{target: target, op: op, value: value}
	switch op {
	case api.OpEqual, api.OpNotEqual:
	case api.OpRegexp:
		re, err := regexp.Compile(value)
		if err != nil {
			return nil, fmt.Errorf("regexp %q does not compile: %v", value, err)
		}
		m.re = re
	case api.OpVersion:
		v, err := parseVersionConstraint(value)
		if err != nil {
			return nil, err
		}
		m.ver = v
	case api.OpSetContains:
		m.set = splitSet(value)
		if len(m.set) == 0 {
			return nil, fmt.Errorf("set_contains needs a comma-separated list of values")
		}
	default:
		return nil, fmt.Errorf("unknown operator %q: use =, !=, regexp, version, set_contains or distinct_hosts", op)
	}
	return m, nil
}

// match reports whether the node satisfies the test. A node without the
// attribute fails every operator except != (a missing value is not equal).
func (m *matcher) match(n *api.Node) bool {
	v, ok := resolveTarget(n, m.target)
	if !ok {
		return m.op == api.OpNotEqual
	}
	switch m.op {
	case api.OpEqual:
		return v == m.value
	case api.OpNotEqual:
		return v != m.value
	case api.OpRegexp:
		return m.re.MatchString(v)
	case api.OpVersion:
		have, ok := parseVersion(v)
		if !ok {
			return false
		}
		for _, c := range m.ver {
			if !c.ok(have) {
				return false
			}
		}
		return true
	case api.OpSetContains:
		have := splitSet(v)
		for _, want := range m.set {
			found := false
			for _, h := range have {
				if h == want {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	return false
}

func (m *matcher) String() string {
	return m.target + " " + m.op + " " + m.value
}

func splitSet(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// versionCheck is one comparison of a version constraint such as ">= 1.2".
type versionCheck struct {
	op string // =, !=, >, >=, <, <=, ~>
	v  []int
}

// parseVersionConstraint reads a comma-separated list of comparisons:
// ">= 1.2, < 2", "= 6.1", "~> 1.4" (at least 1.4, below 2.0). A bare
// version means "=".
func parseVersionConstraint(s string) ([]versionCheck, error) {
	var out []versionCheck
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("version constraint %q has an empty term", s)
		}
		op := "="
		for _, cand := range []string{">=", "<=", "!=", "~>", ">", "<", "="} {
			if strings.HasPrefix(part, cand) {
				op = cand
				part = strings.TrimSpace(part[len(cand):])
				break
			}
		}
		v, ok := parseVersion(part)
		if !ok {
			return nil, fmt.Errorf("version constraint %q: %q is not a version such as 1.2.3", s, part)
		}
		out = append(out, versionCheck{op: op, v: v})
	}
	return out, nil
}

// parseVersion reads the leading dotted numbers of a version: "v1.2.3",
// "6.1.0-18-amd64" (→ 6.1.0), "535.104.05". Pre-release and build
// suffixes are ignored, which suits kernel, driver and CUDA versions.
func parseVersion(s string) ([]int, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	end := 0
	for end < len(s) && (s[end] == '.' || (s[end] >= '0' && s[end] <= '9')) {
		end++
	}
	s = strings.TrimRight(s[:end], ".")
	if s == "" {
		return nil, false
	}
	var out []int
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func compareVersions(a, b []int) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (c versionCheck) ok(have []int) bool {
	cmp := compareVersions(have, c.v)
	switch c.op {
	case "=":
		return cmp == 0
	case "!=":
		return cmp != 0
	case ">":
		return cmp > 0
	case ">=":
		return cmp >= 0
	case "<":
		return cmp < 0
	case "<=":
		return cmp <= 0
	case "~>":
		if cmp < 0 {
			return false
		}
		// ~> 1.4 allows 1.x from 1.4; ~> 1.4.2 allows 1.4.x from 1.4.2.
		if len(c.v) < 2 {
			return true
		}
		upper := append([]int(nil), c.v[:len(c.v)-1]...)
		upper[len(upper)-1]++
		return compareVersions(have, upper) < 0
	}
	return false
}
