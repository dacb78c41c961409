package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/gpu"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/image"
	"github.com/berth-dev/berth/runtime/volume"
)

// newRouter builds the agent HTTP API described in api/agent.go.
func (a *Agent) newRouter() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		var he *echo.HTTPError
		code, msg := http.StatusInternalServerError, err.Error()
		if errors.As(err, &he) {
			code, msg = he.Code, fmt.Sprint(he.Message)
		} else {
			code = statusOf(err)
		}
		if !c.Response().Committed {
			_ = c.JSON(code, api.Error{Error: msg})
		}
	}
	v1 := e.Group("/v1")
	v1.GET("/health", func(c echo.Context) error {
		return c.JSON(http.StatusOK, api.Health{OK: true, Role: "agent"})
	})
	// Prometheus metrics of this node: GPU samples (berth_gpu_*) plus the
	// process's own; and the GPU samples as JSON for `berth node` tools.
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.GPUCollector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	v1.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	v1.GET("/gpus", func(c echo.Context) error {
		stats, err := a.GPUStats()
		if err != nil {
			return err
		}
		if stats == nil {
			stats = []gpu.Stat{}
		}
		return c.JSON(http.StatusOK, stats)
	})
	v1.GET("/containers", a.handleContainers)
	v1.GET("/containers/:id", a.handleContainer)
	v1.GET("/containers/:id/logs", a.handleLogs)
	v1.GET("/containers/:id/wait", a.handleWait)
	v1.GET("/containers/:id/stats", a.handleStats)
	v1.POST("/containers/:id/kill", a.handleKill)
	v1.POST("/containers/:id/exec", a.handleExec)
	v1.GET("/images", a.handleImages)
	v1.POST("/images/pull", a.handleImagePull)
	v1.POST("/images/push", a.handleImagePush)
	v1.GET("/images/save", a.handleImageSave)
	v1.POST("/images/prune", a.handleImagePrune)
	v1.GET("/images/:ref/history", a.handleImageHistory)
	v1.GET("/images/:ref", a.handleImage)
	v1.POST("/images/import", a.handleImport)
	v1.POST("/images/load", a.handleLoad)
	v1.POST("/images/tag", a.handleTag)
	v1.DELETE("/images/:ref", a.handleImageRemove)
	v1.GET("/volumes", a.handleVolumes)
	v1.POST("/volumes", a.handleVolumeCreate)
	v1.POST("/volumes/prune", a.handleVolumePrune)
	v1.GET("/volumes/:name", a.handleVolume)
	v1.DELETE("/volumes/:name", a.handleVolumeRemove)
	v1.POST("/system/prune", a.handleSystemPrune)
	a.networkRoutes(v1)
	a.buildRoutes(v1)
	a.attachRoutes(v1)
	return e
}

// statusOf maps runtime errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, container.ErrNotFound), errors.Is(err, image.ErrNotFound), errors.Is(err, volume.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, container.ErrAmbiguous), errors.Is(err, container.ErrRunning),
		errors.Is(err, container.ErrNotRunning), errors.Is(err, volume.ErrInUse):
		return http.StatusConflict
	case errors.Is(err, image.ErrInvalidName), errors.Is(err, image.ErrBadArchive), errors.Is(err, image.ErrUnsafePath),
		errors.Is(err, volume.ErrInvalidName), errors.Is(err, container.ErrInvalidSpec):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (a *Agent) handleContainers(c echo.Context) error {
	list, err := a.eng.List()
	if err != nil {
		return err
	}
	for _, ci := range list {
		ci.Node = a.node.Name
	}
	return c.JSON(http.StatusOK, list)
}

func (a *Agent) handleContainer(c echo.Context) error {
	ci, err := a.eng.Info(c.Param("id"))
	if err != nil {
		return err
	}
	ci.Node = a.node.Name
	return c.JSON(http.StatusOK, ci)
}

// flushWriter flushes after every write so that followed logs and exec
// output reach the client (through the server's proxy) at once.
type flushWriter struct {
	mu sync.Mutex
	w  *echo.Response
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	f.w.Flush()
	return n, err
}

func (a *Agent) handleLogs(c echo.Context) error {
	opts := container.LogOptions{Follow: truthy(c.QueryParam("follow"))}
	if s := c.QueryParam("tail"); s != "" && s != "all" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "tail: want a number of lines or \"all\"")
		}
		opts.Tail = n
	}
	if s := c.QueryParam("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "since: want an RFC 3339 time")
		}
		opts.Since = t
	}
	rc, err := a.eng.Containers.Logs(c.Param("id"), opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	go func() {
		<-c.Request().Context().Done()
		rc.Close()
	}()
	c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	c.Response().WriteHeader(http.StatusOK)
	_, _ = io.Copy(&flushWriter{w: c.Response()}, rc)
	return nil
}

func truthy(s string) bool { return s == "1" || s == "true" || s == "yes" }

