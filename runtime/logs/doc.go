// Package logs writes and reads container logs as JSON lines, the format of
// docker's json-file driver:
//
//	{"t":"2026-11-27T03:40:00.123456789Z","stream":"stdout","log":"hello\n"}
//
// A container's shim owns a Writer, which appends one line per line of
// output (lines longer than MaxLine are split, the last part of a line
// lacking its newline) and rotates the file by size: NAME, NAME.1, …
// NAME.(max-1), oldest last. Open reads them back, oldest first, with
// tail, since and follow options; Decode turns a line into an Entry.
//
// The writer avoids encoding/json so the shim stays small; the reader uses
// it, and a fuzz test checks that both agree.
package logs
