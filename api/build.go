package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Dockerfile builds on a node (`berth image build`):
//
//	POST /v1/images/build?options=JSON(BuildRequest)   body: the build context as a tar
//	  → stream of BuildEvent JSON lines; the last has Image (and Pushed) or Error
//
// The build runs on that node, into its image store; with Push the
// result is pushed to the registry its tags name.

// BuildRequest are a build's options; the context travels as the body.
type BuildRequest struct {
	// Dockerfile is the Dockerfile's path inside the context (default
	// "Dockerfile").
	Dockerfile string `json:"dockerfile,omitempty"`
	// DockerfileContent, when set, is the Dockerfile itself (one from
	// outside the context, or from stdin); Dockerfile is then ignored.
	DockerfileContent string            `json:"dockerfile_content,omitempty"`
	Tags              []string          `json:"tags,omitempty"`
	Target            string            `json:"target,omitempty"`
	NoCache           bool              `json:"no_cache,omitempty"`
	BuildArgs         map[string]string `json:"build_args,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	// Network is RUN's network: "host" (default) or "none".
	Network  string `json:"network,omitempty"`
	Platform string `json:"platform,omitempty"`
	// Push pushes every tag once the build succeeds.
	Push bool `json:"push,omitempty"`
	// Insecure allows plain HTTP to the registry (pushes and FROM pulls).
	Insecure bool          `json:"insecure,omitempty"`
	Auth     *RegistryAuth `json:"auth,omitempty"`
}

// Build event kinds (BuildEvent.Kind).
const (
	BuildStep   = "step"   // a step starts: Instruction
	BuildCached = "cached" // the step came from the cache
	BuildOutput = "output" // RUN output: Output
	BuildDone   = "done"   // the step finished: DurationMS
	BuildPush   = "push"   // push progress: Status, Layer
)

// BuildEvent is one line of a build's stream.
type BuildEvent struct {
	Kind        string `json:"kind,omitempty"`
	Step        int    `json:"step,omitempty"`
	Total       int    `json:"total,omitempty"`
	Instruction string `json:"instruction,omitempty"`
	Output      string `json:"output,omitempty"`
	// DurationMS is how long the step took, in milliseconds.
	DurationMS float64 `json:"duration_ms,omitempty"`
	// Status and Layer are push progress.
	Status string `json:"status,omitempty"`
	Layer  string `json:"layer,omitempty"`

	// The last event: the image, or the error. A failed RUN gives its
	// ExitCode and the last lines of its output.
	Image    *Image   `json:"image,omitempty"`
	Cached   int      `json:"cached,omitempty"`
	Pushed   []string `json:"pushed,omitempty"`
	Error    string   `json:"error,omitempty"`
	ExitCode int      `json:"exit_code,omitempty"`
	Tail     []string `json:"tail,omitempty"`
}

// BuildError is a build that failed on the node. ExitCode is the failed
// RUN's exit status (0 when no command failed: a bad Dockerfile, a
// missing source).
type BuildError struct {
	Message  string
	ExitCode int
	Tail     []string
}

func (e *BuildError) Error() string { return e.Message }

// ErrBuildStream means the build's stream ended before the node said how
// the build ended.
var ErrBuildStream = errors.New("api: build stream ended before the build finished")

// Build uploads a build context (a tar stream) to the node and builds
// it there, passing each event to fn (nil: none). It returns the final
// event, which carries the image, or a *BuildError.
func (c *AgentClient) Build(ctx context.Context, req BuildRequest, contextTar io.Reader, fn func(BuildEvent)) (*BuildEvent, error) {
	opts, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("api: encode build request: %w", err)
	}
	resp, err := c.raw(ctx, http.MethodPost, "/images/build", url.Values{"options": {string(opts)}}, contextTar, "application/x-tar")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readBuildStream(resp.Body, fn)
}

func readBuildStream(r io.Reader, fn func(BuildEvent)) (*BuildEvent, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var ev BuildEvent
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				return nil, fmt.Errorf("api: build: bad event line %q: %w", line, jerr)
			}
			if ev.Error != "" {
				return nil, &BuildError{Message: ev.Error, ExitCode: ev.ExitCode, Tail: ev.Tail}
			}
			if ev.Image != nil {
				return &ev, nil
			}
			if fn != nil {
				fn(ev)
			}
		}
		if err == io.EOF {
			return nil, ErrBuildStream
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBuildStream, err)
		}
	}
}
