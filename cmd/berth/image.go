package main

// `berth image …` (and the docker aliases `images`, `rmi`): images live in
// each node's local store, so every command goes to the agents through the
// server's proxy. --node picks one node; with a single node it is implied.
// Without --node, ls and inspect cover every ready node (ls adds a NODE
// column), and import, load, tag and rm act on every ready node so that a
// container may be placed anywhere.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func init() {
	addCommand(newImageCmd)
	addCommand(func() *cobra.Command {
		c := newImageLsCmd()
		c.Use, c.Aliases = "images", nil
		return c
	})
	addCommand(func() *cobra.Command {
		c := newImageRmCmd()
		c.Use, c.Aliases = "rmi [OPTIONS] IMAGE...", nil
		return c
	})
}

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images in the nodes' local stores",
	}
	cmd.AddCommand(newImageImportCmd(), newImageLoadCmd(), newImageLsCmd(), newImageInspectCmd(),
		newImageRmCmd(), newImageTagCmd())
	cmd.AddCommand(registrySubcommands()...)
	cmd.AddCommand(newImageBuildCmd())
	addAddressFlag(cmd)
	return cmd
}

func addNodeFlag(cmd *cobra.Command, what string) {
	cmd.Flags().String("node", "", what)
}

// nodeTarget is one node an image or volume command talks to.
type nodeTarget struct {
	Node  *api.Node
	Agent *api.AgentClient
}

func (t nodeTarget) name() string {
	if t.Node.Name != "" {
		return t.Node.Name
	}
	return t.Node.ID
}

