package jobspec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/berth-dev/berth/api"
)

// MaxFileSize bounds a job file; a job spec is a few kilobytes.
const MaxFileSize = 4 << 20

// ErrFormat marks a file whose extension names no format berth reads.
var ErrFormat = errors.New("jobspec: unknown job file format")

// ParseFile reads a job file. The extension picks the format: .json is
// JSON, .yaml/.yml YAML; any other extension is read as YAML when the
// content does not start with '{'. Errors name the file.
func ParseFile(path string) (*api.Job, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read job file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read job file: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("read job file %s: is a directory; pass a .yaml or .json file", path)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("read job file %s: %d bytes is too large for a job spec (limit %d)", path, st.Size(), MaxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read job file: %w", err)
	}
	job, err := Parse(data, filepath.Ext(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return job, nil
}

// Parse reads a job spec. ext is a file extension (".yaml", ".yml",
// ".json") or "" to guess from the content.
func Parse(data []byte, ext string) (*api.Job, error) {
	switch strings.ToLower(ext) {
	case ".json":
		return api.DecodeJob(data)
	case ".yaml", ".yml":
		return parseYAML(data)
	case "":
		if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
			return api.DecodeJob(data)
		}
		return parseYAML(data)
	}
	return nil, fmt.Errorf("%w %q: use .yaml, .yml or .json", ErrFormat, ext)
}

func parseYAML(data []byte) (*api.Job, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty; a job needs at least a name and one group", api.ErrJobSpec)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", api.ErrJobSpec, strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
	}
	return api.DecodeJob(js)
}
