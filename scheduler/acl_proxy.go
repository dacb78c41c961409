package scheduler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
)

// The proxied agent routes (ANY /v1/nodes/:id/agent/*) are checked on the
// path they reach on the agent. A container route needs its right on the
// container's job, found from the node's allocations in the state (no call
// to the agent); image, volume and network writes change the node for
// every job, so they need the right on every job.

// agentNeed says what a proxied agent route needs.
type agentNeed int

const (
	agentManagement    agentNeed = iota // unknown routes: fail closed
	agentCluster                        // node-wide reads
	agentContainer                      // cap on the job of container :id
	agentContainerList                  // any token; filtered to readable jobs
	agentGlobal                         // cap on every job
)

// agentRule is one line of agentRules. Method "*" matches any method; in
// pattern, ":x" matches one path segment and a final "*" the rest.
type agentRule struct {
	method, pattern string
	need            agentNeed
	cap             string
}

// agentRules maps the agent's routes (agent/http*.go) to what they need.
var agentRules = []agentRule{
	{"GET", "/health", agentCluster, ""},
	{"GET", "/metrics", agentCluster, ""},
	{"GET", "/gpus", agentCluster, ""},
	{"GET", "/containers", agentContainerList, api.CapRead},
	{"GET", "/containers/:id", agentContainer, api.CapRead},
	{"GET", "/containers/:id/wait", agentContainer, api.CapRead},
	{"GET", "/containers/:id/stats", agentContainer, api.CapRead},
	{"GET", "/containers/:id/logs", agentContainer, api.CapLogs},
	{"POST", "/containers/:id/kill", agentContainer, api.CapSubmit},
	{"POST", "/containers/:id/exec", agentContainer, api.CapExec},
	{"*", "/containers/:id/exec/*", agentContainer, api.CapExec},
	{"*", "/containers/:id/attach", agentContainer, api.CapAttach},
	{"*", "/containers/:id/attach/*", agentContainer, api.CapAttach},
	{"*", "/containers/:id/resize", agentContainer, api.CapAttach},
	{"GET", "/images", agentCluster, ""},
	{"GET", "/images/save", agentCluster, ""},
	{"GET", "/images/:ref", agentCluster, ""},
	{"GET", "/images/:ref/history", agentCluster, ""},
	{"GET", "/images/*", agentCluster, ""}, // references with '/' in them
	{"POST", "/images/*", agentGlobal, api.CapSubmit},
	{"DELETE", "/images/*", agentGlobal, api.CapSubmit},
	{"GET", "/volumes", agentCluster, ""},
	{"GET", "/volumes/:name", agentCluster, ""},
	{"POST", "/volumes", agentGlobal, api.CapSubmit},
	{"POST", "/volumes/prune", agentGlobal, api.CapSubmit},
	{"DELETE", "/volumes/:name", agentGlobal, api.CapSubmit},
	{"GET", "/networks", agentCluster, ""},
	{"GET", "/networks/:name", agentCluster, ""},
	{"POST", "/networks", agentGlobal, api.CapSubmit},
	{"POST", "/networks/prune", agentGlobal, api.CapSubmit},
	{"DELETE", "/networks/:name", agentGlobal, api.CapSubmit},
	{"POST", "/system/prune", agentManagement, ""},
}

// matchAgentRule finds the rule of a proxied request and the value of its
// :id segment, if any.
func matchAgentRule(method, rest string) (agentRule, string, bool) {
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	for _, r := range agentRules {
		if r.method != "*" && r.method != method {
			continue
		}
		if id, ok := matchPattern(strings.Split(strings.Trim(r.pattern, "/"), "/"), segs); ok {
			return r, id, true
		}
	}
	return agentRule{}, "", false
}

func matchPattern(pat, segs []string) (id string, ok bool) {
	for i, p := range pat {
		if p == "*" && i == len(pat)-1 {
			return id, len(segs) > i
		}
		if i >= len(segs) {
			return "", false
		}
		switch {
		case strings.HasPrefix(p, ":"):
			if segs[i] == "" {
				return "", false
			}
			if p == ":id" {
				id = segs[i]
			}
		case p != segs[i]:
			return "", false
		}
	}
	return id, len(pat) == len(segs)
}

// checkProxy decides a proxied agent request. The token never travels on
// to the agent.
func (s *Server) checkProxy(c echo.Context, a *authz) (bool, func(json.RawMessage) bool, error) {
	c.Request().Header.Del("Authorization")
	rule, ctr, ok := matchAgentRule(c.Request().Method, c.Param("*"))
	if !ok {
		return a.management, nil, nil
	}
	switch rule.need {
	case agentCluster:
		return a.cluster(), nil, nil
	case agentGlobal:
		return a.allowsAll(rule.cap), nil, nil
	case agentContainerList:
		return true, s.containerFilter(a), nil
	case agentContainer:
		jobs, err := s.containerJobs(c.Param("id"), ctr)
		if err != nil {
			return false, nil, err
		}
		if len(jobs) == 0 {
			return a.allowsAll(rule.cap), nil, nil
		}
		for _, j := range jobs {
			if !a.allows(rule.cap, j) {
				return false, nil, nil
			}
		}
		return true, nil, nil
	}
	return a.management, nil, nil
}

// agentContainerID is the ID the agent gives the container of task in an
// allocation (agent.ContainerID: derived, so every party computes it).
func agentContainerID(allocID, task string) string {
	sum := sha256.Sum256([]byte(allocID + "/" + task))
	return hex.EncodeToString(sum[:])
}

// containerJobs returns the jobs whose containers on node nodeRef match
// ref (a container ID, an ID prefix or a container name), from the node's
// allocations. None means ref is not a container of any allocation.
func (s *Server) containerJobs(nodeRef, ref string) ([]string, error) {
	if ref == "" {
		return nil, nil
	}
	st := s.raft.State()
	n, err := findNode(st, nil, nodeRef)
	if err != nil {
		// An unknown node: the proxy answers 404 for it, and that
		// says nothing about any job.
		return nil, nil
	}
	allocs, err := st.AllocsByNode(nil, n.ID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var jobs []string
	for _, al := range allocs {
		if al.Job == nil {
			continue
		}
		for _, g := range al.Job.Groups {
			if g == nil || g.Name != al.Group {
				continue
			}
			for _, t := range g.Tasks {
				if t == nil {
					continue
				}
				id := agentContainerID(al.ID, t.Name)
				match := strings.HasPrefix(id, ref) || ref == al.JobID ||
					ref == fmt.Sprintf("%s.%s.%d.%s", al.JobID, al.Group, al.Index, t.Name)
				if match && !seen[al.JobID] {
					seen[al.JobID] = true
					jobs = append(jobs, al.JobID)
				}
			}
		}
	}
	return jobs, nil
}

// containerFilter keeps the containers of a list whose allocation's job
// the token may read; containers of no known allocation need read on
// every job.
func (s *Server) containerFilter(a *authz) func(json.RawMessage) bool {
	st := s.raft.State()
	return func(raw json.RawMessage) bool {
		var ci struct {
			AllocID string `json:"alloc_id"`
		}
		if json.Unmarshal(raw, &ci) != nil {
			return false
		}
		var al *api.Allocation
		if ci.AllocID != "" {
			al, _ = st.AllocByID(nil, ci.AllocID)
		}
		if al == nil {
			return a.allowsAll(api.CapRead)
		}
		return a.allows(api.CapRead, al.JobID)
	}
}