// targetNodes returns --node's node, or every ready node. It fails when
// there is none.
func targetNodes(cmd *cobra.Command, c *api.Client) ([]nodeTarget, error) {
	ref, _ := cmd.Flags().GetString("node")
	var nodes []*api.Node
	if ref != "" {
		n, _, err := c.Nodes().Info(ref, nil)
		if err != nil {
			if api.IsNotFound(err) {
				return nil, fmt.Errorf("node %q not found; `berth node ls` lists nodes", ref)
			}
			return nil, fmt.Errorf("node %q: %w", ref, err)
		}
		if n.Status == api.NodeStatusDown {
			return nil, fmt.Errorf("node %s is down", n.Name)
		}
		nodes = []*api.Node{n}
	} else {
		all, _, err := c.Nodes().List(nil)
		if err != nil {
			return nil, err
		}
		for _, n := range all {
			if n.Status == api.NodeStatusReady {
				nodes = append(nodes, n)
			}
		}
		if len(nodes) == 0 {
			return nil, errors.New("no ready node: start an agent (`berth dev` runs one) or check `berth node ls`")
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	out := make([]nodeTarget, 0, len(nodes))
	for _, n := range nodes {
		ag, err := api.NewAgentClient(c.Address(), n.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, nodeTarget{Node: n, Agent: ag})
	}
	return out, nil
}

// nodeErr prefixes an error with the node when there are several.
func nodeErr(ts []nodeTarget, t nodeTarget, err error) error {
	if len(ts) > 1 {
		return fmt.Errorf("node %s: %w", t.name(), err)
	}
	return err
}

// openInput opens FILE, or stdin for "-". When several nodes need it, a
// stream is spooled to a temporary file so each node can read it.
func openInput(cmd *cobra.Command, path string, times int) (func() (io.ReadCloser, error), func(), error) {
	if path != "-" {
		if _, err := os.Stat(path); err != nil {
			return nil, nil, err
		}
		return func() (io.ReadCloser, error) { return os.Open(path) }, func() {}, nil
	}
	if times <= 1 {
		return func() (io.ReadCloser, error) { return io.NopCloser(cmd.InOrStdin()), nil }, func() {}, nil
	}
	tmp, err := os.CreateTemp("", "berth-input-*.tar")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	if _, err := io.Copy(tmp, cmd.InOrStdin()); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("read stdin: %w", err)
	}
	return func() (io.ReadCloser, error) { return os.Open(tmp.Name()) }, cleanup, nil
}

func newImageImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE|- NAME[:TAG]",
		Short: "Make an image from a root filesystem tarball (on --node, else on every ready node)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkImageRef(args[1]); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			open, cleanup, err := openInput(cmd, args[0], len(ts))
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer cleanup()
			return forNodes(cmd, ts, func(t nodeTarget) (string, error) {
				r, err := open()
				if err != nil {
					return "", err
				}
				defer r.Close()
				im, err := t.Agent.ImportImage(r, args[1])
				if err != nil {
					return "", err
				}
				return im.ID, nil
			})
		},
	}
	addNodeFlag(cmd, "node to import on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

// forNodes runs fn on each node and prints its result, prefixed by the
// node's name when there are several. It fails if any node failed.
func forNodes(cmd *cobra.Command, ts []nodeTarget, fn func(nodeTarget) (string, error)) error {
	failed := 0
	for _, t := range ts {
		out, err := fn(t)
		if err != nil {
			failed++
			fmt.Fprintln(cmd.ErrOrStderr(), "Error:", nodeErr(ts, t, err))
			continue
		}
		if out == "" {
			continue
		}
		if len(ts) > 1 {
			for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", t.name(), l)
			}
		} else {
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimRight(out, "\n"))
		}
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

func newImageLoadCmd() *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker-save or OCI archive (on --node, else on every ready node)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			open, cleanup, err := openInput(cmd, input, len(ts))
			if err != nil {
				return fmt.Errorf("load: %w", err)
			}
			defer cleanup()
			return forNodes(cmd, ts, func(t nodeTarget) (string, error) {
				r, err := open()
				if err != nil {
					return "", err
				}
				defer r.Close()
				ims, err := t.Agent.LoadImages(r)
				if err != nil {
					return "", err
				}
				var b strings.Builder
				for _, im := range ims {
					if len(im.RepoTags) == 0 {
						fmt.Fprintf(&b, "Loaded image ID: %s\n", im.ID)
					}
					for _, tag := range im.RepoTags {
						fmt.Fprintf(&b, "Loaded image: %s\n", tag)
					}
				}
				return b.String(), nil
			})
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "-", "read from a tar archive file instead of stdin")
	addNodeFlag(cmd, "node to load on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

type imageRow struct {
	api.Image
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
}

func splitRepoTag(rt string) (string, string) {
	if i := strings.LastIndex(rt, ":"); i > strings.LastIndex(rt, "/") {
		return rt[:i], rt[i+1:]
	}
	return rt, "latest"
}

func imageShortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func newImageLsCmd() *cobra.Command {
	var quiet, digests, all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images (of --node, else of every ready node)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			ims, failed := gatherFromNodes(cmd, ts, func(t nodeTarget) ([]api.Image, error) { return t.Agent.Images() },
				func(im *api.Image) *string { return &im.Node })
			rows := []imageRow{}
			for _, im := range ims {
				if len(im.RepoTags) == 0 {
					rows = append(rows, imageRow{Image: im, Repository: "<none>", Tag: "<none>"})
				}
				for _, rt := range im.RepoTags {
					repo, tag := splitRepoTag(rt)
					rows = append(rows, imageRow{Image: im, Repository: repo, Tag: tag})
				}
			}
			sort.SliceStable(rows, func(i, j int) bool {
				if rows[i].Created != rows[j].Created {
					return rows[i].Created > rows[j].Created
				}
				return rows[i].Repository+":"+rows[i].Tag < rows[j].Repository+":"+rows[j].Tag
			})
			var err2 error
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					if !seen[r.ID] {
						seen[r.ID] = true
						fmt.Fprintln(cmd.OutOrStdout(), imageShortID(r.ID))
					}
				}
			} else {
				err2 = render(cmd, rows, func(w io.Writer) error {
					hdr := []string{"REPOSITORY", "TAG"}
					if digests {
						hdr = append(hdr, "DIGEST")
					}
					hdr = append(hdr, "IMAGE ID", "CREATED", "SIZE")
					if len(ts) > 1 {
						hdr = append(hdr, "NODE")
					}
					t := newTable(w, hdr...)
					for _, r := range rows {
						created := ""
						if r.Created > 0 {
							created = humanDuration(time.Since(time.Unix(r.Created, 0))) + " ago"
						}
						cols := []any{r.Repository, r.Tag}
						if digests {
							d := r.Digest
							if d == "" {
								d = "<none>"
							}
							cols = append(cols, d)
						}
						cols = append(cols, imageShortID(r.ID), created, humanSizeDec(r.Size))
						if len(ts) > 1 {
							cols = append(cols, r.Node)
						}
						t.Row(cols...)
					}
					return t.Flush()
				})
			}
			if err2 != nil {
				return err2
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().BoolVar(&digests, "digests", false, "show each image's manifest digest")
	// Docker hides intermediate build images unless -a; berth keeps none,
	// so every image is always listed and -a changes nothing.
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all images (berth keeps no intermediate build images, so the default already lists every image)")
	addFormatFlag(cmd)
	addNodeFlag(cmd, "node to list (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

// humanSizeDec words a size in decimal units as docker's image list does.
func humanSizeDec(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}

func newImageInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect IMAGE...",
		Short: "Show the detail of images, as JSON (one entry per node that has it)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			return inspectOnNodes(cmd, ts, args, "image", func(t nodeTarget, ref string) (*api.ImageInspect, error) {
				ii, err := t.Agent.Image(ref)
				if err == nil && ii.Node == "" {
					ii.Node = t.name()
				}
				return ii, err
			})
		},
	}
	addNodeFlag(cmd, "node to look on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

// inspectOnNodes prints, as one JSON array, what get finds for each ref on
// each target node (one entry per node that has it), and names the refs
// found nowhere on stderr with exit status 1, as docker inspect does.
func inspectOnNodes[T any](cmd *cobra.Command, ts []nodeTarget, refs []string, kind string, get func(nodeTarget, string) (T, error)) error {
	out := []T{}
	var missing []string
	for _, ref := range refs {
		found := false
		var lastErr error
		for _, t := range ts {
			v, err := get(t, ref)
			if err != nil {
				if !api.IsNotFound(err) {
					lastErr = nodeErr(ts, t, err)
				}
				continue
			}
			found = true
			out = append(out, v)
		}
		if !found {
			if lastErr == nil {
				lastErr = fmt.Errorf("no such %s: %s", kind, ref)
			}
			missing = append(missing, lastErr.Error())
		}
	}
	if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
		return err
	}
	for _, m := range missing {
		fmt.Fprintln(cmd.ErrOrStderr(), "Error:", m)
	}
	if len(missing) > 0 {
		return exitError{1}
	}
	return nil
}

