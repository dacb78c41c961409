package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Agent client errors. Connection failures wrap ErrUnreachable, non-2xx
// answers are *StatusError, as with Client.
var (
	// ErrAgentNode means NewAgentClient was given no node to talk to.
	ErrAgentNode = errors.New("api: no node named for the agent client")
	// ErrExecStream means an exec stream ended without the exit frame: the
	// agent or the proxy dropped the connection while the process ran.
	ErrExecStream = errors.New("api: exec stream ended before the process exited")
)

// maxLogLine bounds one LogEntry line of a log stream (the shim splits
// longer output, so this only guards against a broken peer).
const maxLogLine = 4 << 20

// AgentClient talks to one node's agent API through a server's proxy
// (ANY /v1/nodes/{node}/agent/{rest} on the server → /v1/{rest} on the
// agent), so the caller needs to reach a server only. It is safe for
// concurrent use; streaming calls take a context that ends them.
type AgentClient struct {
	addr   string // server, scheme://host:port
	node   string // node ID, unique ID prefix, or name
	prefix string // /v1/nodes/{node}/agent
	http   *http.Client
	ctx    context.Context
	token  string // ACL token (acl.go)
}

// NewAgentClient returns a client for node's agent, reached through the
// server at serverAddr. An empty serverAddr means $BERTH_ADDR, then
// DefaultAddr; a bare host:port gets http://.
func NewAgentClient(serverAddr, node string) (*AgentClient, error) {
	if strings.TrimSpace(node) == "" {
		return nil, ErrAgentNode
	}
	if serverAddr == "" {
		serverAddr = os.Getenv(EnvAddr)
	}
	if serverAddr == "" {
		serverAddr = DefaultAddr
	}
	addr, err := normalizeAddr(serverAddr)
	if err != nil {
		return nil, err
	}
	tr, err := transportFor(addr, 16)
	if err != nil {
		return nil, err
	}
	return &AgentClient{
		addr:   addr,
		node:   node,
		prefix: "/v1/nodes/" + url.PathEscape(node) + "/agent",
		// No overall timeout: logs -f, wait and exec last as long as the
		// container does. Callers bound requests with contexts.
		http:  &http.Client{Transport: tr},
		ctx:   context.Background(),
		token: DefaultToken(addr),
	}, nil
}

// Address is the server URL the client goes through.
func (c *AgentClient) Address() string { return c.addr }

// Node is the node the client talks to, as given.
func (c *AgentClient) Node() string { return c.node }

// WithContext returns a copy whose non-streaming requests are bound to ctx.
func (c *AgentClient) WithContext(ctx context.Context) *AgentClient {
	cp := *c
	cp.ctx = ctx
	return &cp
}

// SetHTTPClient replaces the underlying HTTP client.
func (c *AgentClient) SetHTTPClient(h *http.Client) { c.http = h }

// raw sends one request to the agent route rest (such as "/containers")
// and returns a 2xx response; the caller closes its body.
func (c *AgentClient) raw(ctx context.Context, method, rest string, q url.Values, body io.Reader, ctype string) (*http.Response, error) {
	path := c.prefix + rest
	u := c.addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("api: build request %s %s: %w", method, path, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	setToken(req, c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("api: %s %s: %w", method, path, ctxErr)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w at %s (%s %s: %w); start one with `berth dev`, or set %s to a running server",
			ErrUnreachable, c.addr, method, path, err, EnvAddr)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, agentStatusError(resp, method, path, c.node)
	}
	return resp, nil
}

func agentStatusError(resp *http.Response, method, path, node string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := &StatusError{Code: resp.StatusCode, Method: method, Path: path}
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		se.Message = e.Error
	} else if s := strings.TrimSpace(string(b)); s != "" && len(s) < 300 && !strings.ContainsAny(s, "\n<") {
		se.Message = s
	} else {
		se.Message = fmt.Sprintf("%s %s on node %s: %s", method, path, node, http.StatusText(resp.StatusCode))
	}
	return se
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out when out is non-nil.
func (c *AgentClient) do(method, rest string, q url.Values, body, out any) error {
	var rd io.Reader
	ctype := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("api: encode %s %s body: %w", method, rest, err)
		}
		rd, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.raw(c.ctx, method, rest, q, rd, ctype)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return c.decode(resp, method, rest, out)
}

