package api

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// The attach protocol. A client asks for an interactive stream with
// POST /v1/containers/{id}/attach (the container's own terminal or stdin,
// held by its shim) or POST /v1/containers/{id}/exec/attach (a new
// process), with the headers "Connection: Upgrade" and
// "Upgrade: berth-attach". The agent answers 101 Switching Protocols (or
// an ordinary JSON error), and the connection then carries frames both
// ways, through the server's proxy like any upgraded connection:
//
//	type    1 byte  (FrameStdin, FrameStdout, ...)
//	length  4 bytes, big-endian, at most MaxFramePayload
//	payload length bytes
//
// The client sends FrameStdin, FrameResize and FrameCloseStdin; the agent
// sends FrameStdout and FrameStderr, and FrameExit last when the process
// has ended. A stream that ends without FrameExit was cut (or detached).
// The container's shim speaks the same frames on its unix socket.
const AttachProtocol = "berth-attach"

// FrameType says what a frame carries.
type FrameType byte

// Frame types.
const (
	FrameStdin      FrameType = 0 // input for the process
	FrameStdout     FrameType = 1 // its output (a terminal's too)
	FrameStderr     FrameType = 2 // its error output (never with a terminal)
	FrameResize     FrameType = 3 // 4 bytes: rows, columns (big-endian uint16 each)
	FrameCloseStdin FrameType = 4 // no payload: end of input
	FrameExit       FrameType = 5 // JSON ExitResult: the process ended
)

// MaxFramePayload bounds one frame's payload; writers split longer data.
const MaxFramePayload = 32 << 10

const frameHeader = 5

// Attach errors.
var (
	// ErrBadFrame: the peer sent a frame of an unknown type, a payload
	// longer than MaxFramePayload, or a resize or exit frame that does
	// not decode. The stream cannot go on.
	ErrBadFrame = errors.New("api: malformed attach frame")
	// ErrAttachStream: the stream ended before the exit frame: the agent
	// or the proxy dropped the connection (or the client detached).
	ErrAttachStream = errors.New("api: attach stream ended before the process exited")
	// ErrNoUpgrade: the server answered an attach request without
	// switching protocols; a proxy in between may not pass upgrades.
	ErrNoUpgrade = errors.New("api: the server did not switch to the attach protocol")
)

// FrameReader reads frames. It is not safe for concurrent use.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, frameHeader+MaxFramePayload)
	}
	return &FrameReader{r: br, buf: make([]byte, MaxFramePayload)}
}

// Next returns the next frame. The payload is valid until the next call.
// A stream that ends between frames returns io.EOF; one cut inside a
// frame, io.ErrUnexpectedEOF.
func (f *FrameReader) Next() (FrameType, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return 0, nil, err
	}
	t := FrameType(h[0])
	n := binary.BigEndian.Uint32(h[1:])
	if t > FrameExit {
		return 0, nil, fmt.Errorf("%w: unknown type %d", ErrBadFrame, t)
	}
	if n > MaxFramePayload {
		return 0, nil, fmt.Errorf("%w: payload of %d bytes (at most %d)", ErrBadFrame, n, MaxFramePayload)
	}
	p := f.buf[:n]
	if _, err := io.ReadFull(f.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	switch {
	case t == FrameResize && n != 4:
		return 0, nil, fmt.Errorf("%w: resize payload of %d bytes, want 4", ErrBadFrame, n)
	case t == FrameCloseStdin && n != 0:
		return 0, nil, fmt.Errorf("%w: close-stdin frame with a payload", ErrBadFrame)
	}
	return t, p, nil
}

// FrameWriter writes frames. It is safe for concurrent use: each frame is
// written whole.
type FrameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFrameWriter writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write sends p as frames of type t, split at MaxFramePayload. An empty p
// sends one empty frame.
func (f *FrameWriter) Write(t FrameType, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), MaxFramePayload)
		b := make([]byte, frameHeader+n)
		b[0] = byte(t)
		binary.BigEndian.PutUint32(b[1:], uint32(n))
		copy(b[frameHeader:], p[:n])
		if _, err := f.w.Write(b); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Resize sends a terminal size.
func (f *FrameWriter) Resize(rows, cols uint16) error {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], rows)
	binary.BigEndian.PutUint16(b[2:], cols)
	return f.Write(FrameResize, b[:])
}

// Exit sends the exit frame.
func (f *FrameWriter) Exit(r ExitResult) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return f.Write(FrameExit, b)
}

// Stream returns an io.Writer whose writes become frames of type t.
func (f *FrameWriter) Stream(t FrameType) io.Writer { return streamWriter{f, t} }

type streamWriter struct {
	f *FrameWriter
	t FrameType
}

