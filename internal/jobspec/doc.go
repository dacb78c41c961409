// Package jobspec reads job files, YAML or JSON, into api.Job. YAML is
// converted to JSON and both go through api.DecodeJob, so the two formats
// share one set of struct tags and the same strict rules: an unknown field
// is refused with its path, a wrong type names its field.
//
// It lives outside api because api imports only the standard library, and
// YAML needs sigs.k8s.io/yaml.
package jobspec