// gatherFromNodes lists something on every target node, naming the node
// in each entry that lacks it. A node that fails is reported on stderr
// and counted in failed; the others still answer.
func gatherFromNodes[T any](cmd *cobra.Command, ts []nodeTarget, list func(nodeTarget) ([]T, error), node func(*T) *string) (out []T, failed bool) {
	out = []T{} // an empty list is [] in JSON, not null
	for _, t := range ts {
		items, err := list(t)
		if err != nil {
			failed = true
			fmt.Fprintln(cmd.ErrOrStderr(), "Error:", nodeErr(ts, t, err))
			continue
		}
		for i := range items {
			if n := node(&items[i]); *n == "" {
				*n = t.name()
			}
			out = append(out, items[i])
		}
	}
	return out, failed
}

func newImageRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] IMAGE...",
		Aliases: []string{"remove", "rmi"},
		Short:   "Remove images (from --node, else from every ready node that has them)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			failed := false
			for _, ref := range args {
				removed := 0
				var errs []error
				for _, t := range ts {
					r, err := t.Agent.RemoveImage(ref, force)
					if err != nil {
						if api.IsNotFound(err) && len(ts) > 1 {
							continue
						}
						errs = append(errs, nodeErr(ts, t, err))
						continue
					}
					removed++
					prefix := ""
					if len(ts) > 1 {
						prefix = t.name() + ": "
					}
					for _, line := range rmiLines(r) {
						fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", prefix, line)
					}
				}
				if removed == 0 && len(errs) == 0 {
					errs = append(errs, fmt.Errorf("no such image: %s", ref))
				}
				for _, e := range errs {
					failed = true
					fmt.Fprintln(cmd.ErrOrStderr(), "Error:", e)
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove the image even if it has several names or stopped containers use it")
	addNodeFlag(cmd, "node to remove from (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newImageTagCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Give an image another name (on --node, else on every ready node that has it)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkImageRef(args[1]); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			tagged := 0
			var errs []error
			for _, t := range ts {
				if err := t.Agent.TagImage(args[0], args[1]); err != nil {
					if api.IsNotFound(err) && len(ts) > 1 {
						continue
					}
					errs = append(errs, nodeErr(ts, t, err))
					continue
				}
				tagged++
			}
			if tagged == 0 && len(errs) == 0 {
				errs = append(errs, fmt.Errorf("no such image: %s", args[0]))
			}
			for _, e := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), "Error:", e)
			}
			if len(errs) > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	addNodeFlag(cmd, "node to tag on (default: every ready node that has the image)")
	addAddressFlag(cmd)
	return cmd
}

// rmiLines words an image removal as docker does ("Untagged: NAME",
// "Deleted: ID"), whether or not the node already prefixed its entries.
func rmiLines(r *api.ImageRemoveResponse) []string {
	var untagged, deleted []string
	for _, e := range append(append([]string{}, r.Untagged...), r.Deleted...) {
		switch {
		case strings.HasPrefix(e, "Deleted: "):
			deleted = append(deleted, e)
		case strings.HasPrefix(e, "Untagged: "):
			untagged = append(untagged, e)
		case strings.HasPrefix(e, "sha256:"):
			deleted = append(deleted, "Deleted: "+e)
		default:
			untagged = append(untagged, "Untagged: "+e)
		}
	}
	return append(untagged, deleted...)
}
