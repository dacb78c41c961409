package logs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxLine is the longest log entry; longer lines are split, like docker's 16 KiB.
const MaxLine = 16 << 10

// Errors returned by this package.
var (
	// ErrClosed: the writer was closed.
	ErrClosed = errors.New("logs: writer closed")
)

// Entry is one decoded log line.
type Entry struct {
	Time   time.Time `json:"t"`
	Stream string    `json:"stream"`
	Log    string    `json:"log"`
}

// Decode parses one JSON line.
func Decode(line []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return e, fmt.Errorf("logs: bad log line %q: %w", truncate(line), err)
	}
	return e, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// Writer appends entries to a size-rotated file. It is safe for use by
// several goroutines (a shim copies stdout and stderr concurrently).
type Writer struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	buf      []byte
	now      func() time.Time
}

// NewWriter opens (appending) the log at path. maxSize is the size after
// which the file is rotated (<= 0: never); maxFiles counts the current file.
func NewWriter(path string, maxSize int64, maxFiles int) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("logs: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logs: stat %s: %w", path, err)
	}
	if maxFiles < 1 {
		maxFiles = 1
	}
	return &Writer{path: path, maxSize: maxSize, maxFiles: maxFiles, f: f, size: st.Size(), now: time.Now}, nil
}

// Write records one entry of stream (its text, usually ending in "\n").
func (w *Writer) Write(stream string, text []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return ErrClosed
	}
	b := w.buf[:0]
	b = append(b, `{"t":"`...)
	b = w.now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","stream":`...)
	b = appendJSONString(b, stream)
	b = append(b, `,"log":`...)
	b = appendJSONString(b, string(text))
	b = append(b, "}\n"...)
	w.buf = b
	if w.maxSize > 0 && w.size > 0 && w.size+int64(len(b)) > w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("logs: write %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("logs: close %s: %w", w.path, err)
	}
	w.f = nil
	if w.maxFiles == 1 {
		if err := os.Truncate(w.path, 0); err != nil {
			return fmt.Errorf("logs: truncate %s: %w", w.path, err)
		}
	} else {
		for i := w.maxFiles - 1; i >= 1; i-- {
			from := w.path
			if i > 1 {
				from = w.path + "." + strconv.Itoa(i-1)
			}
			if err := os.Rename(from, w.path+"."+strconv.Itoa(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("logs: rotate %s: %w", from, err)
			}
		}
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("logs: reopen %s: %w", w.path, err)
	}
	w.f, w.size = f, 0
	return nil
}

// Path is the file the writer appends to.
func (w *Writer) Path() string { return w.path }

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// CopyLines reads r until EOF and writes each line (split at MaxLine) as an
// entry of stream.
func (w *Writer) CopyLines(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, MaxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if werr := w.Write(stream, line); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		default:
			return err
		}
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, replacing invalid UTF-8
// with U+FFFD as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// Options select the lines Open returns.
type Options struct {
	Tail  int       // only the last Tail lines; 0 means all
	Since time.Time // only lines at or after Since
	// Follow keeps reading new lines (across rotations) until Done
	// returns true and everything written has been read, or the reader is
	// closed.
	Follow bool
	// Done reports whether the writer has finished for good (the
	// container exited). Only used with Follow; nil means never.
	Done func() bool
	// Poll is how often a follower looks for new data; default 50ms.
	Poll time.Duration
}

// Files lists the log files of path, oldest first, that exist.
func Files(path string, maxFiles int) []string {
	var out []string
	for i := maxFiles - 1; i >= 1; i-- {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return append(out, path)
}

// Open returns the JSON lines of the log at path (and its rotated files),
// oldest first, each ending in "\n". Close the reader to stop following.
func Open(path string, maxFiles int, opts Options) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	var lines [][]byte
	var cur *os.File
	var curOff int64
	files := Files(path, maxFiles)
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("logs: read %s: %w", p, err)
		}
		if p == path {
			// Keep only whole lines; a follower continues from there.
			if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
				data = data[:i+1]
			} else {
				data = nil
			}
			curOff = int64(len(data))
		}
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			lines = append(lines, data[:i+1])
			data = data[i+1:]
		}
	}
	if !opts.Since.IsZero() {
		kept := lines[:0]
		for _, l := range lines {
			if e, err := Decode(l); err == nil && !e.Time.Before(opts.Since) {
				kept = append(kept, l)
			}
		}
		lines = kept
	}
	if opts.Tail > 0 && len(lines) > opts.Tail {
		lines = lines[len(lines)-opts.Tail:]
	}
	if opts.Follow {
		f, err := os.Open(path)
		if err == nil {
			cur = f
		}
	}
	go func() {
		for _, l := range lines {
			if _, err := pw.Write(l); err != nil {
				if cur != nil {
					cur.Close()
				}
				return
			}
		}
		if !opts.Follow {
			pw.Close()
			return
		}
		pw.CloseWithError(follow(pw, path, cur, curOff, opts))
	}()
	return pr, nil
}

// follow streams lines appended to path after off, reopening the file when
// the writer rotates it.
func follow(w io.Writer, path string, f *os.File, off int64, opts Options) error {
	poll := opts.Poll
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var partial []byte
	buf := make([]byte, 64<<10)
	for {
		done := opts.Done != nil && opts.Done()
		progressed := false
		if f == nil {
			if nf, err := os.Open(path); err == nil {
				f, off, partial = nf, 0, nil
			}
		}
		if f != nil {
			for {
				n, err := f.ReadAt(buf, off)
				if n > 0 {
					off += int64(n)
					progressed = true
					data := append(partial, buf[:n]...)
					i := bytes.LastIndexByte(data, '\n')
					if i >= 0 {
						if err := writeSince(w, data[:i+1], opts.Since); err != nil {
							return nil
						}
						partial = append([]byte(nil), data[i+1:]...)
					} else {
						partial = data
					}
				}
				if err != nil || n == 0 {
					break
				}
			}
			// Rotated: the name now points to a new file. Finish the old one
			// (done above) and switch.
			if st, err := os.Stat(path); err == nil {
				if fst, err := f.Stat(); err == nil && !os.SameFile(st, fst) {
					f.Close()
					f, off, partial = nil, 0, nil
					continue
				}
			}
		}
		if done && !progressed {
			return nil
		}
		if !progressed {
			time.Sleep(poll)
		}
	}
}

func writeSince(w io.Writer, data []byte, since time.Time) error {
	if since.IsZero() {
		_, err := w.Write(data)
		return err
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		l := data[:i+1]
		data = data[i+1:]
		if e, err := Decode(l); err == nil && e.Time.Before(since) {
			continue
		}
		if _, err := w.Write(l); err != nil {
			return err
		}
	}
	return nil
}
