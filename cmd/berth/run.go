package main

// `berth run`: docker run on a cluster. It turns the flags into a job with
// one group and one task, registers it, waits for the scheduler to place it
// and the agent to start it, then streams the container's output until it
// exits and exits with its code.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

// Job meta keys berth run sets.
const (
	metaRun     = "berth.run"     // "1": the job came from berth run
	metaStarted = "berth.started" // unix nanos of the last container start
)

func init() { addCommand(newRunCmd) }

type runFlags struct {
	detach, rm, interactive, tty bool
	name                         string
	env, envFiles, volumes       []string
	workdir, user                string
	entrypoint                   string
	cpus                         string
	memory                       string
	pidsLimit                    int
	gpus                         string
	labels                       []string
	restart                      string
	stopTimeout                  string
	stopSignal                   string
	network                      string
	networkAliases               []string
	constraints                  []string
	publish                      []string
	capAdd, capDrop              []string
	priority                     int
	datacenters                  []string
	noAuth                       bool
}

func newRunCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container, placed on a node with room for it",
		Long: `Run registers a job with one container, waits until a node runs it and
streams its output; berth exits with the container's exit code. With -d it
prints the container ID instead. The job is a batch job, or a service job
with --restart always|unless-stopped|on-failure[:N].

--constraint ATTR=VALUE (or ATTR!=VALUE) limits the nodes: node.name=foo,
node.datacenter=dc1, attr.kernel.name=linux, or a bare label key such as
rack=r1 for ${node.label.rack}.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMain(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container ID")
	fl.BoolVar(&f.rm, "rm", false, "remove the container (purge its job) when it exits")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open and send this terminal's input to it")
	fl.BoolVarP(&f.tty, "tty", "t", false, "give the container a terminal (with -i: this one, in raw mode; ctrl-p ctrl-q detaches)")
	fl.String("detach-keys", defaultDetachKeys, "the keys that detach from the container's terminal (-it)")
	fl.StringVar(&f.name, "name", "", "container (job) name; unique in the cluster")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set environment variables (K=V, or K to pass this shell's value)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file of K=V lines")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "mount a volume: NAME:/path[:ro] or /host/path:/path[:ro]")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user[:group] to run as (name or ID)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's entrypoint (\"\" clears it)")
	fl.StringVar(&f.cpus, "cpus", "", "number of CPUs (fractions allowed: 0.5)")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (such as 512m or 1g; at least 6m)")
	fl.IntVar(&f.pidsLimit, "pids-limit", 0, "most processes the container may have (-1 or 0: unlimited)")
	fl.StringVar(&f.gpus, "gpus", "", "GPUs: a count, or count=N,model=H100,memory>=40GiB,mig=1g.10gb,topology=nvlink")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "set a label on the container (K=V)")
	fl.StringVar(&f.restart, "restart", "no", "restart policy: no, always, unless-stopped, on-failure[:N]")
	fl.StringVar(&f.stopTimeout, "stop-timeout", "", "seconds (or a duration such as 30s) to wait after the stop signal before killing")
	fl.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops the container (default SIGTERM)")
	fl.StringVar(&f.network, "network", "", "network: bridge (default), none, host, container:ID or a network name")
	fl.StringArrayVar(&f.networkAliases, "network-alias", nil, "another name the container answers to on a user network (repeatable)")
	fl.StringArrayVar(&f.constraints, "constraint", nil, "place only on nodes where ATTR=VALUE (or ATTR!=VALUE)")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a port: [hostip:]hostport:containerport[/proto] or containerport[/proto]")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability")
	fl.IntVar(&f.priority, "priority", 0, "job priority 1..100 (default: the server's, 50)")
	fl.StringArrayVar(&f.datacenters, "datacenter", nil, "datacenters the container may run in")
	fl.BoolVar(&f.noAuth, "no-auth", false, "do not send your registry login for the image with the job")
	addAddressFlag(cmd)
	addRunSecurityFlags(cmd) // run_security.go
	return cmd
}

// buildRunJob turns the flags into a job. It validates every flag and
// touches nothing outside (except reading --env-file, the environment and,
// unless --no-auth, the client config for a registry login: attachLoginAuth).
func buildRunJob(f *runFlags, image string, command []string, changed func(string) bool) (*api.Job, error) {
	if err := checkImageRef(image); err != nil {
		return nil, err
	}
	name := f.name
	if name != "" {
		if err := checkCtrName(name); err != nil {
			return nil, err
		}
	}
	task := &api.Task{Name: "main", Image: image, Command: command, Tty: f.tty, Interactive: f.interactive}
	if changed("entrypoint") {
		task.Entrypoint = []string{}
		if f.entrypoint != "" {
			task.Entrypoint = []string{f.entrypoint}
		}
	}
	env := map[string]string{}
	for _, file := range f.envFiles {
		kvs, err := readEnvFile(file)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	kvs, err := parseEnvList(f.env)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if len(env) > 0 {
		task.Env = env
	}
	if f.workdir != "" {
		if !strings.HasPrefix(f.workdir, "/") {
			return nil, fmt.Errorf("invalid --workdir %q: it must be an absolute path", f.workdir)
		}
		task.WorkingDir = f.workdir
	}
	if changed("user") {
		if err := checkUser(f.user); err != nil {
			return nil, err
		}
		task.User = f.user
	}
	if f.cpus != "" {
		mc, err := parseCPUs(f.cpus)
		if err != nil {
			return nil, err
		}
		task.Resources.CPU = mc
	}
	if f.memory != "" {
		mb, err := parseMemoryMiB(f.memory)
		if err != nil {
			return nil, err
		}
		task.Resources.MemoryMB = mb
	}
	if changed("pids-limit") {
		if f.pidsLimit < -1 {
			return nil, fmt.Errorf("invalid --pids-limit %d: give a positive number, or -1 for no limit", f.pidsLimit)
		}
		if f.pidsLimit > 0 {
			task.Resources.PidsLimit = f.pidsLimit
		}
	}
	if f.gpus != "" {
		g, err := parseGPUs(f.gpus)
		if err != nil {
			return nil, err
		}
		task.Resources.GPUs = g
	}
	if len(f.labels) > 0 {
		task.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			if k == "" {
				return nil, fmt.Errorf("invalid --label %q: want KEY=VALUE", l)
			}
			task.Labels[k] = v
		}
	}
	for _, v := range f.volumes {
		if err := checkVolumeSpec(v); err != nil {
			return nil, err
		}
		task.Volumes = append(task.Volumes, v)
	}
	if f.network != "" {
		name := strings.TrimPrefix(f.network, "container:")
		if !regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`).MatchString(name) {
			return nil, fmt.Errorf("invalid --network %q: use bridge, none, host, container:ID or a network name", f.network)
		}
		task.Network = f.network
	}
	for _, a := range f.networkAliases {
		if !regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`).MatchString(a) {
			return nil, fmt.Errorf("invalid --network-alias %q: use letters, digits, '.', '_' and '-'", a)
		}
		task.NetworkAliases = append(task.NetworkAliases, a)
	}
	if f.stopTimeout != "" {
		d, err := parseStopTimeout(f.stopTimeout)
		if err != nil {
			return nil, err
		}
		task.StopTimeout = api.Duration(d)
	}
	if f.stopSignal != "" {
		if err := checkSignal(f.stopSignal); err != nil {
			return nil, fmt.Errorf("--stop-signal: %w", err)
		}
		task.StopSignal = f.stopSignal
	}
	for _, p := range f.publish {
		port, err := parsePublish(p)
		if err != nil {
			return nil, err
		}
		task.Ports = append(task.Ports, port)
	}
	for _, list := range []struct {
		flag string
		in   []string
		out  *[]string
	}{{"--cap-add", f.capAdd, &task.CapAdd}, {"--cap-drop", f.capDrop, &task.CapDrop}} {
		for _, c := range list.in {
			norm, err := checkCap(c)
			if err != nil {
				return nil, fmt.Errorf("invalid %s: %w", list.flag, err)
			}
			*list.out = append(*list.out, norm)
		}
	}
	var constraints []api.Constraint
	for _, c := range f.constraints {
		con, err := parseConstraint(c)
		if err != nil {
			return nil, err
		}
		constraints = append(constraints, con)
	}
	jobType, restart, err := parseRestart(f.restart)
	if err != nil {
		return nil, err
	}
	if f.rm && jobType == api.JobTypeService {
		return nil, errors.New("conflicting options: --restart and --rm; a container removed when it exits cannot be restarted")
	}
	if f.priority != 0 && (f.priority < 1 || f.priority > 100) {
		return nil, fmt.Errorf("invalid --priority %d: use 1..100", f.priority)
	}
	var resched *api.ReschedulePolicy
	if jobType == api.JobTypeBatch {
		// docker run semantics: a container that failed is not run again
		// elsewhere.
		resched = &api.ReschedulePolicy{Attempts: 0}
	}
	job := &api.Job{
		ID: name, Name: name, Type: jobType, Priority: f.priority, Datacenters: f.datacenters,
		Constraints: constraints,
		Groups: []*api.Group{{
			Name: "main", Count: 1, Restart: restart, Reschedule: resched, Tasks: []*api.Task{task},
		}},
		Meta: map[string]string{metaRun: "1", metaStarted: strconv.FormatInt(time.Now().UnixNano(), 10)},
	}
	if !f.noAuth {
		if err := attachLoginAuth(job); err != nil {
			return nil, err
		}
	}
	return job, nil
}

// attachLoginAuth gives every task of job that has no credentials of its
// own the submitting user's login for its image's registry (berth's
// client config, then the docker config and its credential helpers), so
// that whichever node runs the task can pull a private image: "login,
// then run" works across a cluster. A task without a login is left as it
// is. The servers keep the credential with the job (unencrypted in their
// Raft log for now) and show it only to the node that runs the task.
func attachLoginAuth(job *api.Job) error {
	for _, g := range job.Groups {
		if g == nil {
			continue
		}
		for _, t := range g.Tasks {
			if t == nil || t.Auth != nil || t.Image == "" {
				continue
			}
			a, _, err := registryAccess(t.Image, false)
			if err != nil {
				return fmt.Errorf("registry login for the image of task %q: %w (--no-auth sends none)", t.Name, err)
			}
			t.Auth = a
		}
	}
	return nil
}

var (
	ctrNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	volNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	imageRe   = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+|__)*(?:[.:][0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`)
)

