package agent

import (
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/build"
	"github.com/berth-dev/berth/runtime/image"
)

// Dockerfile builds (api/build.go): the client uploads the context as a
// tar, the build runs here into this node's store, and its progress
// streams back as BuildEvent lines.

// builders holds each agent's builder, made on the first build so that
// agents that never build pay nothing.
var builders struct {
	sync.Mutex
	m map[*Agent]*build.Builder
}

func (a *Agent) builder() (*build.Builder, error) {
	builders.Lock()
	defer builders.Unlock()
	if b := builders.m[a]; b != nil {
		return b, nil
	}
	b, err := build.New(a.eng.Images, filepath.Join(a.cfg.DataDir, "build"))
	if err != nil {
		return nil, err
	}
	if builders.m == nil {
		builders.m = map[*Agent]*build.Builder{}
	}
	builders.m[a] = b
	return b, nil
}

// buildRoutes adds POST /v1/images/build.
func (a *Agent) buildRoutes(v1 *echo.Group) {
	v1.POST("/images/build", a.handleBuild)
}

func buildErr(err error) error {
	switch {
	case errors.Is(err, build.ErrOptions), errors.Is(err, build.ErrBadContext), errors.Is(err, build.ErrDockerfile),
		errors.Is(err, image.ErrInvalidName):
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	return err
}

func (a *Agent) handleBuild(c echo.Context) error {
	var req api.BuildRequest
	if err := json.Unmarshal([]byte(c.QueryParam("options")), &req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "options: want a JSON build request: "+err.Error())
	}
	for _, t := range req.Tags {
		if _, err := image.ParseName(t); err != nil {
			return buildErr(err)
		}
	}
	if req.DockerfileContent != "" {
		// A bad Dockerfile is the request's fault: say so before the
		// context is read.
		if _, err := build.Parse([]byte(req.DockerfileContent)); err != nil {
			return buildErr(err)
		}
	}
	if req.Push && len(req.Tags) == 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "push: name the image to push with -t REGISTRY/NAME")
	}
	b, err := a.builder()
	if err != nil {
		return err
	}
	dir, release, err := b.Context(c.Request().Body)
	if err != nil {
		return buildErr(err)
	}
	defer release()
	ctx := c.Request().Context()
	remote := a.remoteOptions(req.Insecure, req.Auth)
	opts := build.Options{
		ContextDir: dir, Dockerfile: req.Dockerfile, Tags: req.Tags, Target: req.Target,
		NoCache: req.NoCache, BuildArgs: req.BuildArgs, Labels: req.Labels, Network: req.Network,
		Platform: req.Platform, Pull: image.PullOptions{RemoteOptions: remote},
	}
	if req.DockerfileContent != "" {
		opts.DockerfileData = []byte(req.DockerfileContent)
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	c.Response().WriteHeader(http.StatusOK)
	var mu sync.Mutex
	enc := json.NewEncoder(&flushWriter{w: c.Response()})
	send := func(ev api.BuildEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
	}
	opts.Progress = func(e build.Event) {
		send(api.BuildEvent{Kind: e.Kind, Step: e.Step, Total: e.Total, Instruction: e.Instruction,
			Output: e.Output, DurationMS: float64(e.Duration.Microseconds()) / 1000})
	}
	res, err := b.Build(ctx, opts)
	if err != nil {
		a.log.Info("image build failed", "err", err)
		ev := api.BuildEvent{Error: err.Error()}
		var se *build.StepError
		if errors.As(err, &se) {
			ev.ExitCode, ev.Tail = se.ExitCode, se.Tail
		}
		send(ev)
		return nil
	}
	a.log.Info("built image", "image", res.Image.ID, "tags", req.Tags, "cached", res.Cached)
	out := imageJSON(res.Image, a.node.Name)
	final := api.BuildEvent{Image: &out, Cached: res.Cached}
	if req.Push {
		pctx := image.WithProgress(ctx, func(p image.ProgressEvent) {
			send(api.BuildEvent{Kind: api.BuildPush, Status: p.Status, Layer: p.Layer})
		})
		for _, t := range req.Tags {
			send(api.BuildEvent{Kind: api.BuildPush, Status: "Pushing " + t})
			if err := a.eng.Images.Push(pctx, t, image.PushOptions{RemoteOptions: remote}); err != nil {
				a.log.Info("pushing a built image failed", "image", t, "err", err)
				send(api.BuildEvent{Error: "built " + res.Image.ID + ", but the push of " + t + " failed: " + err.Error()})
				return nil
			}
			final.Pushed = append(final.Pushed, t)
		}
	}
	send(final)
	return nil
}

// pruneBuildCache empties this node's build cache for system prune and
// returns the bytes freed.
func (a *Agent) pruneBuildCache() int64 {
	rep, err := a.eng.Images.PruneBuildCache(func(id string) bool { return len(a.imageInUse(id)) > 0 })
	if err != nil {
		a.log.Warn("pruning the build cache", "err", err)
		return 0
	}
	return rep.SpaceReclaimed
}