func (a *Agent) handleWait(c echo.Context) error {
	ci, err := a.eng.Info(c.Param("id"))
	if err != nil {
		return err
	}
	st, err := a.eng.Wait(c.Request().Context(), ci.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.ExitResult{ExitCode: st.Code, OOMKilled: st.OOMKilled, Error: st.Error})
}

func (a *Agent) handleStats(c echo.Context) error {
	ci, err := a.eng.Info(c.Param("id"))
	if err != nil {
		return err
	}
	s, err := a.eng.Containers.Stats(ci.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.ContainerStats{
		ID: ci.ID, Name: ci.Name, CPUUsageNanos: s.CPUUsageNanos, MemoryUsage: s.MemoryUsage,
		MemoryLimit: s.MemoryLimit, Pids: s.Pids, ReadTime: time.Now().UnixNano(),
	})
}

func (a *Agent) handleKill(c echo.Context) error {
	sigName := c.QueryParam("signal")
	if sigName == "" {
		sigName = "SIGKILL"
	}
	sig, err := container.ParseSignal(sigName)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	ci, err := a.eng.Info(c.Param("id"))
	if err != nil {
		return err
	}
	if err := a.eng.Kill(ci.ID, sig); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// frameWriter turns an exec's output into ExecFrame lines.
type frameWriter struct {
	stream string
	mu     *sync.Mutex
	enc    *json.Encoder
	out    *echo.Response
}

func (f *frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enc.Encode(api.ExecFrame{Stream: f.stream, Data: string(p)}); err != nil {
		return 0, err
	}
	f.out.Flush()
	return len(p), nil
}

func (a *Agent) handleExec(c echo.Context) error {
	var req api.ExecRequest
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "exec request: "+err.Error())
	}
	if len(req.Cmd) == 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "cmd: give the command to run")
	}
	ci, err := a.eng.Info(c.Param("id"))
	if err != nil {
		return err
	}
	if ci.State != api.ContainerRunning {
		return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf("container %s is not running", ci.Name))
	}
	resp := c.Response()
	resp.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	resp.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	enc := json.NewEncoder(resp)
	stdout := &frameWriter{stream: "stdout", mu: &mu, enc: enc, out: resp}
	stderr := &frameWriter{stream: "stderr", mu: &mu, enc: enc, out: resp}
	p := &container.Process{Args: req.Cmd, Env: req.Env, User: req.User, Cwd: req.WorkingDir}
	code, err := a.eng.Containers.Exec(c.Request().Context(), ci.ID, p, strings.NewReader(req.Stdin), stdout, stderr)
	mu.Lock()
	defer mu.Unlock()
	last := api.ExecFrame{Exit: &code}
	if err != nil {
		last.Error = err.Error()
	}
	_ = enc.Encode(last)
	resp.Flush()
	return nil
}

func imageJSON(img *image.Image, node string) api.Image {
	return api.Image{ID: img.ID, RepoTags: img.Names, Digest: img.Digest, Size: img.Size, Created: img.Created.Unix(), Node: node}
}

func (a *Agent) handleImages(c echo.Context) error {
	imgs, err := a.eng.Images.List()
	if err != nil {
		return err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, imageJSON(img, a.node.Name))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *Agent) handleImage(c echo.Context) error {
	img, err := a.eng.Images.Get(refParam(c))
	if err != nil {
		return err
	}
	out := api.ImageInspect{
		Image:  imageJSON(img, a.node.Name),
		Layers: img.Layers,
		Config: api.ImageConfig{
			Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd, Env: img.Config.Env,
			WorkingDir: img.Config.WorkingDir, User: img.Config.User, StopSignal: img.Config.StopSignal,
			ExposedPorts: img.Config.ExposedPorts, Volumes: img.Config.Volumes, Labels: img.Config.Labels,
		},
	}
	for _, h := range img.History {
		out.History = append(out.History, api.ImageHistory{
			Created: h.Created.Unix(), CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer, Size: h.Size,
		})
	}
	return c.JSON(http.StatusOK, out)
}

func (a *Agent) handleImport(c echo.Context) error {
	name := c.QueryParam("name")
	if name == "" {
		return echo.NewHTTPError(http.StatusBadRequest, "name: give the image's name, such as busybox:latest")
	}
	img, err := a.eng.Images.Import(c.Request().Context(), bufio.NewReaderSize(c.Request().Body, 1<<20), name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, imageJSON(img, a.node.Name))
}

func (a *Agent) handleLoad(c echo.Context) error {
	imgs, err := a.eng.Images.Load(c.Request().Context(), bufio.NewReaderSize(c.Request().Body, 1<<20))
	if err != nil {
		return err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, imageJSON(img, a.node.Name))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *Agent) handleTag(c echo.Context) error {
	var req api.ImageTagRequest
	if err := json.NewDecoder(c.Request().Body).Decode(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "tag request: "+err.Error())
	}
	if err := a.eng.Images.Tag(req.Source, req.Target); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// imageInUse lists containers on this node that use the image.
