package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/image"
)

// Options describe one build.
type Options struct {
	// ContextDir is the build context: a directory on this host.
	ContextDir string
	// Dockerfile is the Dockerfile's path inside ContextDir (default
	// "Dockerfile"); DockerfileData, when not nil, is used instead.
	Dockerfile     string
	DockerfileData []byte
	// Tags name the final image (validated with image.ParseName).
	Tags []string
	// Target is the stage to build (default: the last one).
	Target string
	// NoCache runs every step again (its results still fill the cache).
	NoCache bool
	// BuildArgs set ARG values (--build-arg).
	BuildArgs map[string]string
	// Labels are added to the final image (--label).
	Labels map[string]string
	// Network is RUN's network: "host" (default) or "none".
	Network string
	// Platform, when set, must be this host's ("linux/amd64").
	Platform string
	// Pull says how to fetch FROM and COPY --from images the store lacks.
	Pull image.PullOptions
	// Progress receives the build's events; it is called from the
	// building goroutine only and should not block for long.
	Progress func(Event)
}

// Event kinds.
const (
	// EventStep: a step starts (Instruction is set).
	EventStep = "step"
	// EventCached: the step's result came from the cache.
	EventCached = "cached"
	// EventOutput: output of a RUN step (Output holds whole lines).
	EventOutput = "output"
	// EventDone: the step finished (Duration is set).
	EventDone = "done"
)

// Event is one progress report of a build.
type Event struct {
	Kind        string
	Step, Total int
	Instruction string
	Output      string
	Duration    time.Duration
}

// Result is a finished build.
type Result struct {
	Image *image.Image
	// Steps is how many steps ran or were reused; Cached how many of
	// them came from the cache.
	Steps, Cached int
}

// Builder builds images into one store. Its methods are safe for
// concurrent use; builds share the cache.
type Builder struct {
	images     *image.Store
	containers *container.Manager
	ctrRoot    string
	tmp        string
	log        *slog.Logger
	contexts   *contextCache
}

// DefaultShell is what shell-form RUN, CMD and ENTRYPOINT run under
// unless SHELL changes it.
var DefaultShell = []string{"/bin/sh", "-c"}

// New returns a builder that stores images in images and keeps its work
// (RUN containers, scratch files) under dir (the agent uses
// DATA_DIR/build). Containers a killed builder left behind are removed.
func New(images *image.Store, dir string) (*Builder, error) {
	b := &Builder{
		images:   images,
		ctrRoot:  filepath.Join(dir, "containers"),
		tmp:      filepath.Join(dir, "tmp"),
		log:      slog.Default().With("component", "build"),
		contexts: &contextCache{dir: filepath.Join(dir, "contexts"), refs: map[string]int{}, busy: map[string]*sync.Mutex{}},
	}
	if err := os.MkdirAll(b.contexts.dir, 0o700); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		return nil, fmt.Errorf("build: clean %s: %w", b.tmp, err)
	}
	if err := os.MkdirAll(b.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := b.openContainers(); err != nil {
		return nil, err
	}
	return b, nil
}

// TempDir returns a fresh directory under the builder's scratch space
// (for an uploaded context); the caller removes it.
func (b *Builder) TempDir(pattern string) (string, error) {
	return os.MkdirTemp(b.tmp, pattern)
}

// stageResult is where a stage ended.
type stageResult struct {
	cfg *v1.ConfigFile
	id  string // "" for a scratch stage that committed nothing
}

// job is one Build call.
type job struct {
	b       *Builder
	opts    Options
	df      *Dockerfile
	lex     *shell.Lex
	meta    *envMap
	total   int
	step    int
	cached  int
	ignore  *ignorer
	results map[int]*stageResult
	emit    func(Event)
}

