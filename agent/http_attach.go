package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/logs"
)

// attachRoutes serves the interactive streams of api/attach.go: a
// container's own terminal or stdin (held by its shim, so it outlives
// agent restarts) and exec with a terminal or with stdin.
func (a *Agent) attachRoutes(g *echo.Group) {
	g.POST("/containers/:id/attach", a.handleAttach)
	g.POST("/containers/:id/exec/attach", a.handleExecAttach)
}

// ptyDrain bounds how long an exec's terminal output is read after the
// process exited: background jobs it left may hold the terminal open.
const ptyDrain = time.Second

type attachQuery struct {
	stdin, logs bool
	rows, cols  uint16
}

func parseAttachQuery(c echo.Context) (*attachQuery, error) {
	r := c.Request()
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.AttachProtocol) || !headerToken(r.Header, "Connection", "upgrade") {
		return nil, echo.NewHTTPError(http.StatusBadRequest,
			"this route upgrades the connection: send Connection: Upgrade and Upgrade: "+api.AttachProtocol)
	}
	q := &attachQuery{stdin: truthy(c.QueryParam("stdin")), logs: truthy(c.QueryParam("logs"))}
	rs, cs := c.QueryParam("rows"), c.QueryParam("cols")
	if rs != "" || cs != "" {
		rows, err1 := strconv.ParseUint(rs, 10, 16)
		cols, err2 := strconv.ParseUint(cs, 10, 16)
		if err1 != nil || err2 != nil {
			return nil, echo.NewHTTPError(http.StatusBadRequest, "rows, cols: want the terminal's size as two numbers up to 65535")
		}
		q.rows, q.cols = uint16(rows), uint16(cols)
	}
	return q, nil
}

func headerToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// switchProtocols hijacks the connection and answers 101. Reads must go
// through the returned reader, which may hold bytes the client sent early.
func switchProtocols(c echo.Context) (net.Conn, *bufio.Reader, error) {
	conn, brw, err := c.Response().Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("agent: take over the connection: %w", err)
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + api.AttachProtocol + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, brw.Reader, nil
}

func (a *Agent) handleAttach(c echo.Context) error {
	q, err := parseAttachQuery(c)
	if err != nil {
		return err
	}
	ci, err := a.eng.Info(c.Param("id"))
	if err != nil {
		return err
	}
	sh, err := a.eng.Containers.Attach(ci.ID)
	switch {
	case errors.Is(err, container.ErrNotRunning) && q.logs:
		return a.replayExited(c, ci.ID)
	case errors.Is(err, container.ErrNotAttachable):
		// Like docker: attaching to a container without a terminal or
		// stdin shows its output from now on, and its exit.
		return a.attachLog(c, ci.ID)
	case errors.Is(err, container.ErrNotRunning):
		return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf("container %s is not running: you cannot attach to a stopped container", ci.Name))
	case err != nil:
		return err
	}
	defer sh.Close()
	conn, br, err := switchProtocols(c)
	if err != nil {
		return nil
	}
	defer conn.Close()
	toShim := api.NewFrameWriter(sh)
	if q.rows > 0 && q.cols > 0 {
		_ = toShim.Resize(q.rows, q.cols)
	}
	// The client's frames go to the shim (checked, so the shim only ever
	// sees well-formed ones); the shim's output frames come back as they
	// are. The client going away detaches.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		defer sh.Close()
		readClient(br, func(t api.FrameType, p []byte) bool {
			switch t {
			case api.FrameStdin, api.FrameCloseStdin:
				if !q.stdin {
					return true
				}
			case api.FrameResize:
			default:
				return false
			}
			return toShim.Write(t, p) == nil
		})
	}()
	_, _ = io.Copy(conn, sh)
	select {
	case <-gone:
		return nil // detached
	default:
	}
	// The shim closed the stream: the container exited (the shim records
	// the exit before it closes), or it dropped a client that stopped
	// reading; that one gets no exit frame and may attach again.
	if ct, err := a.eng.Containers.Get(ci.ID); err == nil && ct.State.Status == container.StatusRunning {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	a.sendExit(ctx, api.NewFrameWriter(conn), ci.ID)
	return nil
}

// sendExit waits for the container and sends the exit frame.
func (a *Agent) sendExit(ctx context.Context, fw *api.FrameWriter, id string) {
	st, err := a.eng.Wait(ctx, id)
	if err != nil {
		_ = fw.Exit(api.ExitResult{ExitCode: -1, Error: "wait for the container: " + err.Error()})
		return
	}
	_ = fw.Exit(api.ExitResult{ExitCode: st.Code, OOMKilled: st.OOMKilled, Error: st.Error})
}

// attachLog streams the output a container makes from now on (its input
// is ignored) until it exits or the client goes away.
func (a *Agent) attachLog(c echo.Context, id string) error {
	rc, err := a.eng.Containers.Logs(id, container.LogOptions{Follow: true, Since: time.Now()})
	if err != nil {
		return err
	}
	defer rc.Close()
	conn, br, err := switchProtocols(c)
	if err != nil {
		return nil
	}
	defer conn.Close()
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		defer rc.Close()
		readClient(br, func(api.FrameType, []byte) bool { return true })
	}()
	fw := api.NewFrameWriter(conn)
	if !copyLogFrames(fw, rc) {
		return nil
	}
	select {
	case <-gone:
		return nil
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	a.sendExit(ctx, fw, id)
	return nil
}

