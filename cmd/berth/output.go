package main

// Shared output and connection helpers for the client commands: aligned
// tables by default, --format json everywhere, and one way to find the
// server (--address, else BERTH_ADDR, else the default).

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

// Output formats accepted by --format.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// addFormatFlag adds --format (table or json) to cmd. Read it with
// outputFormat.
func addFormatFlag(cmd *cobra.Command) {
	cmd.Flags().String("format", formatTable, "output format: table or json")
}

// outputFormat returns the validated --format of cmd.
func outputFormat(cmd *cobra.Command) (string, error) {
	f, err := cmd.Flags().GetString("format")
	if err != nil {
		return formatTable, nil
	}
	switch strings.ToLower(f) {
	case formatTable, "":
		return formatTable, nil
	case formatJSON:
		return formatJSON, nil
	}
	return "", fmt.Errorf("invalid --format %q: use table or json", f)
}

// render writes v as indented JSON when cmd's --format is json, and calls
// table otherwise.
func render(cmd *cobra.Command, v any, table func(w io.Writer) error) error {
	f, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	if f == formatJSON {
		return writeJSON(cmd.OutOrStdout(), v)
	}
	return table(cmd.OutOrStdout())
}

// writeJSON writes v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table writes aligned columns. Build it with newTable, add rows, then
// Flush.
type Table struct {
	tw *tabwriter.Writer
}

// newTable starts a table with the given column headers.
func newTable(w io.Writer, headers ...string) *Table {
	t := &Table{tw: tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)}
	if len(headers) > 0 {
		t.Row(anySlice(headers)...)
	}
	return t
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// Row adds one row; each value is printed with %v, an empty one as "-".
func (t *Table) Row(cols ...any) {
	parts := make([]string, len(cols))
	for i, c := range cols {
		s := fmt.Sprint(c)
		if s == "" {
			s = "-"
		}
		parts[i] = strings.ReplaceAll(s, "\t", " ")
	}
	fmt.Fprintln(t.tw, strings.Join(parts, "\t"))
}

// Flush writes the table out.
func (t *Table) Flush() error { return t.tw.Flush() }

// writeKV prints "Key = value" lines aligned on the '='.
func writeKV(w io.Writer, pairs ...[2]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, p := range pairs {
		v := p[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t= %s\n", p[0], v)
	}
	return tw.Flush()
}

// addAddressFlag adds the persistent --address flag to a command group.
func addAddressFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().String("address", "", "server HTTP address (default $"+api.EnvAddr+", else "+api.DefaultAddr+")")
	addClientTLSFlags(cmd)
}

// apiClient returns a client for the server chosen by --address (when the
// command has it), else BERTH_ADDR, else the default address.
func apiClient(cmd *cobra.Command) (*api.Client, error) {
	addr := ""
	if f := cmd.Flags().Lookup("address"); f != nil {
		addr = f.Value.String()
	}
	applyClientTLSFlags(cmd)
	return api.NewClient(addr)
}

// shortID shortens a UUID for tables.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// since renders a unix-nanosecond time as an age ("3m ago").
func since(unixNanos int64) string {
	if unixNanos == 0 {
		return "-"
	}
	d := time.Since(time.Unix(0, unixNanos))
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d ago"
}

// mib renders MiB compactly: 512MiB, 64GiB.
func mib(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return strconv.Itoa(n/1024) + "GiB"
	}
	if n >= 10240 {
		return fmt.Sprintf("%.1fGiB", float64(n)/1024)
	}
	return strconv.Itoa(n) + "MiB"
}

// millicores renders CPU millicores as cores when whole: 4, 0.5, 250m.
func millicores(n int) string {
	switch {
	case n%1000 == 0:
		return strconv.Itoa(n / 1000)
	case n%100 == 0:
		return strconv.FormatFloat(float64(n)/1000, 'f', -1, 64)
	}
	return strconv.Itoa(n) + "m"
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// allocStatus is the one-word status of an allocation for tables:
// the client's status, or what the server wants when they differ.
func allocStatus(a *api.Allocation) string {
	s := a.ClientStatus
	if s == "" {
		s = api.AllocClientPending
	}
	if a.DesiredStatus != "" && a.DesiredStatus != api.AllocDesiredRun && !a.Terminal() {
		s += " (" + a.DesiredStatus + ")"
	}
	return s
}

// allocTable prints allocations, newest first by create index.
func allocTable(w io.Writer, allocs []*api.Allocation) error {
	sorted := append([]*api.Allocation(nil), allocs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Name != sorted[j].Name {
			return sorted[i].Name < sorted[j].Name
		}
		return sorted[i].CreateIndex > sorted[j].CreateIndex
	})
	t := newTable(w, "ID", "NAME", "NODE", "DESIRED", "STATUS", "CPU", "MEMORY", "CREATED")
	for _, a := range sorted {
		node := a.NodeName
		if node == "" {
			node = shortID(a.NodeID)
		}
		t.Row(shortID(a.ID), a.Name, node, a.DesiredStatus, allocStatus(a),
			millicores(a.Resources.CPU), mib(a.Resources.MemoryMB), since(a.CreateTime))
	}
	return t.Flush()
}