// Build runs the Dockerfile of opts and returns the image it made.
func (b *Builder) Build(ctx context.Context, opts Options) (*Result, error) {
	if err := b.checkOptions(&opts); err != nil {
		return nil, err
	}
	data := opts.DockerfileData
	if data == nil {
		name := opts.Dockerfile
		if name == "" {
			name = "Dockerfile"
		}
		p, err := inContext(opts.ContextDir, name)
		if err != nil {
			return nil, err
		}
		if data, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("%w: read the Dockerfile %s: %v", ErrOptions, name, err)
		}
	}
	df, err := Parse(data)
	if err != nil {
		return nil, err
	}
	ign, err := loadIgnore(opts.ContextDir)
	if err != nil {
		return nil, err
	}
	j := &job{b: b, opts: opts, df: df, lex: shell.NewLex(df.escape), ignore: ign, results: map[int]*stageResult{}, emit: opts.Progress}
	if j.emit == nil {
		j.emit = func(Event) {}
	}
	target := len(df.Stages) - 1
	if opts.Target != "" {
		i, ok := df.stageIndex(opts.Target, len(df.Stages))
		if !ok {
			return nil, fmt.Errorf("%w: target stage %q is not in the Dockerfile", ErrOptions, opts.Target)
		}
		target = i
	}
	j.meta = j.metaArgs()
	needed, err := j.neededStages(target)
	if err != nil {
		return nil, err
	}
	for i := range df.Stages {
		if needed[i] {
			j.total += 1 + len(df.Stages[i].Commands)
		}
	}
	if len(opts.Labels) > 0 {
		j.total++
	}
	for i := range df.Stages {
		if !needed[i] {
			continue
		}
		res, err := j.runStage(ctx, i)
		if err != nil {
			return nil, err
		}
		j.results[i] = res
	}
	final := j.results[target]
	if len(opts.Labels) > 0 {
		j.step++
		text := "LABEL"
		for _, k := range sortedKeys(opts.Labels) {
			text += fmt.Sprintf(" %s=%q", k, opts.Labels[k])
		}
		j.emit(Event{Kind: EventStep, Step: j.step, Total: j.total, Instruction: text})
		start := time.Now()
		key := cacheKey(final, "labels", text)
		next, hit := j.lookup(key)
		if !hit {
			cfg := cloneConfig(final.cfg)
			if cfg.Config.Labels == nil {
				cfg.Config.Labels = map[string]string{}
			}
			for k, v := range opts.Labels {
				cfg.Config.Labels[k] = v
			}
			cfg.History = append(cfg.History, v1.History{CreatedBy: text, EmptyLayer: true})
			if next, err = j.commitStep(ctx, cfg, key); err != nil {
				return nil, err
			}
		}
		j.doneStep(hit, start)
		final = next
	}
	if final.id == "" {
		// FROM scratch and nothing else: commit the empty image.
		key := cacheKey(final, "empty")
		next, hit := j.lookup(key)
		if !hit {
			if next, err = j.commitStep(ctx, cloneConfig(final.cfg), key); err != nil {
				return nil, err
			}
		}
		final = next
	}
	for _, t := range opts.Tags {
		if err := b.images.Tag(final.id, t); err != nil {
			return nil, err
		}
	}
	if len(opts.Tags) == 0 {
		// An untagged result is listed as dangling, as docker shows it.
		if err := b.images.MarkBuilt(final.id); err != nil {
			return nil, err
		}
	}
	img, err := b.images.Get(final.id)
	if err != nil {
		return nil, err
	}
	return &Result{Image: img, Steps: j.step, Cached: j.cached}, nil
}

func (b *Builder) checkOptions(o *Options) error {
	if o.ContextDir == "" {
		return fmt.Errorf("%w: no build context", ErrOptions)
	}
	if fi, err := os.Stat(o.ContextDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: build context %s is not a directory", ErrOptions, o.ContextDir)
	}
	for _, t := range o.Tags {
		if _, err := image.ParseName(t); err != nil {
			return fmt.Errorf("%w: tag %q: %v", ErrOptions, t, err)
		}
	}
	switch o.Network {
	case "", "default", "host":
		o.Network = "host"
	case "none":
	default:
		return fmt.Errorf("%w: network %q: use host or none", ErrOptions, o.Network)
	}
	if o.Platform != "" && o.Platform != hostPlatform() {
		return fmt.Errorf("%w: platform %s: this node builds only for %s", ErrOptions, o.Platform, hostPlatform())
	}
	return nil
}

func hostPlatform() string { return "linux/" + runtime.GOARCH }