func (a *Agent) imageInUse(imageID string) []string {
	list, _ := a.eng.List()
	var out []string
	for _, ci := range list {
		if ci.ImageID == imageID {
			out = append(out, ci.Name)
		}
	}
	return out
}

func (a *Agent) handleImageRemove(c echo.Context) error {
	img, err := a.eng.Images.Get(refParam(c))
	if err != nil {
		return err
	}
	// Removing one of several names only untags, as docker does; only a
	// removal that deletes the image is refused while containers use it.
	untagOnly := false
	if name, err := image.ParseName(refParam(c)); err == nil && len(img.Names) > 1 && slices.Contains(img.Names, name) {
		untagOnly = true
	}
	if users := a.imageInUse(img.ID); !untagOnly && len(users) > 0 && !truthy(c.QueryParam("force")) {
		return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf(
			"image %s is used by container(s) %s: remove them first, or use -f", refParam(c), strings.Join(users, ", ")))
	}
	removed, err := a.eng.Images.Remove(refParam(c))
	if err != nil {
		return err
	}
	var resp api.ImageRemoveResponse
	for _, r := range removed {
		if id, ok := strings.CutPrefix(r, "Deleted: "); ok {
			resp.Deleted = append(resp.Deleted, id)
		} else if name, ok := strings.CutPrefix(r, "Untagged: "); ok {
			resp.Untagged = append(resp.Untagged, name)
		}
	}
	return c.JSON(http.StatusOK, resp)
}

func volumeJSON(v *volume.Volume, size int64, node string) api.Volume {
	return api.Volume{Name: v.Name, Driver: "local", Mountpoint: v.Mountpoint, CreatedAt: v.CreatedAt.UnixNano(),
		Labels: v.Labels, UsedBy: v.UsedBy, Size: size, Node: node}
}

func (a *Agent) handleVolumes(c echo.Context) error {
	vols, err := a.eng.Volumes.List()
	if err != nil {
		return err
	}
	out := make([]api.Volume, 0, len(vols))
	for _, v := range vols {
		out = append(out, volumeJSON(v, -1, a.node.Name))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *Agent) handleVolume(c echo.Context) error {
	v, err := a.eng.Volumes.Get(c.Param("name"))
	if err != nil {
		return err
	}
	size, _ := a.eng.Volumes.Size(v.Name)
	return c.JSON(http.StatusOK, volumeJSON(v, size, a.node.Name))
}

func (a *Agent) handleVolumeCreate(c echo.Context) error {
	var req api.VolumeCreateRequest
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return echo.NewHTTPError(http.StatusBadRequest, "volume request: "+err.Error())
	}
	v, err := a.eng.Volumes.Create(req.Name, req.Labels)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, volumeJSON(v, 0, a.node.Name))
}

func (a *Agent) handleVolumeRemove(c echo.Context) error {
	if err := a.eng.Volumes.Remove(c.Param("name"), truthy(c.QueryParam("force"))); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *Agent) handleVolumePrune(c echo.Context) error {
	removed, freed, err := a.eng.Volumes.Prune()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.PruneReport{Volumes: removed, SpaceReclaimed: freed, Node: a.node.Name})
}

// handleSystemPrune removes exited containers that no allocation owns any
// more, unused images (dangling only, unless all=1), and with volumes=1
// unused volumes.
func (a *Agent) handleSystemPrune(c echo.Context) error {
	rep := api.PruneReport{Node: a.node.Name}
	list, err := a.eng.List()
	if err != nil {
		return err
	}
	a.mu.Lock()
	owned := map[string]bool{}
	for id := range a.runners {
		owned[id] = true
	}
	a.mu.Unlock()
	used := map[string]bool{}
	for _, ci := range list {
		if ci.State != api.ContainerRunning && !owned[ci.AllocID] {
			if err := a.eng.Remove(ci.ID, false); err == nil {
				rep.Containers = append(rep.Containers, ci.ID)
				continue
			}
		}
		used[ci.ImageID] = true
	}
	imgs, err := a.eng.Images.List()
	if err != nil {
		return err
	}
	all := truthy(c.QueryParam("all"))
	for _, img := range imgs {
		if used[img.ID] || (!all && len(img.Names) > 0) {
			continue
		}
		if _, err := a.eng.Images.Remove(img.ID); err == nil {
			rep.Images = append(rep.Images, img.ID)
			rep.SpaceReclaimed += img.Size
		}
	}
	rep.SpaceReclaimed += a.pruneBuildCache()
	if truthy(c.QueryParam("volumes")) {
		removed, freed, err := a.eng.Volumes.Prune()
		if err != nil {
			return err
		}
		rep.Volumes, rep.SpaceReclaimed = removed, rep.SpaceReclaimed+freed
	}
	return c.JSON(http.StatusOK, rep)
}
