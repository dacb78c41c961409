package build

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// maxDockerfileSize bounds what Parse reads; real Dockerfiles are a few
// KiB.
const maxDockerfileSize = 4 << 20

// Dockerfile is a parsed Dockerfile: its stages in order and the ARGs
// declared before the first FROM.
type Dockerfile struct {
	Stages   []instructions.Stage
	MetaArgs []instructions.ArgCommand
	escape   rune
}

// Parse parses a Dockerfile. Errors wrap ErrDockerfile and name the line.
func Parse(data []byte) (*Dockerfile, error) {
	if len(data) > maxDockerfileSize {
		return nil, lineError(0, "the Dockerfile is larger than %d bytes", maxDockerfileSize)
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, parseErr(err)
	}
	stages, meta, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, parseErr(err)
	}
	if len(stages) == 0 {
		return nil, lineError(0, "no FROM instruction: a Dockerfile starts with FROM (ARGs may come before it)")
	}
	for i := range stages {
		for _, c := range stages[i].Commands {
			if err := checkCommand(c); err != nil {
				return nil, err
			}
		}
	}
	return &Dockerfile{Stages: stages, MetaArgs: meta, escape: res.EscapeToken}, nil
}

// parseErr wraps the parser's error with ErrDockerfile and its line.
func parseErr(err error) error {
	msg := err.Error()
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 && !strings.Contains(msg, "line ") {
		return lineError(le.Locations[0][0].Start.Line, "%s", msg)
	}
	msg = strings.TrimPrefix(msg, "dockerfile parse error on ")
	return fmt.Errorf("%w: %s", ErrDockerfile, msg)
}

func cmdLine(c instructions.Command) int {
	if loc := c.Location(); len(loc) > 0 {
		return loc[0].Start.Line
	}
	return 0
}

// checkCommand refuses what parses but berth does not do, at parse time
// so that nothing runs before the error.
func checkCommand(c instructions.Command) error {
	line := cmdLine(c)
	switch c := c.(type) {
	case *instructions.RunCommand:
		if len(c.Files) > 0 {
			return lineError(line, "RUN with a here-document is not supported; write the commands inline")
		}
		for _, f := range c.FlagsUsed {
			if f != "network" {
				return lineError(line, "RUN --%s is not supported", f)
			}
		}
	case *instructions.CopyCommand:
		if len(c.SourceContents) > 0 {
			return lineError(line, "COPY with a here-document is not supported")
		}
		if c.Parents || len(c.ExcludePatterns) > 0 {
			return lineError(line, "COPY --parents and --exclude are not supported")
		}
	case *instructions.AddCommand:
		if len(c.SourceContents) > 0 {
			return lineError(line, "ADD with a here-document is not supported")
		}
		if c.Checksum != "" || len(c.ExcludePatterns) > 0 {
			return lineError(line, "ADD --checksum and --exclude are not supported")
		}
		for _, s := range c.SourcePaths {
			if strings.Contains(s, "://") || strings.HasPrefix(s, "git@") {
				return lineError(line, "ADD from a URL (%s) is not supported; download it in a RUN step or into the context", s)
			}
		}
	case *instructions.OnbuildCommand:
		switch strings.ToUpper(strings.Fields(c.Expression + " x")[0]) {
		case "ONBUILD", "FROM", "MAINTAINER":
			return lineError(line, "ONBUILD %s is not allowed", strings.Fields(c.Expression + " x")[0])
		}
	case *instructions.MaintainerCommand, *instructions.EnvCommand,
		*instructions.LabelCommand, *instructions.ExposeCommand, *instructions.UserCommand,
		*instructions.WorkdirCommand, *instructions.VolumeCommand, *instructions.EntrypointCommand,
		*instructions.CmdCommand, *instructions.ShellCommand, *instructions.StopSignalCommand,
		*instructions.HealthCheckCommand, *instructions.ArgCommand:
	default:
		return lineError(line, "instruction %s is not supported", strings.ToUpper(c.Name()))
	}
	return nil
}

// stageIndex finds a stage by name (case-insensitive) or by number.
func (d *Dockerfile) stageIndex(name string, before int) (int, bool) {
	for i := 0; i < before && i < len(d.Stages); i++ {
		if d.Stages[i].Name != "" && strings.EqualFold(d.Stages[i].Name, name) {
			return i, true
		}
	}
	var n int
	if _, err := fmt.Sscanf(name, "%d", &n); err == nil && fmt.Sprint(n) == name && n >= 0 && n < before {
		return n, true
	}
	return -1, false
}

// envMap is an ordered set of variables that BuildKit's lexer reads.
type envMap struct {
	keys []string
	vals map[string]string
}

func newEnvMap() *envMap { return &envMap{vals: map[string]string{}} }

func (e *envMap) Get(k string) (string, bool) { v, ok := e.vals[k]; return v, ok }
func (e *envMap) Keys() []string              { return e.keys }
func (e *envMap) Set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envMap) clone() *envMap {
	c := newEnvMap()
	for _, k := range e.keys {
		c.Set(k, e.vals[k])
	}
	return c
}

// fromSlice reads KEY=VALUE entries.
func envFromSlice(env []string) *envMap {
	m := newEnvMap()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m.Set(k, v)
	}
	return m
}

var _ shell.EnvGetter = (*envMap)(nil)

// expander expands $VAR and ${VAR...} the way the Dockerfile frontend
// does, from env.
func expander(lex *shell.Lex, env shell.EnvGetter) instructions.SingleWordExpander {
	return func(word string) (string, error) {
		out, _, err := lex.ProcessWord(word, env)
		return out, err
	}
}

// setEnv sets KEY=VALUE in a config's Env, replacing an earlier value.
func setEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if key, _, _ := strings.Cut(kv, "="); key == k {
			out := append([]string(nil), env...)
			out[i] = k + "=" + v
			return out
		}
	}
	return append(append([]string(nil), env...), k+"="+v)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