func (s streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.f.Write(s.t, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ParseResize decodes a FrameResize payload.
func ParseResize(p []byte) (rows, cols uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("%w: resize payload of %d bytes, want 4", ErrBadFrame, len(p))
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), nil
}

// ParseExit decodes a FrameExit payload.
func ParseExit(p []byte) (*ExitResult, error) {
	var r ExitResult
	if err := json.Unmarshal(p, &r); err != nil {
		return nil, fmt.Errorf("%w: exit payload: %v", ErrBadFrame, err)
	}
	return &r, nil
}

// AttachOptions shape an attach or exec stream.
type AttachOptions struct {
	// Stdin forwards the client's input. Without it the agent ignores
	// input frames (output only, as docker attach --no-stdin).
	Stdin bool
	// Rows and Cols are the terminal's size at the start (0: unknown).
	Rows, Cols uint16
	// Logs replays the container's log when it has already exited, so a
	// `run -it` of a quick command still shows its output.
	Logs bool
}

// AttachStream is an upgraded connection to an agent. Read the output with
// Next or Copy; send input with Stdin, Resize and CloseStdin (these are
// safe to call from another goroutine than the reader). Close it to
// detach.
type AttachStream struct {
	rw io.ReadWriteCloser
	*FrameReader
	w *FrameWriter
}

// Stdin sends input to the process.
func (a *AttachStream) Stdin(p []byte) error { return a.w.Write(FrameStdin, p) }

// Resize sends the terminal's new size.
func (a *AttachStream) Resize(rows, cols uint16) error { return a.w.Resize(rows, cols) }

// CloseStdin ends the process's input (a no-op for a terminal).
func (a *AttachStream) CloseStdin() error { return a.w.Write(FrameCloseStdin, nil) }

// Close ends the stream; for an attach, that detaches.
func (a *AttachStream) Close() error { return a.rw.Close() }

// Copy writes the output to stdout and stderr (either may be nil to drop
// it) until the exit frame, and returns it. A stream that ends first
// returns ErrAttachStream.
func (a *AttachStream) Copy(stdout, stderr io.Writer) (*ExitResult, error) {
	for {
		t, p, err := a.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				return nil, ErrAttachStream
			}
			return nil, err
		}
		var w io.Writer
		switch t {
		case FrameStdout:
			w = stdout
		case FrameStderr:
			w = stderr
		case FrameExit:
			return ParseExit(p)
		default:
			return nil, fmt.Errorf("%w: a client-bound frame of type %d", ErrBadFrame, t)
		}
		if w != nil {
			if _, err := w.Write(p); err != nil {
				return nil, err
			}
		}
	}
}

// Attach connects to the running container id's terminal or stdin (the
// container must have been started with Tty or Interactive).
func (c *AgentClient) Attach(ctx context.Context, id string, opts AttachOptions) (*AttachStream, error) {
	return c.upgrade(ctx, "/containers/"+url.PathEscape(id)+"/attach", opts.values())
}

// ExecAttach runs req in the running container id as an interactive
// stream: with tty on a new terminal (stdout only), otherwise on pipes.
// req.Stdin is ignored: input goes through the stream.
func (c *AgentClient) ExecAttach(ctx context.Context, id string, req *ExecRequest, tty bool, opts AttachOptions) (*AttachStream, error) {
	if req == nil || len(req.Cmd) == 0 {
		return nil, errors.New("api: exec needs a command")
	}
	q := opts.values()
	q["cmd"] = req.Cmd
	if len(req.Env) > 0 {
		q["env"] = req.Env
	}
	if req.User != "" {
		q.Set("user", req.User)
	}
	if req.WorkingDir != "" {
		q.Set("workdir", req.WorkingDir)
	}
	if tty {
		q.Set("tty", "1")
	}
	return c.upgrade(ctx, "/containers/"+url.PathEscape(id)+"/exec/attach", q)
}

func (o AttachOptions) values() url.Values {
	q := url.Values{}
	if o.Stdin {
		q.Set("stdin", "1")
	}
	if o.Logs {
		q.Set("logs", "1")
	}
	if o.Rows > 0 && o.Cols > 0 {
		q.Set("rows", strconv.Itoa(int(o.Rows)))
		q.Set("cols", strconv.Itoa(int(o.Cols)))
	}
	return q
}

// upgrade sends POST rest with the upgrade headers and returns the stream
// once the agent switched protocols. Cancelling ctx closes the stream.
func (c *AgentClient) upgrade(ctx context.Context, rest string, q url.Values) (*AttachStream, error) {
	path := c.prefix + rest
	u := c.addr + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nil, fmt.Errorf("api: build request POST %s: %w", path, err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", AttachProtocol)
	setToken(req, c.token)
	resp, err := http1Only(c.http).Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("api: POST %s: %w", path, ctxErr)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w at %s (POST %s: %w); start one with `berth dev`, or set %s to a running server",
			ErrUnreachable, c.addr, path, err, EnvAddr)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return nil, fmt.Errorf("%w (POST %s answered %s)", ErrNoUpgrade, path, resp.Status)
		}
		return nil, agentStatusError(resp, http.MethodPost, path, c.node)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || !strings.EqualFold(resp.Header.Get("Upgrade"), AttachProtocol) {
		resp.Body.Close()
		return nil, fmt.Errorf("%w (POST %s switched to %q)", ErrNoUpgrade, path, resp.Header.Get("Upgrade"))
	}
	stop := context.AfterFunc(ctx, func() { rw.Close() })
	return &AttachStream{rw: closeStop{rw, stop}, FrameReader: NewFrameReader(rw), w: NewFrameWriter(rw)}, nil
}

type closeStop struct {
	io.ReadWriteCloser
	stop func() bool
}

func (c closeStop) Close() error {
	c.stop()
	return c.ReadWriteCloser.Close()
}

// http1Only returns a client like hc that speaks HTTP/1.1 only, where
// upgrades exist (HTTP/2 has none); a transport it cannot see into is
// kept as it is.
func http1Only(hc *http.Client) *http.Client {
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tr, ok := rt.(*http.Transport)
	if !ok {
		return hc
	}
	tr = tr.Clone()
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	cp := *hc
	cp.Transport = tr
	return &cp
}