// copyLogFrames sends log lines (package logs' JSON) as output frames; it
// returns false when the client stopped taking them.
func copyLogFrames(fw *api.FrameWriter, r io.Reader) bool {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		e, err := logs.Decode(sc.Bytes())
		if err != nil {
			continue
		}
		t := api.FrameStdout
		if e.Stream == "stderr" {
			t = api.FrameStderr
		}
		if fw.Write(t, []byte(e.Log)) != nil {
			return false
		}
	}
	return true
}

// replayExited answers the attach of a container that is already gone
// (a quick `run -it`) with its whole log and its exit.
func (a *Agent) replayExited(c echo.Context, id string) error {
	rc, err := a.eng.Containers.Logs(id, container.LogOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	conn, _, err := switchProtocols(c)
	if err != nil {
		return nil
	}
	defer conn.Close()
	fw := api.NewFrameWriter(conn)
	if !copyLogFrames(fw, rc) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.sendExit(ctx, fw, id)
	return nil
}

func (a *Agent) handleExecAttach(c echo.Context) error {
	q, err := parseAttachQuery(c)
	if err != nil {
		return err
	}
	qp := c.QueryParams()
	p := &container.Process{Args: qp["cmd"], Env: qp["env"], User: c.QueryParam("user"), Cwd: c.QueryParam("workdir")}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return echo.NewHTTPError(http.StatusBadRequest, "cmd: give the command to run (cmd=ARG, repeated)")
	}
	if p.Cwd != "" && !strings.HasPrefix(p.Cwd, "/") {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("workdir %q: must be an absolute path", p.Cwd))
	}
	for _, e := range p.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("env %q: want KEY=VALUE", e))
		}
	}
	tty := truthy(c.QueryParam("tty"))
	ci, err := a.eng.Info(c.Param("id"))
	if err != nil {
		return err
	}
	if ci.State != api.ContainerRunning {
		return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf("container %s is not running", ci.Name))
	}
	if tty {
		return a.execTTY(c, ci.ID, p, q)
	}
	return a.execPipes(c, ci.ID, p, q)
}

// execTTY runs p on a new terminal in the container.
func (a *Agent) execTTY(c echo.Context, id string, p *container.Process, q *attachQuery) error {
	master, slave, err := a.eng.Containers.OpenPTY(id)
	if err != nil {
		return err
	}
	defer master.Close()
	defer slave.Close()
	if q.rows > 0 && q.cols > 0 {
		_ = container.Resize(master, q.rows, q.cols)
	}
	conn, br, err := switchProtocols(c)
	if err != nil {
		return nil
	}
	defer conn.Close()
	fw := api.NewFrameWriter(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// A client that goes away kills the process, as with exec.
		defer cancel()
		readClient(br, func(t api.FrameType, b []byte) bool {
			switch t {
			case api.FrameStdin:
				if q.stdin {
					if _, err := master.Write(b); err != nil {
						return false
					}
				}
			case api.FrameResize:
				rows, cols, _ := api.ParseResize(b)
				_ = container.Resize(master, rows, cols)
			case api.FrameCloseStdin:
			default:
				return false
			}
			return true
		})
	}()
	out := make(chan struct{})
	go func() {
		defer close(out)
		_, _ = io.Copy(fw.Stream(api.FrameStdout), master)
	}()
	code, err := a.eng.Containers.Exec(ctx, id, p, slave, slave, slave)
	slave.Close()
	_ = master.SetReadDeadline(time.Now().Add(ptyDrain))
	<-out
	sendExecExit(fw, code, err)
	return nil
}

// execPipes runs p with its stdin (when asked for) and output on pipes.
func (a *Agent) execPipes(c echo.Context, id string, p *container.Process, q *attachQuery) error {
	var stdin *os.File
	var stdinW *os.File
	if q.stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		defer w.Close()
		stdin, stdinW = r, w
	}
	conn, br, err := switchProtocols(c)
	if err != nil {
		return nil
	}
	defer conn.Close()
	fw := api.NewFrameWriter(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer cancel()
		readClient(br, func(t api.FrameType, b []byte) bool {
			switch t {
			case api.FrameStdin:
				if stdinW != nil {
					// A process that closed its stdin just loses the rest.
					_, _ = stdinW.Write(b)
				}
			case api.FrameCloseStdin:
				if stdinW != nil {
					stdinW.Close()
				}
			case api.FrameResize:
			default:
				return false
			}
			return true
		})
	}()
	var in io.Reader
	if stdin != nil {
		in = stdin
	}
	code, err := a.eng.Containers.Exec(ctx, id, p, in, fw.Stream(api.FrameStdout), fw.Stream(api.FrameStderr))
	sendExecExit(fw, code, err)
	return nil
}

// readClient reads a client's frames until it goes away or handle, called
// for each, returns false.
func readClient(br io.Reader, handle func(t api.FrameType, p []byte) bool) {
	fr := api.NewFrameReader(br)
	for {
		t, p, err := fr.Next()
		if err != nil || !handle(t, p) {
			return
		}
	}
}

// sendExecExit sends an exec'd process's exit frame.
func sendExecExit(fw *api.FrameWriter, code int, err error) {
	res := api.ExitResult{ExitCode: code}
	if err != nil {
		res.Error = err.Error()
	}
	_ = fw.Exit(res)
}