// metaArgs evaluates the ARGs before the first FROM, with the platform
// arguments Docker predefines.
func (j *job) metaArgs() *envMap {
	m := newEnvMap()
	for k, v := range map[string]string{
		"BUILDPLATFORM": hostPlatform(), "TARGETPLATFORM": hostPlatform(),
		"BUILDOS": "linux", "TARGETOS": "linux", "BUILDARCH": runtime.GOARCH, "TARGETARCH": runtime.GOARCH,
	} {
		m.Set(k, v)
	}
	for _, a := range j.df.MetaArgs {
		for _, kv := range a.Args {
			v := ""
			if kv.Value != nil {
				v, _, _ = j.lex.ProcessWord(*kv.Value, m)
			}
			if bv, ok := j.opts.BuildArgs[kv.Key]; ok {
				v = bv
			}
			m.Set(kv.Key, v)
		}
	}
	return m
}

// baseName expands a stage's FROM with the meta args.
func (j *job) baseName(i int) (string, error) {
	s := j.df.Stages[i]
	name, _, err := j.lex.ProcessWord(s.BaseName, j.meta)
	if err != nil {
		return "", lineError(stageLine(s), "FROM %s: %v", s.BaseName, err)
	}
	if name == "" {
		return "", lineError(stageLine(s), "FROM %s expands to nothing; give the ARG a value", s.BaseName)
	}
	return name, nil
}

func stageLine(s instructions.Stage) int {
	if len(s.Location) > 0 {
		return s.Location[0].Start.Line
	}
	return 0
}

// neededStages marks the target and every stage it builds on or copies
// from.
func (j *job) neededStages(target int) (map[int]bool, error) {
	need := map[int]bool{}
	var visit func(i int) error
	visit = func(i int) error {
		if need[i] {
			return nil
		}
		need[i] = true
		base, err := j.baseName(i)
		if err != nil {
			return err
		}
		if k, ok := j.df.stageIndex(base, i); ok {
			if err := visit(k); err != nil {
				return err
			}
		}
		for _, c := range j.df.Stages[i].Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				from, _, err := j.lex.ProcessWord(cp.From, j.meta)
				if err != nil {
					return lineError(cmdLine(c), "COPY --from=%s: %v", cp.From, err)
				}
				if k, ok := j.df.stageIndex(from, i); ok {
					if err := visit(k); err != nil {
						return err
					}
				} else if strings.EqualFold(from, j.df.Stages[i].Name) {
					return lineError(cmdLine(c), "COPY --from=%s names its own stage", cp.From)
				}
			}
		}
		return nil
	}
	return need, visit(target)
}

// stage is the evaluation state of one stage.
type stage struct {
	res    *stageResult
	args   *envMap // ARGs in scope
	cmdSet bool    // CMD was given in this stage
}

func (j *job) runStage(ctx context.Context, i int) (*stageResult, error) {
	s := j.df.Stages[i]
	base, err := j.baseName(i)
	if err != nil {
		return nil, err
	}
	j.step++
	from := "FROM " + base
	if s.Name != "" {
		from += " AS " + s.Name
	}
	j.emit(Event{Kind: EventStep, Step: j.step, Total: j.total, Instruction: from})
	start := time.Now()
	if s.Platform != "" {
		p, _, err := j.lex.ProcessWord(s.Platform, j.meta)
		if err != nil || p != hostPlatform() {
			return nil, lineError(stageLine(s), "FROM --platform=%s: this node builds only for %s", s.Platform, hostPlatform())
		}
	}
	st := &stage{args: newEnvMap()}
	switch k, ok := j.df.stageIndex(base, i); {
	case ok:
		prev := j.results[k]
		st.res = &stageResult{cfg: cloneConfig(prev.cfg), id: prev.id}
	case strings.EqualFold(base, "scratch"):
		st.res = &stageResult{cfg: scratchConfig()}
	default:
		img, err := j.resolveImage(ctx, base)
		if err != nil {
			return nil, fmt.Errorf("line %d: FROM %s: %w", stageLine(s), base, err)
		}
		cfg, err := j.b.images.ConfigFile(img.ID)
		if err != nil {
			return nil, err
		}
		st.res = &stageResult{cfg: cfg, id: img.ID}
	}
	j.emit(Event{Kind: EventDone, Step: j.step, Total: j.total, Duration: time.Since(start)})
	triggers, err := onBuildTriggers(st.res.cfg, stageLine(s))
	if err != nil {
		return nil, err
	}
	// The child does not inherit the triggers: Docker clears them.
	st.res.cfg.Config.OnBuild = nil
	j.total += len(triggers)
	for _, c := range triggers {
		if err := j.runCommand(ctx, i, st, c); err != nil {
			return nil, err
		}
	}
	for _, c := range s.Commands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := j.runCommand(ctx, i, st, c); err != nil {
			return nil, err
		}
	}
	return st.res, nil
}