func (c *AgentClient) decode(resp *http.Response, method, rest string, out any) error {
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: decode answer of %s %s%s from %s: %w", method, c.prefix, rest, c.addr, err)
	}
	return nil
}

func boolQuery(v url.Values, key string, on bool) url.Values {
	if on {
		if v == nil {
			v = url.Values{}
		}
		v.Set(key, "1")
	}
	return v
}

// Health asks the agent whether it is up.
func (c *AgentClient) Health() (*Health, error) {
	var out Health
	if err := c.do(http.MethodGet, "/health", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Containers lists the containers the agent knows, running or not.
func (c *AgentClient) Containers() ([]ContainerInfo, error) {
	var out []ContainerInfo
	err := c.do(http.MethodGet, "/containers", nil, nil, &out)
	return out, err
}

// Container returns one container by ID, unique ID prefix, or name.
func (c *AgentClient) Container(id string) (*ContainerInfo, error) {
	var out ContainerInfo
	if err := c.do(http.MethodGet, "/containers/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LogStream reads a container's log entries, one JSON line each. It is not
// safe for concurrent use; Close ends the stream (and a follow).
type LogStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// Next returns the next entry, or io.EOF at the end of the stream (for a
// follow, when the container has exited and its output is drained).
func (s *LogStream) Next() (*LogEntry, error) {
	for s.sc.Scan() {
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("api: bad log line %.80q: %w", line, err)
		}
		return &e, nil
	}
	if err := s.sc.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

// Close ends the stream.
func (s *LogStream) Close() error { return s.body.Close() }

// Logs opens a container's log stream. follow keeps it open until the
// container exits (or ctx ends); tail < 0 means every line, otherwise the
// last tail lines first.
func (c *AgentClient) Logs(ctx context.Context, id string, follow bool, tail int) (*LogStream, error) {
	q := boolQuery(nil, "follow", follow)
	if tail >= 0 {
		if q == nil {
			q = url.Values{}
		}
		q.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.raw(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q, nil, "")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	return &LogStream{body: resp.Body, sc: sc}, nil
}

// Wait blocks until the container exits and returns how it ended.
func (c *AgentClient) Wait(ctx context.Context, id string) (*ExitResult, error) {
	rest := "/containers/" + url.PathEscape(id) + "/wait"
	resp, err := c.raw(ctx, http.MethodGet, rest, nil, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out ExitResult
	if err := c.decode(resp, http.MethodGet, rest, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Stats returns a snapshot of a container's resource use.
func (c *AgentClient) Stats(id string) (*ContainerStats, error) {
	var out ContainerStats
	if err := c.do(http.MethodGet, "/containers/"+url.PathEscape(id)+"/stats", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Kill sends signal (a name such as SIGKILL or KILL, or a number; empty
// means the agent's default, SIGKILL) to a container's main process.
func (c *AgentClient) Kill(id, signal string) error {
	var q url.Values
	if signal != "" {
		q = url.Values{"signal": {signal}}
	}
	return c.do(http.MethodPost, "/containers/"+url.PathEscape(id)+"/kill", q, nil, nil)
}

// Exec runs req in a running container, copies its output to stdout and
// stderr (either may be nil to drop it) and returns its exit code.
func (c *AgentClient) Exec(ctx context.Context, id string, req *ExecRequest, stdout, stderr io.Writer) (int, error) {
	if req == nil || len(req.Cmd) == 0 {
		return -1, errors.New("api: exec needs a command")
	}
	b, err := json.Marshal(req)
	if err != nil {
		return -1, fmt.Errorf("api: encode exec request: %w", err)
	}
	resp, err := c.raw(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/exec", nil, bytes.NewReader(b), "application/json")
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	return copyExecFrames(resp.Body, stdout, stderr)
}

func copyExecFrames(r io.Reader, stdout, stderr io.Writer) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var f ExecFrame
		if err := json.Unmarshal(line, &f); err != nil {
			return -1, fmt.Errorf("api: bad exec frame %.80q: %w", line, err)
		}
		if f.Data != "" {
			w := stdout
			if f.Stream == "stderr" {
				w = stderr
			}
			if w != nil {
				if _, err := io.WriteString(w, f.Data); err != nil {
					return -1, err
				}
			}
		}
		if f.Exit != nil {
			if f.Error != "" {
				return *f.Exit, fmt.Errorf("api: exec: %s", f.Error)
			}
			return *f.Exit, nil
		}
		if f.Error != "" {
			return -1, fmt.Errorf("api: exec: %s", f.Error)
		}
	}
	if err := sc.Err(); err != nil {
		return -1, fmt.Errorf("%w: %v", ErrExecStream, err)
	}
	return -1, ErrExecStream
}

// Images lists the node's images.
func (c *AgentClient) Images() ([]Image, error) {
	var out []Image
	err := c.do(http.MethodGet, "/images", nil, nil, &out)
	return out, err
}

// Image returns the detail of one image by name, ID or unique ID prefix.
func (c *AgentClient) Image(ref string) (*ImageInspect, error) {
	var out ImageInspect
	if err := c.do(http.MethodGet, "/images/"+url.PathEscape(ref), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImportImage makes a one-layer image named name from a root filesystem
// tar read from r.
func (c *AgentClient) ImportImage(r io.Reader, name string) (*Image, error) {
	rest := "/images/import"
	resp, err := c.raw(c.ctx, http.MethodPost, rest, url.Values{"name": {name}}, r, "application/x-tar")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out Image
	if err := c.decode(resp, http.MethodPost, rest, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LoadImages loads the images of a docker-save or OCI archive read from r.
func (c *AgentClient) LoadImages(r io.Reader) ([]Image, error) {
	rest := "/images/load"
	resp, err := c.raw(c.ctx, http.MethodPost, rest, nil, r, "application/x-tar")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []Image
	if err := c.decode(resp, http.MethodPost, rest, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// TagImage gives the image source the extra name target.
func (c *AgentClient) TagImage(source, target string) error {
	return c.do(http.MethodPost, "/images/tag", nil, &ImageTagRequest{Source: source, Target: target}, nil)
}

// RemoveImage untags ref and deletes the image once no name is left.
// force removes it even when several names or stopped containers use it.
func (c *AgentClient) RemoveImage(ref string, force bool) (*ImageRemoveResponse, error) {
	var out ImageRemoveResponse
	if err := c.do(http.MethodDelete, "/images/"+url.PathEscape(ref), boolQuery(nil, "force", force), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Volumes lists the node's named volumes.
func (c *AgentClient) Volumes() ([]Volume, error) {
	var out []Volume
	err := c.do(http.MethodGet, "/volumes", nil, nil, &out)
	return out, err
}

// CreateVolume creates a named volume (or returns the existing one).
func (c *AgentClient) CreateVolume(req VolumeCreateRequest) (*Volume, error) {
	var out Volume
	if err := c.do(http.MethodPost, "/volumes", nil, &req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Volume returns one named volume.
func (c *AgentClient) Volume(name string) (*Volume, error) {
	var out Volume
	if err := c.do(http.MethodGet, "/volumes/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveVolume removes a named volume; force removes it even when a
// container uses it.
func (c *AgentClient) RemoveVolume(name string, force bool) error {
	return c.do(http.MethodDelete, "/volumes/"+url.PathEscape(name), boolQuery(nil, "force", force), nil, nil)
}

// PruneVolumes removes every volume no container uses.
func (c *AgentClient) PruneVolumes() (*PruneReport, error) {
	var out PruneReport
	if err := c.do(http.MethodPost, "/volumes/prune", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Networks lists the node's networks, the default bridge first.
func (c *AgentClient) Networks() ([]Network, error) {
	var out []Network
	err := c.do(http.MethodGet, "/networks", nil, nil, &out)
	return out, err
}

// CreateNetwork creates a user network.
func (c *AgentClient) CreateNetwork(req NetworkCreateRequest) (*Network, error) {
	var out Network
	if err := c.do(http.MethodPost, "/networks", nil, &req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Network describes one network.
func (c *AgentClient) Network(name string) (*Network, error) {
	var out Network
	if err := c.do(http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveNetwork removes a user network that no container uses.
func (c *AgentClient) RemoveNetwork(name string) error {
	return c.do(http.MethodDelete, "/networks/"+url.PathEscape(name), nil, nil, nil)
}

// PruneNetworks removes every user network without containers.
func (c *AgentClient) PruneNetworks() (*PruneReport, error) {
	var out PruneReport
	if err := c.do(http.MethodPost, "/networks/prune", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SystemPrune removes stopped containers and dangling images; all removes
// every image no container uses, volumes also prunes unused volumes.
func (c *AgentClient) SystemPrune(all, volumes bool) (*PruneReport, error) {
	q := boolQuery(boolQuery(nil, "all", all), "volumes", volumes)
	var out PruneReport
	if err := c.do(http.MethodPost, "/system/prune", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// imageStream reads an ImageProgress stream, passing each layer line to
// fn, and returns the final line. A stream that ends without one (the
// node or the proxy dropped it) is an error.
func imageStream(r io.Reader, fn func(ImageProgress), what string) (*ImageProgress, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev ImageProgress
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("api: %s: bad progress line %q: %w", what, sc.Text(), err)
		}
		if ev.Error != "" {
			return nil, errors.New(ev.Error)
		}
		if ev.Image != nil || ev.Done {
			return &ev, nil
		}
		if fn != nil {
			fn(ev)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api: %s: stream broken: %w", what, err)
	}
	return nil, fmt.Errorf("api: %s: the stream ended before the node said it finished", what)
}

// PullImage makes the node pull req.Ref from its registry. fn, when not
// nil, receives each layer's progress as it comes; the pulled image is
// returned. A registry's refusal comes back as an error with its message.
func (c *AgentClient) PullImage(ctx context.Context, req ImagePullRequest, fn func(ImageProgress)) (*Image, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("api: encode pull request: %w", err)
	}
	resp, err := c.raw(ctx, http.MethodPost, "/images/pull", nil, bytes.NewReader(b), "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ev, err := imageStream(resp.Body, fn, "pull "+req.Ref)
	if err != nil {
		return nil, err
	}
	if ev.Image == nil {
		return nil, fmt.Errorf("api: pull %s: the node sent no image", req.Ref)
	}
	return ev.Image, nil
}

// PushImage makes the node push its image req.Ref to the registry the
// name points at, reporting each layer's progress to fn.
func (c *AgentClient) PushImage(ctx context.Context, req ImagePushRequest, fn func(ImageProgress)) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("api: encode push request: %w", err)
	}
	resp, err := c.raw(ctx, http.MethodPost, "/images/push", nil, bytes.NewReader(b), "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = imageStream(resp.Body, fn, "push "+req.Ref)
	return err
}

// ImageHistory returns how an image was built, newest step first.
func (c *AgentClient) ImageHistory(ref string) ([]ImageHistory, error) {
	var out []ImageHistory
	err := c.do(http.MethodGet, "/images/"+url.PathEscape(ref)+"/history", nil, nil, &out)
	return out, err
}

// SaveImages streams a docker-compatible archive of the named images; the
// caller closes it.
func (c *AgentClient) SaveImages(ctx context.Context, refs ...string) (io.ReadCloser, error) {
	resp, err := c.raw(ctx, http.MethodGet, "/images/save", url.Values{"ref": refs}, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// PruneImages removes images no container uses: dangling ones, or every
// such image with all.
func (c *AgentClient) PruneImages(all bool) (*PruneReport, error) {
	var out PruneReport
	if err := c.do(http.MethodPost, "/images/prune", boolQuery(nil, "all", all), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
