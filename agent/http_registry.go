package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/image"
)

// Registry routes: pull and push stream progress as JSON lines, so that
// the CLI can draw each layer's bar while the node works. Credentials in
// the requests are used for the one call and never logged.

// progressStream writes ImageProgress lines to a streaming response.
type progressStream struct {
	mu  sync.Mutex
	w   *flushWriter
	enc *json.Encoder
}

func newProgressStream(c echo.Context) *progressStream {
	c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	c.Response().WriteHeader(http.StatusOK)
	fw := &flushWriter{w: c.Response()}
	return &progressStream{w: fw, enc: json.NewEncoder(fw)}
}

func (p *progressStream) send(ev api.ImageProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(ev)
}

func (p *progressStream) progress(ev image.ProgressEvent) {
	p.send(api.ImageProgress{Layer: ev.Layer, Status: ev.Status, Current: ev.Current, Total: ev.Total})
}

func toImageAuth(a *api.RegistryAuth) *image.Auth {
	if a == nil {
		return nil
	}
	return &image.Auth{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
}

// remoteOptions are the node's own registry settings (its logins and
// insecure registries) with the request's on top.
func (a *Agent) remoteOptions(insecure bool, auth *api.RegistryAuth) image.RemoteOptions {
	o := a.eng.PullOptions().RemoteOptions
	o.Insecure = insecure
	if a := toImageAuth(auth); !a.Empty() {
		o.Auth = a
	}
	return o
}

func (a *Agent) handleImagePull(c echo.Context) error {
	var req api.ImagePullRequest
	if err := json.NewDecoder(c.Request().Body).Decode(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "pull request: "+err.Error())
	}
	if _, err := image.FullName(req.Ref); err != nil {
		return err
	}
	opts := image.PullOptions{RemoteOptions: a.remoteOptions(req.Insecure, req.Auth), Platform: req.Platform}
	ps := newProgressStream(c)
	ctx := image.WithProgress(c.Request().Context(), ps.progress)
	img, err := a.eng.Images.Pull(ctx, req.Ref, opts)
	if err != nil {
		a.log.Info("image pull failed", "image", req.Ref, "err", err)
		ps.send(api.ImageProgress{Error: err.Error()})
		return nil
	}
	a.log.Info("pulled image", "image", req.Ref, "id", img.ID)
	out := imageJSON(img, a.node.Name)
	ps.send(api.ImageProgress{Image: &out})
	return nil
}

func (a *Agent) handleImagePush(c echo.Context) error {
	var req api.ImagePushRequest
	if err := json.NewDecoder(c.Request().Body).Decode(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "push request: "+err.Error())
	}
	if _, err := a.eng.Images.Get(req.Ref); err != nil {
		return err
	}
	opts := image.PushOptions{RemoteOptions: a.remoteOptions(req.Insecure, req.Auth)}
	ps := newProgressStream(c)
	ctx := image.WithProgress(c.Request().Context(), ps.progress)
	if err := a.eng.Images.Push(ctx, req.Ref, opts); err != nil {
		a.log.Info("image push failed", "image", req.Ref, "err", err)
		ps.send(api.ImageProgress{Error: err.Error()})
		return nil
	}
	a.log.Info("pushed image", "image", req.Ref)
	ps.send(api.ImageProgress{Done: true})
	return nil
}

func (a *Agent) handleImageHistory(c echo.Context) error {
	img, err := a.eng.Images.Get(refParam(c))
	if err != nil {
		return err
	}
	out := make([]api.ImageHistory, 0, len(img.History))
	for _, h := range slices.Backward(img.History) {
		out = append(out, api.ImageHistory{
			Created: h.Created.Unix(), CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer, Size: h.Size,
		})
	}
	return c.JSON(http.StatusOK, out)
}

func (a *Agent) handleImageSave(c echo.Context) error {
	refs := c.QueryParams()["ref"]
	if len(refs) == 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "ref: name at least one image to save")
	}
	for _, r := range refs {
		if _, err := a.eng.Images.Get(r); err != nil {
			return err
		}
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/x-tar")
	c.Response().WriteHeader(http.StatusOK)
	if err := a.eng.Images.Save(c.Request().Context(), c.Response(), refs...); err != nil {
		// The archive is cut short; the client sees a truncated tar.
		a.log.Warn("image save failed", "image", fmt.Sprint(refs), "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (a *Agent) handleImagePrune(c echo.Context) error {
	list, err := a.eng.List()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, ci := range list {
		used[ci.ImageID] = true
	}
	rep, err := a.eng.Images.Prune(truthy(c.QueryParam("all")), func(id string) bool { return used[id] })
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.PruneReport{Images: rep.Images, SpaceReclaimed: rep.SpaceReclaimed, Node: a.node.Name})
}

// refParam is the :ref path parameter unescaped: names such as
// "host:port/repo:tag" arrive with their slashes escaped (%2F) so that
// they stay one path segment, and the router leaves them escaped.
func refParam(c echo.Context) string {
	raw := c.Param("ref")
	if s, err := url.PathUnescape(raw); err == nil {
		return s
	}
	return raw
}