// onBuildTriggers parses the base image's ONBUILD instructions, which run
// right after FROM.
func onBuildTriggers(cfg *v1.ConfigFile, line int) ([]instructions.Command, error) {
	if len(cfg.Config.OnBuild) == 0 {
		return nil, nil
	}
	df, err := Parse([]byte("FROM scratch\n" + strings.Join(cfg.Config.OnBuild, "\n") + "\n"))
	if err != nil || len(df.Stages) != 1 {
		return nil, lineError(line, "the base image's ONBUILD triggers %q do not parse: %v", cfg.Config.OnBuild, err)
	}
	return df.Stages[0].Commands, nil
}

// resolveImage finds ref in the store, pulling it when missing (and
// saying so in the step's output).
func (j *job) resolveImage(ctx context.Context, ref string) (*image.Image, error) {
	img, err := j.b.images.Get(ref)
	if err == nil {
		return img, nil
	}
	if !errors.Is(err, image.ErrNotFound) {
		return nil, err
	}
	j.emit(Event{Kind: EventOutput, Step: j.step, Total: j.total, Output: "pulling " + ref + "\n"})
	start := time.Now()
	img, err = j.b.images.Pull(ctx, ref, j.opts.Pull)
	if err != nil {
		return nil, err
	}
	j.emit(Event{Kind: EventOutput, Step: j.step, Total: j.total,
		Output: fmt.Sprintf("pulled %s (%s) in %.1fs\n", ref, img.ID, time.Since(start).Seconds())})
	return img, nil
}

func scratchConfig() *v1.ConfigFile {
	return &v1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH,
		Config: v1.Config{Env: []string{"PATH=" + container.DefaultPath}},
		RootFS: v1.RootFS{Type: "layers"},
	}
}

