package placement

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
)

// Limits a job spec must respect.
const (
	MaxNameLength = 128
	MaxCount      = 10000
	MinPriority   = 1
	MaxPriority   = 100
	// DefaultPriority is given to a job that sets none.
	DefaultPriority = 50
	// DefaultCPU (millicores) and DefaultMemoryMB are given to a task that
	// asks for none.
	DefaultCPU      = 100
	DefaultMemoryMB = 128
	maxGPUCount     = 128
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`)

// FieldError is one problem with one field of a job spec.
type FieldError struct {
	Field   string // e.g. groups[0].tasks[1].resources.memory
	Problem string // e.g. must be >= 0
}

// ValidationError lists every problem ValidateJob found. It matches
// ErrInvalidJob with errors.Is.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Problem
	}
	return strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidJob) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidJob }

type validator struct{ problems []FieldError }

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// ValidateJob checks a job spec at the edge, before it reaches Raft. It
// accepts both a raw spec and one that Canonicalize has filled in (zero
// values stand for defaults). The error, a *ValidationError, names each
// bad field: "groups[0].tasks[1].resources.memory: must be >= 0".
func ValidateJob(job *api.Job) error {
	v := &validator{}
	if job == nil {
		v.add("job", "is missing")
		return &ValidationError{Problems: v.problems}
	}
	v.name("name", job.Name)
	if job.ID != "" && job.ID != job.Name {
		v.add("id", "must equal name %q (a job's ID is its name)", job.Name)
	}
	switch job.Type {
	case "", api.JobTypeService, api.JobTypeBatch, api.JobTypeSystem:
	default:
		v.add("type", "%q is not a job type: use service, batch or system", job.Type)
	}
	if job.Priority != 0 && (job.Priority < MinPriority || job.Priority > MaxPriority) {
		v.add("priority", "%d is out of range %d..%d", job.Priority, MinPriority, MaxPriority)
	}
	for i, dc := range job.Datacenters {
		if strings.TrimSpace(dc) == "" {
			v.add(fmt.Sprintf("datacenters[%d]", i), "must not be empty")
		}
	}
	v.constraints("constraints", job.Constraints)
	v.affinities("affinities", job.Affinities)
	v.spreads("spread", job.Spreads)
	if len(job.Groups) == 0 {
		v.add("groups", "at least one group is required")
	}
	groups := map[string]int{}
	for gi, g := range job.Groups {
		gf := fmt.Sprintf("groups[%d]", gi)
		if g == nil {
			v.add(gf, "is null")
			continue
		}
		v.name(gf+".name", g.Name)
		if prev, dup := groups[g.Name]; dup && g.Name != "" {
			v.add(gf+".name", "%q is also the name of groups[%d]", g.Name, prev)
		} else {
			groups[g.Name] = gi
		}
		if g.Count < 0 || g.Count > MaxCount {
			v.add(gf+".count", "%d is out of range 0..%d", g.Count, MaxCount)
		}
		v.constraints(gf+".constraints", g.Constraints)
		v.affinities(gf+".affinities", g.Affinities)
		v.spreads(gf+".spread", g.Spreads)
		if r := g.Restart; r != nil {
			if r.Attempts < 0 {
				v.add(gf+".restart.attempts", "must be >= 0")
			}
			if r.Interval < 0 {
				v.add(gf+".restart.interval", "must be >= 0")
			}
			if r.Delay < 0 {
				v.add(gf+".restart.delay", "must be >= 0")
			}
			switch r.Mode {
			case "", api.RestartModeFail, api.RestartModeDelay:
			default:
				v.add(gf+".restart.mode", "%q is not a restart mode: use fail or delay", r.Mode)
			}
		}
		if r := g.Reschedule; r != nil && r.Attempts < 0 {
			v.add(gf+".reschedule.attempts", "must be >= 0")
		}
		if len(g.Tasks) == 0 {
			v.add(gf+".tasks", "at least one task is required")
		}
		tasks := map[string]int{}
		ports := map[string]string{} // "8080/tcp" → field that took it
		portNames := map[string]string{}
		for ti, t := range g.Tasks {
			tf := fmt.Sprintf("%s.tasks[%d]", gf, ti)
			if t == nil {
				v.add(tf, "is null")
				continue
			}
			v.name(tf+".name", t.Name)
			if prev, dup := tasks[t.Name]; dup && t.Name != "" {
				v.add(tf+".name", "%q is also the name of %s.tasks[%d]", t.Name, gf, prev)
			} else {
				tasks[t.Name] = ti
			}
			if strings.TrimSpace(t.Image) == "" {
				v.add(tf+".image", "must not be empty")
			}
			v.resources(tf+".resources", t.Resources)
			v.security(tf, t)
			for pi, p := range t.Ports {
				pf := fmt.Sprintf("%s.ports[%d]", tf, pi)
				if p.To < 1 || p.To > 65535 {
					v.add(pf+".to", "%d is not a port number (1..65535)", p.To)
				}
				if p.Static < 0 || p.Static > 65535 {
					v.add(pf+".static", "%d is not a port number (1..65535, or 0 for a dynamic one)", p.Static)
				}
				switch p.Protocol {
				case "", "tcp", "udp":
				default:
					v.add(pf+".protocol", "%q is not a protocol: use tcp or udp", p.Protocol)
				}
				if p.Static > 0 {
					key := fmt.Sprintf("%d/%s", p.Static, protocolOf(p.Protocol))
					if prev, dup := ports[key]; dup {
						v.add(pf+".static", "host port %s is already taken by %s", key, prev)
					} else {
						ports[key] = pf
					}
				}
				if p.Name != "" {
					if prev, dup := portNames[p.Name]; dup {
						v.add(pf+".name", "%q is also the name of %s", p.Name, prev)
					} else {
						portNames[p.Name] = pf
					}
				}
			}
		}
	}
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems}
	}
	return nil
}

// MaxSeccompProfile bounds a task's inline seccomp profile (Docker's own
// default profile is about 20 KiB).
const MaxSeccompProfile = 1 << 20

// security checks a task's container-hardening options as far as the
// server can without the runtime: the agent compiles the seccomp profile
// and fails the task with the compiler's reason if it does not.
func (v *validator) security(tf string, t *api.Task) {
	switch t.Userns {
	case "", "host", "private":
	default:
		v.add(tf+".userns", "%q is not a user namespace mode: use host or private", t.Userns)
	}
	switch p := strings.TrimSpace(t.Seccomp); {
	case t.Seccomp == "" || t.Seccomp == "unconfined":
	case len(t.Seccomp) > MaxSeccompProfile:
		v.add(tf+".seccomp", "the profile is %d bytes; the limit is %d", len(t.Seccomp), MaxSeccompProfile)
	case !strings.HasPrefix(p, "{") || !json.Valid([]byte(p)):
		v.add(tf+".seccomp", "must be unconfined or a seccomp profile in Docker's JSON format")
	}
	for i, m := range t.Tmpfs {
		path, _, _ := strings.Cut(m, ":")
		if !strings.HasPrefix(path, "/") || path == "/" || strings.Contains(path, "..") || strings.ContainsRune(m, 0) {
			v.add(fmt.Sprintf("%s.tmpfs[%d]", tf, i), "%q: the path must be absolute and not /", m)
		}
	}
}

func protocolOf(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

func (v *validator) name(field, s string) {
	switch {
	case s == "":
		v.add(field, "must not be empty")
	case len(s) > MaxNameLength:
		v.add(field, "is %d characters long; the limit is %d", len(s), MaxNameLength)
	case !nameRE.MatchString(s):
		v.add(field, "%q may hold only letters, digits, '-', '_' and '.', and must start and end with a letter or digit", s)
	}
}

func (v *validator) resources(field string, r api.Resources) {
	if r.CPU < 0 {
		v.add(field+".cpu", "must be >= 0")
	}
	if r.MemoryMB < 0 {
		v.add(field+".memory", "must be >= 0")
	}
	if r.PidsLimit < 0 {
		v.add(field+".pids_limit", "must be >= 0")
	}
	g := r.GPUs
	if g == nil {
		return
	}
	if g.Count < 0 {
		v.add(field+".gpus.count", "must be >= 0")
	} else if g.Count > maxGPUCount {
		v.add(field+".gpus.count", "%d is more than %d", g.Count, maxGPUCount)
	}
	if g.Model != "" {
		if _, err := regexp.Compile(g.Model); err != nil {
			v.add(field+".gpus.model", "%q is neither a model name nor a valid regexp: %v", g.Model, err)
		}
	}
	if g.MinMemoryMiB < 0 {
		v.add(field+".gpus.min_memory_mib", "must be >= 0")
	}
	switch g.Topology {
	case "", "nvlink":
	default:
		v.add(field+".gpus.topology", "%q is not a topology: use nvlink or leave it empty", g.Topology)
	}
	if g.Topology == "nvlink" && g.MIGProfile != "" {
		v.add(field+".gpus.topology", "nvlink does not apply to MIG instances (mig_profile %q)", g.MIGProfile)
	}
}

func (v *validator) constraints(field string, cs []api.Constraint) {
	for i, c := range cs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if c.Operator == api.OpDistinctHosts {
			continue
		}
		if !validTarget(c.Attribute) {
			v.add(f+".attribute", "%q is not an attribute: use ${node.name}, ${node.id}, ${node.datacenter}, ${node.label.KEY} or ${attr.KEY}", c.Attribute)
		}
		if _, err := newMatcher(c.Attribute, c.Operator, c.Value); err != nil {
			v.add(f+".operator", "%v", err)
		}
	}
}

func (v *validator) affinities(field string, as []api.Affinity) {
	for i, a := range as {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !validTarget(a.Attribute) {
			v.add(f+".attribute", "%q is not an attribute: use ${node.name}, ${node.id}, ${node.datacenter}, ${node.label.KEY} or ${attr.KEY}", a.Attribute)
		}
		if a.Operator == api.OpDistinctHosts {
			v.add(f+".operator", "distinct_hosts is a constraint, not an affinity")
		} else if _, err := newMatcher(a.Attribute, a.Operator, a.Value); err != nil {
			v.add(f+".operator", "%v", err)
		}
		if a.Weight < -100 || a.Weight > 100 {
			v.add(f+".weight", "%d is out of range -100..100", a.Weight)
		}
	}
}

func (v *validator) spreads(field string, ss []api.Spread) {
	for i, s := range ss {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !validTarget(s.Attribute) {
			v.add(f+".attribute", "%q is not an attribute: use ${node.name}, ${node.id}, ${node.datacenter}, ${node.label.KEY} or ${attr.KEY}", s.Attribute)
		}
		if s.Weight < 0 || s.Weight > 100 {
			v.add(f+".weight", "%d is out of range 0..100", s.Weight)
		}
	}
}

// Restart defaults, as Nomad has them.
var (
	defaultServiceRestart = api.RestartPolicy{Attempts: 2, Interval: api.Duration(30 * time.Minute), Delay: api.Duration(15 * time.Second), Mode: api.RestartModeFail}
	defaultBatchRestart   = api.RestartPolicy{Attempts: 3, Interval: api.Duration(24 * time.Hour), Delay: api.Duration(15 * time.Second), Mode: api.RestartModeFail}
)

// Canonicalize fills a job's defaults in place: ID = Name, type service,
// priority 50, datacenters [dc1], constraint operator "=", affinity and
// spread weight 50, group count 1 (0 reads as unset: stop a job to run
// none), restart policy by type (service and system: 2 attempts in 30m,
// delay 15s, mode fail; batch: 3 attempts in 24h, delay 15s, mode fail),
// task cpu 100 and memory 128 when unset, and a GPU count of 1 when a GPU
// request names a model or other property but no count. Negative values
// are left for ValidateJob to refuse. The server calls Canonicalize, then
// ValidateJob.
func Canonicalize(job *api.Job) {
	if job == nil {
		return
	}
	if job.ID == "" {
		job.ID = job.Name
	}
	if job.Type == "" {
		job.Type = api.JobTypeService
	}
	if job.Priority == 0 {
		job.Priority = DefaultPriority
	}
	if len(job.Datacenters) == 0 {
		job.Datacenters = []string{defaultDatacenter}
	}
	canonConstraints(job.Constraints)
	canonAffinities(job.Affinities)
	canonSpreads(job.Spreads)
	restart := defaultServiceRestart
	if job.Type == api.JobTypeBatch {
		restart = defaultBatchRestart
	}
	for _, g := range job.Groups {
		if g == nil {
			continue
		}
		if g.Count == 0 {
			g.Count = 1
		}
		canonConstraints(g.Constraints)
		canonAffinities(g.Affinities)
		canonSpreads(g.Spreads)
		if g.Restart == nil {
			r := restart
			g.Restart = &r
		} else {
			if g.Restart.Interval == 0 {
				g.Restart.Interval = restart.Interval
			}
			if g.Restart.Delay == 0 {
				g.Restart.Delay = restart.Delay
			}
			if g.Restart.Mode == "" {
				g.Restart.Mode = restart.Mode
			}
		}
		for _, t := range g.Tasks {
			if t == nil {
				continue
			}
			if t.Resources.CPU == 0 {
				t.Resources.CPU = DefaultCPU
			}
			if t.Resources.MemoryMB == 0 {
				t.Resources.MemoryMB = DefaultMemoryMB
			}
			if gr := t.Resources.GPUs; gr != nil && gr.Count == 0 {
				if *gr == (api.GPURequest{}) {
					t.Resources.GPUs = nil
				} else {
					gr.Count = 1
				}
			}
			for i := range t.Ports {
				if t.Ports[i].Protocol == "" {
					t.Ports[i].Protocol = "tcp"
				}
			}
		}
	}
}

func canonConstraints(cs []api.Constraint) {
	for i := range cs {
		if cs[i].Operator == "" {
			cs[i].Operator = api.OpEqual
		}
	}
}

func canonAffinities(as []api.Affinity) {
	for i := range as {
		if as[i].Operator == "" {
			as[i].Operator = api.OpEqual
		}
		if as[i].Weight == 0 {
			as[i].Weight = 50
		}
	}
}

func canonSpreads(ss []api.Spread) {
	for i := range ss {
		if ss[i].Weight == 0 {
			ss[i].Weight = 50
		}
	}
}