func checkCtrName(n string) error {
	if len(n) > 128 || !ctrNameRe.MatchString(n) {
		return fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, up to 128 characters", n)
	}
	return nil
}

// checkImageRef accepts docker references (registry[:port]/repo[:tag][@digest])
// and image IDs (sha256:... or a hex prefix).
func checkImageRef(ref string) error {
	if ref == "" {
		return errors.New("an image name is required: berth run IMAGE [COMMAND...]")
	}
	if strings.HasPrefix(ref, "sha256:") {
		if regexp.MustCompile(`^sha256:[a-f0-9]{1,64}$`).MatchString(ref) {
			return nil
		}
	} else if len(ref) <= 255 && imageRe.MatchString(ref) {
		return nil
	}
	return fmt.Errorf("invalid image reference %q: want NAME[:TAG] such as busybox or registry:5000/team/app:1.0 (lowercase repository names)", ref)
}

func checkUser(u string) error {
	if u == "" || strings.ContainsAny(u, " \t\n/") || strings.Count(u, ":") > 1 || strings.HasPrefix(u, ":") || strings.HasSuffix(u, ":") {
		return fmt.Errorf("invalid --user %q: want USER, UID, USER:GROUP or UID:GID", u)
	}
	return nil
}

// readEnvFile reads K=V lines; blank lines and # comments are skipped, and
// a bare K takes the caller's value (skipped when unset).
func readEnvFile(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer fh.Close()
	var raw []string
	sc := bufio.NewScanner(fh)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, _, _ := strings.Cut(s, "=")
		if strings.ContainsAny(k, " \t") || k == "" {
			return nil, fmt.Errorf("--env-file %s line %d: invalid variable name %q", path, line, k)
		}
		raw = append(raw, strings.TrimLeft(sc.Text(), " \t"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	return parseEnvList(raw)
}

// parseCPUs turns "1.5" into 1500 millicores.
func parseCPUs(s string) (int, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("invalid --cpus %q: give a number of CPUs such as 0.5 or 2", s)
	}
	if v <= 0 || v > 4096 {
		return 0, fmt.Errorf("invalid --cpus %q: must be more than 0 and at most 4096", s)
	}
	mc := int(math.Round(v * 1000))
	if mc < 1 {
		return 0, fmt.Errorf("invalid --cpus %q: the smallest share is 0.001", s)
	}
	return mc, nil
}

// parseSize reads docker sizes: a number of bytes, or with a unit b, k,
// m, g, t (kb, mb, ... and KiB, MiB too), 1024-based.
func parseSize(s string) (int64, error) {
	m := regexp.MustCompile(`^(?i)([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(i?b?)$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: use a number with a unit such as 512m or 1g", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %v", s, err)
	}
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[strings.ToLower(m[2])]
	b := v * mult
	if b > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(b), nil
}

// parseMemoryMiB turns "512m" into 512 (MiB, rounded up); docker's minimum
// of 6 MiB applies.
func parseMemoryMiB(s string) (int, error) {
	b, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("invalid --memory: %w", err)
	}
	if b < 6<<20 {
		return 0, fmt.Errorf("invalid --memory %q: the minimum memory limit is 6m", s)
	}
	return int((b + 1<<20 - 1) >> 20), nil
}

// parseGPUs reads --gpus: "2", or "count=2,model=H100,memory>=40GiB".
func parseGPUs(s string) (*api.GPURequest, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid --gpus %q: %s; use a count (2) or count=2,model=H100,memory>=40GiB", s, why)
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return nil, bad("the count must be at least 1")
		}
		return &api.GPURequest{Count: n}, nil
	}
	if s == "all" {
		return nil, bad("\"all\" is not supported on a cluster (nodes differ)")
	}
	g := &api.GPURequest{Count: 1}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if k, v, ok := strings.Cut(part, ">="); ok && strings.TrimSpace(k) == "memory" {
			b, err := parseSize(strings.TrimSpace(v))
			if err != nil || b < 1<<20 {
				return nil, bad("memory>= needs a size such as 40GiB")
			}
			g.MinMemoryMiB = int(b >> 20)
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || v == "" {
			return nil, bad(fmt.Sprintf("%q is not KEY=VALUE", part))
		}
		switch k {
		case "count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, bad("count must be a number >= 1")
			}
			g.Count = n
		case "model":
			if _, err := regexp.Compile(v); err != nil {
				return nil, bad("model is not a valid name or regexp")
			}
			g.Model = v
		case "mig":
			g.MIGProfile = v
		case "topology":
			if v != "nvlink" {
				return nil, bad("topology may only be nvlink")
			}
			g.Topology = v
		default:
			return nil, bad(fmt.Sprintf("unknown key %q", k))
		}
	}
	return g, nil
}

// checkVolumeSpec accepts NAME:/path[:ro|rw] and /host:/path[:ro|rw].
func checkVolumeSpec(v string) error {
	parts := strings.Split(v, ":")
	bad := func(why string) error {
		return fmt.Errorf("invalid --volume %q: %s; use NAME:/path[:ro] or /host/path:/path[:ro]", v, why)
	}
	if len(parts) == 1 {
		return bad("anonymous volumes are not supported, name the volume")
	}
	if len(parts) > 3 {
		return bad("too many colons")
	}
	if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return bad(fmt.Sprintf("unknown mode %q", parts[2]))
	}
	src, dst := parts[0], parts[1]
	if !strings.HasPrefix(dst, "/") {
		return bad("the container path must be absolute")
	}
	if dst == "/" {
		return bad("cannot mount over /")
	}
	if !strings.HasPrefix(src, "/") && !volNameRe.MatchString(src) {
		return bad("the volume name may use [a-zA-Z0-9_.-] and start with a letter or digit")
	}
	return nil
}

func parseStopTimeout(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("invalid --stop-timeout %q: must be >= 0", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid --stop-timeout %q: give seconds (10) or a duration (30s)", s)
	}
	return d, nil
}

// parsePublish reads [hostip:]hostport:containerport[/proto] and
// containerport[/proto] (a dynamic host port).
func parsePublish(s string) (api.Port, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid --publish %q: %s; use [hostip:]hostport:containerport[/tcp|udp]", s, why)
	}
	spec, proto, hasProto := strings.Cut(s, "/")
	if !hasProto {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return api.Port{}, bad(fmt.Sprintf("unknown protocol %q", proto))
	}
	var hostIP, host, ctrPort string
	if strings.HasPrefix(spec, "[") { // [v6]:host:ctr
		end := strings.Index(spec, "]")
		if end < 0 || len(spec) <= end+1 || spec[end+1] != ':' {
			return api.Port{}, bad("unclosed IPv6 address")
		}
		hostIP, spec = spec[1:end], spec[end+2:]
		if net.ParseIP(hostIP) == nil {
			return api.Port{}, bad("bad host IP")
		}
	}
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 1:
		ctrPort = parts[0]
	case 2:
		host, ctrPort = parts[0], parts[1]
	case 3:
		if hostIP != "" {
			return api.Port{}, bad("too many colons")
		}
		hostIP, host, ctrPort = parts[0], parts[1], parts[2]
		if net.ParseIP(hostIP) == nil {
			return api.Port{}, bad(fmt.Sprintf("bad host IP %q", hostIP))
		}
	default:
		return api.Port{}, bad("too many colons")
	}
	port := func(p string) (int, error) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return 0, bad(fmt.Sprintf("port %q is not 1..65535", p))
		}
		return n, nil
	}
	to, err := port(ctrPort)
	if err != nil {
		return api.Port{}, err
	}
	out := api.Port{To: to, Protocol: proto, HostIP: hostIP}
	if host != "" {
		if out.Static, err = port(host); err != nil {
			return api.Port{}, err
		}
	}
	return out, nil
}

// checkCap normalises a capability name to NAME (without CAP_) or ALL.
func checkCap(c string) (string, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
	if n == "ALL" || regexp.MustCompile(`^[A-Z][A-Z_]*[A-Z]$`).MatchString(n) {
		return n, nil
	}
	return "", fmt.Errorf("%q is not a capability name (such as NET_ADMIN or CAP_SYS_TIME)", c)
}

// parseConstraint reads ATTR=VALUE or ATTR!=VALUE. A dotted attribute is
// used as is (node.name → ${node.name}); a bare key is a node label.
func parseConstraint(s string) (api.Constraint, error) {
	op := api.OpEqual
	k, v, ok := strings.Cut(s, "!=")
	if ok {
		op = api.OpNotEqual
	} else if k, v, ok = strings.Cut(s, "="); !ok {
		return api.Constraint{}, fmt.Errorf("invalid --constraint %q: want ATTR=VALUE or ATTR!=VALUE, such as node.name=web1 or rack=r1", s)
	}
	k = strings.TrimSpace(k)
	if k == "" || strings.ContainsAny(k, " \t") {
		return api.Constraint{}, fmt.Errorf("invalid --constraint %q: empty or spaced attribute", s)
	}
	attr := k
	switch {
	case strings.HasPrefix(k, "${") && strings.HasSuffix(k, "}"):
	case strings.Contains(k, "."):
		attr = "${" + k + "}"
	default:
		attr = "${node.label." + k + "}"
	}
	return api.Constraint{Attribute: attr, Operator: op, Value: v}, nil
}

// parseRestart maps docker's restart policies onto a job type and the
// group's restart policy.
func parseRestart(s string) (string, *api.RestartPolicy, error) {
	bad := fmt.Errorf("invalid --restart %q: use no, always, unless-stopped or on-failure[:N]", s)
	delay := api.Duration(time.Second)
	name, max, hasMax := strings.Cut(s, ":")
	switch name {
	case "", "no":
		if hasMax {
			return "", nil, bad
		}
		return api.JobTypeBatch, &api.RestartPolicy{Attempts: 0, Mode: api.RestartModeFail}, nil
	case "always", "unless-stopped":
		if hasMax {
			return "", nil, bad
		}
		return api.JobTypeService, &api.RestartPolicy{Attempts: math.MaxInt32, Interval: api.Duration(time.Minute), Delay: delay, Mode: api.RestartModeDelay, OnSuccess: true}, nil
	case "on-failure":
		if !hasMax {
			return api.JobTypeService, &api.RestartPolicy{Attempts: math.MaxInt32, Interval: api.Duration(time.Minute), Delay: delay, Mode: api.RestartModeDelay}, nil
		}
		n, err := strconv.Atoi(max)
		if err != nil || n < 0 {
			return "", nil, bad
		}
		return api.JobTypeService, &api.RestartPolicy{Attempts: n, Interval: api.Duration(24 * time.Hour), Delay: delay, Mode: api.RestartModeFail}, nil
	}
	return "", nil, bad
}

var (
	nameAdjectives = []string{"admiring", "bold", "brave", "calm", "clever", "eager", "elegant", "festive", "focused",
		"gallant", "happy", "jolly", "keen", "kind", "lucid", "modest", "nifty", "quirky", "serene", "sharp",
		"stoic", "tender", "vibrant", "wizardly", "zealous"}
	nameNouns = []string{"albatross", "anchor", "barge", "beacon", "buoy", "canoe", "capstan", "cutter", "dinghy",
		"ferry", "galleon", "harbor", "jetty", "keel", "ketch", "lighthouse", "mooring", "pier", "quay",
		"schooner", "sloop", "tugboat", "wharf", "yawl", "dock"}
)

func randInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0
	}
	return int(v.Int64())
}

// generateName picks a free docker-like name (adjective_noun), falling
// back to random hex.
func generateName(c *api.Client) (string, error) {
	for range 10 {
		n := nameAdjectives[randInt(len(nameAdjectives))] + "_" + nameNouns[randInt(len(nameNouns))]
		_, _, err := c.Jobs().Info(n, nil)
		if api.IsNotFound(err) {
			return n, nil
		}
		if err != nil {
			return "", err
		}
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "c" + hex.EncodeToString(b), nil
}

func runMain(cmd *cobra.Command, f *runFlags, args []string) error {
	job, err := buildRunJob(f, args[0], args[1:], cmd.Flags().Changed)
	if err != nil {
		return err
	}
	if !f.detach {
		if err := checkTTYInput(cmd, f.tty, f.interactive); err != nil {
			return err
		}
		if _, err := detachKeysOf(cmd); err != nil {
			return err
		}
	}
	if err := applyRunSecurityFlags(cmd, job.Groups[0].Tasks[0]); err != nil { // run_security.go
		return err
	}
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	if job.Name == "" {
		if job.Name, err = generateName(c); err != nil {
			return err
		}
		job.ID = job.Name
	} else if err := checkNameFree(c, job.Name); err != nil {
		return err
	}
	// Copies of a removed job of the same name may linger in the state;
	// the scheduler counts a finished one as this group's run, so the new
	// container gets a group of its own.
	if old, _, err := c.Jobs().Allocations(job.ID, nil); err == nil && len(old) > 0 {
		job.Groups[0].Name = "run-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	resp, err := c.Jobs().Register(job)
	if err != nil {
		return fmt.Errorf("register container %s: %w", job.Name, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	x, err := waitRunStart(ctx, c, job, resp, cmd.ErrOrStderr())
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; container %s keeps its job (`berth rm -f %s` removes it)", job.Name, job.Name)
		}
		if f.rm {
			_, _ = c.Jobs().Deregister(job.ID, true)
		}
		return err
	}
	if f.detach {
		fmt.Fprintln(cmd.OutOrStdout(), x.ID)
		return nil
	}
	var code int
	if f.tty || f.interactive {
		code, err = attachRunInteractive(cmd, c, x, f)
		var killed exitError
		if errors.Is(err, errDetached) {
			return nil // it runs on; `berth rm -f` removes it
		} else if errors.As(err, &killed) {
			return err // so does it when a signal ended the session
		}
	} else {
		code, err = attachRun(cmd, c, x, f.rm)
	}
	if f.rm {
		if _, derr := c.Jobs().Deregister(job.ID, true); derr != nil && !api.IsNotFound(derr) {
			fmt.Fprintf(cmd.ErrOrStderr(), "berth: remove %s: %v\n", job.Name, derr)
		}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// checkNameFree refuses a name that a container (job) already holds,
// running or not, as docker does: `berth rm` frees it.
func checkNameFree(c *api.Client, name string) error {
	j, _, err := c.Jobs().Info(name, nil)
	if api.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	allocs, _, err := c.Jobs().Allocations(name, nil)
	if err != nil {
		return err
	}
	live := false
	for _, a := range allocs {
		if !a.Terminal() {
			live = true
		}
	}
	if live || (!j.Stop && j.Status != api.JobStatusDead) {
		return fmt.Errorf("the container name %q is already in use by a running container; remove it with `berth rm -f %s` or choose another --name", name, name)
	}
	return fmt.Errorf("the container name %q is already in use by a stopped container; remove it with `berth rm %s` or choose another --name", name, name)
}

// waitRunStart waits until the job's new allocation is placed and its task
// has started (or died trying), and returns the container. A placement
// failure or a start failure is an error that says why.
func waitRunStart(ctx context.Context, c *api.Client, job *api.Job, resp *api.JobRegisterResponse, _ io.Writer) (*ctr, error) {
	cc := c.WithContext(ctx)
	var evalDone time.Time
	if resp.EvalID != "" {
		// The evaluation says at once when no node fits.
		ev, err := waitEval(cc, resp.EvalID, resp.Index, time.Minute)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			if why := runEvalFailure(ev); why != "" {
				if _, derr := c.Jobs().Deregister(job.ID, true); derr != nil {
					why += fmt.Sprintf(" (and removing the job failed: %v)", derr)
				}
				return nil, fmt.Errorf("cannot run %s: %s", job.Name, why)
			}
			evalDone = time.Now()
		}
	}
	var idx uint64
	evalChecked := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		allocs, meta, err := cc.Jobs().Allocations(job.ID, &api.QueryOptions{WaitIndex: idx, WaitTime: 2 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("wait for %s to be placed: %w", job.Name, err)
		}
		var newest *api.Allocation
		for _, a := range allocs {
			if a.CreateIndex < resp.JobModifyIndex {
				continue
			}
			if newest == nil || a.CreateIndex > newest.CreateIndex {
				newest = a
			}
		}
		if newest != nil {
			if newest.Job == nil {
				newest.Job = job
			}
			if x, done, err := startState(newest); done {
				return x, err
			}
		} else if !evalDone.IsZero() && time.Since(evalDone) > 5*time.Second {
			// The scheduler finished without failing and without placing
			// anything new for this version of the job.
			return nil, fmt.Errorf("the server placed no new container for %s (evaluation %s completed without placements); "+
				"`berth job status %s` shows its allocations", job.Name, shortID(resp.EvalID), job.Name)
		} else if time.Since(evalChecked) > 500*time.Millisecond && resp.EvalID != "" {
			evalChecked = time.Now()
			ev, _, err := cc.Evaluations().Info(resp.EvalID, nil)
			if err == nil && ev.Status != api.EvalStatusPending {
				if why := runEvalFailure(ev); why != "" {
					if _, derr := c.Jobs().Deregister(job.ID, true); derr != nil {
						why += fmt.Sprintf(" (and removing the job failed: %v)", derr)
					}
					return nil, fmt.Errorf("cannot run %s: %s", job.Name, why)
				}
			}
		}
		if meta != nil {
			idx = meta.LastIndex
		}
	}
}

func runEvalFailure(ev *api.Evaluation) string {
	var parts []string
	for _, g := range sortedKeys(ev.FailedTGAllocs) {
		parts = append(parts, ev.FailedTGAllocs[g])
	}
	if len(parts) == 0 && (ev.Status == api.EvalStatusFailed || ev.Status == api.EvalStatusBlocked) {
		d := ev.StatusDescription
		if d == "" {
			d = "no node fits the container"
		}
		parts = append(parts, d)
	}
	return strings.Join(parts, "; ")
}

// startState decides from an allocation whether its container has started
// (done, nil), failed to (done, error) or is still on its way.
func startState(a *api.Allocation) (*ctr, bool, error) {
	xs := ctrsOf(a)
	if len(xs) == 0 {
		return nil, true, fmt.Errorf("allocation %s has no task", a.ID)
	}
	x := xs[0]
	st := x.State
	switch {
	case st.State == api.TaskStateRunning:
		return x, true, nil
	case st.State == api.TaskStateDead && st.StartedAt > 0:
		return x, true, nil // ran and exited already: attach prints its logs
	case st.State == api.TaskStateDead:
		msg := st.Message
		if msg == "" {
			msg = a.ClientDescription
		}
		if msg == "" {
			msg = "the container failed to start"
		}
		return x, true, fmt.Errorf("container %s failed to start on node %s: %s", x.Name, x.node(), msg)
	case a.ClientStatus == api.AllocClientFailed || a.ClientStatus == api.AllocClientLost:
		msg := a.ClientDescription
		if msg == "" {
			msg = a.ClientStatus
		}
		return x, true, fmt.Errorf("container %s failed on node %s: %s", x.Name, x.node(), msg)
	case a.DesiredStatus != api.AllocDesiredRun && a.ClientStatus != api.AllocClientPending && a.ClientStatus != "":
		return x, true, fmt.Errorf("container %s was stopped before it started: %s", x.Name, a.DesiredDescription)
	}
	return x, false, nil
}

// attachRun streams the container's output until it exits, forwarding
// SIGINT and SIGTERM to it, and returns its exit code.
func attachRun(cmd *cobra.Command, c *api.Client, x *ctr, rm bool) (int, error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ag, err := agentFor(c, x)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case s := <-sigs:
				name := "SIGINT"
				if s == syscall.SIGTERM {
					name = "SIGTERM"
				}
				_ = ag.Kill(x.ID, name)
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := streamLogs(ctx, c, x, true, -1, false, cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
		return 0, err
	}
	code, oom, err := waitCtrExit(ctx, c, x, !rm)
	if err != nil {
		return 0, err
	}
	if oom {
		fmt.Fprintf(cmd.ErrOrStderr(), "berth: container %s was killed for exceeding its memory limit (OOM)\n", x.Name)
	}
	return code, nil
}

// attachRunInteractive attaches to a container started with -i or -t (the
// agent replays the log of one that already exited) and returns its exit
// code once it ends, or errDetached.
func attachRunInteractive(cmd *cobra.Command, c *api.Client, x *ctr, f *runFlags) (int, error) {
	ag, err := agentFor(c, x)
	if err != nil {
		return 0, err
	}
	code, err := interact(cmd, x.ID, f.tty, f.interactive, func(sig string) error { return ag.Kill(x.ID, sig) }, func(ctx context.Context, o api.AttachOptions) (*api.AttachStream, error) {
		return ag.Attach(ctx, x.ID, o)
	})
	if err != nil {
		return 0, err
	}
	// The agent reports the exit to the server a moment later; wait for it
	// (briefly) so that ps and inspect agree at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctrFinalState(ctx, c, x, 5*time.Second)
	return code, nil
}