func cloneConfig(c *v1.ConfigFile) *v1.ConfigFile {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // a ConfigFile always marshals
	}
	out := &v1.ConfigFile{}
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// cacheKey hashes a step's parent and what the step does.
func cacheKey(parent *stageResult, parts ...string) string {
	h := sha256.New()
	id := parent.id
	if id == "" {
		// A scratch stage's state is its config alone.
		b, _ := json.Marshal(parent.cfg)
		id = "scratch:" + sha256Hex(b)
	}
	io.WriteString(h, "berth-build-v1\x00"+id)
	for _, p := range parts {
		io.WriteString(h, "\x00"+p)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// scopeEnv is what variables in an instruction expand from: ARGs in
// scope, overridden by the image's ENV.
func scopeEnv(st *stage) *envMap {
	m := st.args.clone()
	for _, kv := range st.res.cfg.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		m.Set(k, v)
	}
	return m
}

func (j *job) doneStep(cached bool, start time.Time) {
	if cached {
		j.cached++
		j.emit(Event{Kind: EventCached, Step: j.step, Total: j.total})
	}
	j.emit(Event{Kind: EventDone, Step: j.step, Total: j.total, Duration: time.Since(start)})
}

// commitStep stores cfg as the step's image under the cache key and
// returns the new state.
func (j *job) commitStep(ctx context.Context, cfg *v1.ConfigFile, key string) (*stageResult, error) {
	now := time.Now().UTC()
	cfg.Created = v1.Time{Time: now}
	if n := len(cfg.History); n > 0 && cfg.History[n-1].Created.IsZero() {
		cfg.History[n-1].Created = v1.Time{Time: now}
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("build: encode config: %w", err)
	}
	img, err := j.b.images.Commit(ctx, raw, image.CommitOptions{CacheKey: key})
	if err != nil {
		return nil, err
	}
	return &stageResult{cfg: cfg, id: img.ID}, nil
}

// lookup returns the cached result of key.
func (j *job) lookup(key string) (*stageResult, bool) {
	if j.opts.NoCache {
		return nil, false
	}
	img, ok := j.b.images.CacheGet(key)
	if !ok {
		return nil, false
	}
	cfg, err := j.b.images.ConfigFile(img.ID)
	if err != nil {
		return nil, false
	}
	return &stageResult{cfg: cfg, id: img.ID}, true
}

// code is an instruction as written.
func code(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return strings.ToUpper(c.Name())
}

func (j *job) runCommand(ctx context.Context, si int, st *stage, c instructions.Command) error {
	line := cmdLine(c)
	text := code(c)
	j.step++
	j.emit(Event{Kind: EventStep, Step: j.step, Total: j.total, Instruction: text})
	start := time.Now()

	if e, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if _, isRun := c.(*instructions.RunCommand); !isRun {
			if err := e.Expand(expander(j.lex, scopeEnv(st))); err != nil {
				return lineError(line, "%s: %v", text, err)
			}
		}
	}
	if a, ok := c.(*instructions.ArgCommand); ok {
		for _, kv := range a.Args {
			v, known := "", false
			if kv.Value != nil {
				v, known = *kv.Value, true
			} else if mv, ok := j.meta.Get(kv.Key); ok {
				v, known = mv, true
			}
			if bv, ok := j.opts.BuildArgs[kv.Key]; ok {
				v, known = bv, true
			}
			if known {
				st.args.Set(kv.Key, v)
			} else {
				st.args.Set(kv.Key, "")
			}
		}
		j.emit(Event{Kind: EventDone, Step: j.step, Total: j.total, Duration: time.Since(start)})
		return nil
	}
	if _, ok := c.(*instructions.CmdCommand); ok {
		st.cmdSet = true
	}
	desc, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("build: encode %s: %w", text, err)
	}
	parent := st.res
	var next *stageResult
	hit := false
	switch c := c.(type) {
	case *instructions.RunCommand:
		args := j.runArgs(st, c)
		env := j.runEnv(st)
		key := cacheKey(parent, "run", string(desc), strings.Join(args, "\x01"), strings.Join(env, "\x01"), runNetwork(c, j.opts.Network))
		if next, hit = j.lookup(key); !hit {
			next, err = j.runStep(ctx, st, c, args, env, key)
		}
	case *instructions.CopyCommand:
		next, hit, err = j.copyStep(ctx, si, st, c.SourcesAndDest, copyFlags{from: c.From, chown: c.Chown, chmod: c.Chmod}, string(desc), text, line)
	case *instructions.AddCommand:
		next, hit, err = j.copyStep(ctx, si, st, c.SourcesAndDest, copyFlags{chown: c.Chown, chmod: c.Chmod, add: true}, string(desc), text, line)
	default:
		key := cacheKey(parent, "meta", text, string(desc))
		if next, hit = j.lookup(key); !hit {
			cfg := cloneConfig(parent.cfg)
			if err := j.applyMeta(st, cfg, c, line); err != nil {
				return err
			}
			cfg.History = append(cfg.History, v1.History{CreatedBy: historyText(c, text), EmptyLayer: true})
			next, err = j.commitStep(ctx, cfg, key)
		}
	}
	if err != nil {
		return err
	}
	st.res = next
	j.doneStep(hit, start)
	return nil
}

// historyText is how `docker history` shows a metadata step.
func historyText(c instructions.Command, text string) string {
	switch c := c.(type) {
	case *instructions.WorkdirCommand:
		return "WORKDIR " + c.Path
	case *instructions.UserCommand:
		return "USER " + c.User
	case *instructions.CmdCommand:
		return fmt.Sprintf("CMD %q", c.CmdLine)
	case *instructions.EntrypointCommand:
		return fmt.Sprintf("ENTRYPOINT %q", c.CmdLine)
	}
	return text
}

// shellOf is the config's SHELL, or the default.
func shellOf(cfg *v1.ConfigFile) []string {
	if len(cfg.Config.Shell) > 0 {
		return cfg.Config.Shell
	}
	return DefaultShell
}

func shellForm(cfg *v1.ConfigFile, l instructions.ShellDependantCmdLine) []string {
	if !l.PrependShell {
		return append([]string(nil), l.CmdLine...)
	}
	return append(append([]string(nil), shellOf(cfg)...), strings.Join(l.CmdLine, " "))
}

func (j *job) runArgs(st *stage, c *instructions.RunCommand) []string {
	return shellForm(st.res.cfg, c.ShellDependantCmdLine)
}

// runNetwork is a RUN's network: its --network flag, else the build's.
func runNetwork(c *instructions.RunCommand, def string) string {
	switch instructions.GetNetwork(c) {
	case instructions.NetworkNone:
		return "none"
	case instructions.NetworkHost:
		return "host"
	}
	return def
}

