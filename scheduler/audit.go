package scheduler

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
)

// The audit log is a JSON-lines file (DATA_DIR/server/audit.log, or
// --audit-log PATH) with one record for every write to the API and every
// logs, exec and attach call through it, allowed or not. A record names
// the token by its accessor, never its secret, and holds no request body.

// AuditRecord is one line of the audit log.
type AuditRecord struct {
	Time     time.Time `json:"time"`
	Accessor string    `json:"accessor,omitempty"` // "" when ACLs are off or no valid token was sent
	SourceIP string    `json:"source_ip"`
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	Route    string    `json:"route,omitempty"`
	Status   int       `json:"status"`
	Duration float64   `json:"duration_ms"`
	// Forwarded names the server that forwarded the request, when it
	// came through a follower.
	Forwarded string `json:"forwarded_by,omitempty"`
	// Privileged marks a job submission with a privileged task.
	Privileged bool `json:"privileged,omitempty"`
}

// auditLogPath is where this server writes its audit log.
func (s *Server) auditLogPath() string {
	if p := s.cfg.AuditLog; p != "" {
		return p
	}
	return filepath.Join(s.cfg.DataDir, "server", "audit.log")
}

// audited reports whether a request goes to the audit log: every write,
// and the reads that reach into containers (logs; exec and attach are
// POSTs or upgrades, writes anyway).
func audited(c echo.Context) bool {
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return true
	}
	if c.Path() != "/v1/nodes/:id/agent/*" {
		return false
	}
	rest := "/" + strings.Trim(c.Param("*"), "/")
	return strings.HasSuffix(rest, "/logs") || strings.HasSuffix(rest, "/attach") || strings.Contains(rest, "/exec")
}

// audit is the audit middleware; it sits outside enforce, so refused
// requests are recorded too.
func (s *Server) audit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !audited(c) {
			return next(c)
		}
		start := time.Now()
		privileged := submitsPrivileged(c)
		err := next(c)
		if err != nil {
			c.Error(err) // write the answer now, to record its status
			err = nil
		}
		r := c.Request()
		rec := AuditRecord{
			Time: start.UTC(), SourceIP: remoteIP(r), Method: r.Method, Path: r.URL.Path,
			Route: c.Path(), Status: c.Response().Status, Duration: float64(time.Since(start).Microseconds()) / 1000,
			Forwarded: r.Header.Get(headerForwarded), Privileged: privileged,
		}
		if a := requestAuthz(c); a != nil {
			rec.Accessor = a.accessor
		}
		if privileged && rec.Status < 300 {
			s.log.Warn("privileged job submitted", "path", rec.Path, "accessor", rec.Accessor, "source", rec.SourceIP)
		}
		s.writeAudit(&rec)
		return err
	}
}

// remoteIP is the connection's peer address: proxies' headers are not
// trusted.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeAudit appends one record. Each record is one write(2) of one line
// to a file opened for appending, so concurrent requests never interleave.
func (s *Server) writeAudit(rec *AuditRecord) {
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	path := s.auditLogPath()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		s.log.Error("cannot write the audit log", "path", path, "err", err)
		return
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		s.log.Error("cannot write the audit log", "path", path, "err", err)
	}
	_ = f.Close()
}

// submitsPrivileged reports whether a request registers a job with a
// privileged task (the body is put back for the handler).
func submitsPrivileged(c echo.Context) bool {
	if c.Request().Method != http.MethodPost || c.Path() != "/v1/jobs" {
		return false
	}
	body, err := peekBody(c)
	if err != nil || !bytes.Contains(body, []byte(`"privileged"`)) {
		return false
	}
	var req api.JobRegisterRequest
	if json.Unmarshal(body, &req) != nil || req.Job == nil {
		return false
	}
	for _, t := range req.Job.Tasks() {
		if t.Privileged {
			return true
		}
	}
	return false
}