// runEnv is a RUN's environment: the image's ENV, then the ARGs in scope
// that ENV does not set.
func (j *job) runEnv(st *stage) []string {
	env := append([]string(nil), st.res.cfg.Config.Env...)
	set := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for _, k := range st.args.Keys() {
		if !set[k] {
			v, _ := st.args.Get(k)
			env = append(env, k+"="+v)
		}
	}
	return env
}

// applyMeta applies a metadata instruction to cfg, as Docker writes it.
func (j *job) applyMeta(st *stage, cfg *v1.ConfigFile, c instructions.Command, line int) error {
	cc := &cfg.Config
	switch c := c.(type) {
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cc.Env = setEnv(cc.Env, kv.Key, kv.Value)
		}
	case *instructions.LabelCommand:
		if cc.Labels == nil {
			cc.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cc.Labels[kv.Key] = kv.Value
		}
	case *instructions.MaintainerCommand:
		cfg.Author = c.Maintainer
	case *instructions.ExposeCommand:
		if cc.ExposedPorts == nil {
			cc.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range c.Ports {
			for _, w := range strings.Fields(p) {
				port, err := normalizePort(w)
				if err != nil {
					return lineError(line, "EXPOSE %s: %v", w, err)
				}
				cc.ExposedPorts[port] = struct{}{}
			}
		}
	case *instructions.UserCommand:
		cc.User = c.User
	case *instructions.WorkdirCommand:
		p := c.Path
		if !path.IsAbs(p) {
			p = path.Join("/", cc.WorkingDir, p)
		}
		cc.WorkingDir = path.Clean(p)
	case *instructions.VolumeCommand:
		if cc.Volumes == nil {
			cc.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return lineError(line, "VOLUME: empty path")
			}
			cc.Volumes[v] = struct{}{}
		}
	case *instructions.EntrypointCommand:
		cc.Entrypoint = shellForm(cfg, c.ShellDependantCmdLine)
		if !st.cmdSet {
			// Docker: ENTRYPOINT drops a CMD inherited from the base.
			cc.Cmd = nil
		}
	case *instructions.CmdCommand:
		cc.Cmd = shellForm(cfg, c.ShellDependantCmdLine)
		if len(c.CmdLine) == 0 && !c.PrependShell {
			cc.Cmd = []string{}
		}
	case *instructions.ShellCommand:
		cc.Shell = append([]string(nil), c.Shell...)
	case *instructions.StopSignalCommand:
		if _, err := container.ParseSignal(c.Signal); err != nil {
			return lineError(line, "STOPSIGNAL %s: unknown signal", c.Signal)
		}
		cc.StopSignal = c.Signal
	case *instructions.HealthCheckCommand:
		h := c.Health
		cc.Healthcheck = &v1.HealthConfig{
			Test: append([]string(nil), h.Test...), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
	case *instructions.OnbuildCommand:
		cc.OnBuild = append(cc.OnBuild, c.Expression)
	default:
		return lineError(line, "instruction %s is not supported", strings.ToUpper(c.Name()))
	}
	return nil
}

// normalizePort turns "80", "80/udp", "8000-8001" into Docker's
// "80/tcp" form.
func normalizePort(p string) (string, error) {
	num, proto, ok := strings.Cut(p, "/")
	if !ok {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return "", fmt.Errorf("protocol %q is not tcp, udp or sctp", proto)
	}
	lo, hi, isRange := strings.Cut(num, "-")
	for _, n := range []string{lo, hi} {
		if !isRange && n == hi {
			continue
		}
		var v int
		if _, err := fmt.Sscanf(n, "%d", &v); err != nil || fmt.Sprint(v) != n || v < 1 || v > 65535 {
			return "", fmt.Errorf("%q is not a port number", n)
		}
	}
	return num + "/" + proto, nil
}

// inContext joins a relative path to the context directory, refusing
// one that leaves it.
func inContext(root, rel string) (string, error) {
	r := path.Clean(strings.TrimPrefix(filepath.ToSlash(rel), "/"))
	if r == ".." || strings.HasPrefix(r, "../") {
		return "", fmt.Errorf("%w: %s is outside the build context", ErrSource, rel)
	}
	return filepath.Join(root, filepath.FromSlash(r)), nil
}
