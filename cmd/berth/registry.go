package main

// Registry and archive commands: `berth pull`/`push` (also under `berth
// image`), `image save`, `image history`, `image prune`, and `berth
// login`/`logout`. Pulls and pushes run on the agents; the CLI resolves
// the user's credentials (berth's config, then docker's) and sends them
// with the request, so a node needs no login of its own.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/image"
)

func init() {
	addCommand(func() *cobra.Command {
		c := newImagePullCmd()
		c.Use = "pull [OPTIONS] NAME[:TAG|@DIGEST]"
		return c
	})
	addCommand(func() *cobra.Command {
		c := newImagePushCmd()
		c.Use = "push [OPTIONS] NAME[:TAG]"
		return c
	})
	addCommand(newLoginCmd)
	addCommand(newLogoutCmd)
}

// registrySubcommands are the `berth image` subcommands this file adds.
func registrySubcommands() []*cobra.Command {
	return []*cobra.Command{newImagePullCmd(), newImagePushCmd(), newImageSaveCmd(), newImageHistoryCmd(), newImagePruneCmd()}
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	fi, err := file.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// registryAccess resolves the credential and insecure setting the CLI
// sends with a pull or push of ref.
func registryAccess(ref string, insecure bool) (*api.RegistryAuth, bool, error) {
	full, err := image.FullName(ref)
	if err != nil {
		return nil, false, err
	}
	host := full[:strings.IndexByte(full, '/')]
	cfg, err := image.LoadClientConfig("")
	if err != nil {
		return nil, false, err
	}
	if slices.Contains(cfg.InsecureRegistries, host) {
		insecure = true
	}
	a, err := image.ResolveAuth(cfg.Keychain(), ref)
	if err != nil {
		// A broken docker credential helper must not stop a pull of a
		// public image: go on without credentials, and say so.
		fmt.Fprintf(os.Stderr, "WARNING: no credentials for %s: %v\n", host, err)
		return nil, insecure, nil
	}
	if a == nil {
		return nil, insecure, nil
	}
	return &api.RegistryAuth{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}, insecure, nil
}

// progressView shows the layers of one pull or push: redrawn in place on
// a terminal, the way docker does, or one line per change of status
// otherwise.
type progressView struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	prefix   string
	order    []string
	state    map[string]api.ImageProgress
	drawn    int
	lastDraw time.Time
}

func newProgressView(w io.Writer, tty bool, prefix string) *progressView {
	return &progressView{w: w, tty: tty, prefix: prefix, state: map[string]api.ImageProgress{}}
}

func shortLayer(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// statusWord is docker's wording of a layer's status.
func statusWord(s string) string {
	if s == "Done" {
		return "Pull complete"
	}
	return s
}

func (v *progressView) update(p api.ImageProgress) {
	if p.Layer == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	old, seen := v.state[p.Layer]
	if !seen {
		v.order = append(v.order, p.Layer)
	}
	v.state[p.Layer] = p
	if !v.tty {
		if !seen || old.Status != p.Status {
			fmt.Fprintf(v.w, "%s%s: %s\n", v.prefix, shortLayer(p.Layer), statusWord(p.Status))
		}
		return
	}
	if time.Since(v.lastDraw) < 100*time.Millisecond && seen && old.Status == p.Status {
		return
	}
	v.draw()
}

// draw rewrites the layer lines in place (the caller holds mu).
func (v *progressView) draw() {
	v.lastDraw = time.Now()
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	for _, l := range v.order {
		p := v.state[l]
		line := fmt.Sprintf("%s%s: %s", v.prefix, shortLayer(l), statusWord(p.Status))
		if (p.Status == "Downloading" || p.Status == "Pushing") && p.Total > 0 {
			line += " " + progressBar(p.Current, p.Total)
		}
		fmt.Fprintf(&b, "\x1b[2K%s\n", line)
	}
	v.drawn = len(v.order)
	io.WriteString(v.w, b.String())
}

func (v *progressView) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tty && len(v.order) > 0 {
		v.draw()
	}
}

// upToDate reports whether every layer was already there.
func (v *progressView) upToDate() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, p := range v.state {
		if p.Status != "Already exists" && p.Status != "Layer already exists" && p.Status != "Pulling fs layer" {
			return false
		}
	}
	return true
}

func progressBar(cur, total int64) string {
	const width = 40
	if cur > total {
		cur = total
	}
	n := int(cur * width / total)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("[%s] %8s/%s", bar, humanSizeDec(cur), humanSizeDec(total))
}

func newImagePullCmd() *cobra.Command {
	var platform string
	var insecure, quiet bool
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry (on --node, else on every ready node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			if _, err := image.FullName(ref); err != nil {
				return err
			}
			auth, insec, err := registryAccess(ref, insecure)
			if err != nil {
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
			req := api.ImagePullRequest{Ref: ref, Platform: platform, Insecure: insec, Auth: auth}
			ctx := cmdContext(cmd)
			out := cmd.OutOrStdout()
			tty := len(ts) == 1 && !quiet && isTerminal(out)
			full, _ := image.FullName(ref)
			var mu sync.Mutex
			failed := 0
			var wg sync.WaitGroup
			for _, t := range ts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					prefix := ""
					if len(ts) > 1 {
						prefix = t.name() + ": "
					}
					var w io.Writer = out
					if quiet {
						w = io.Discard
					}
					view := newProgressView(&lockedWriter{mu: &mu, w: w}, tty, prefix)
					im, err := t.Agent.PullImage(ctx, req, view.update)
					view.finish()
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failed++
						fmt.Fprintln(cmd.ErrOrStderr(), "Error:", nodeErr(ts, t, err))
						return
					}
					if quiet {
						fmt.Fprintf(out, "%s%s\n", prefix, full)
						return
					}
					if im.Digest != "" {
						fmt.Fprintf(out, "%sDigest: %s\n", prefix, im.Digest)
					}
					if view.upToDate() {
						fmt.Fprintf(out, "%sStatus: Image is up to date for %s\n", prefix, ref)
					} else {
						fmt.Fprintf(out, "%sStatus: Downloaded newer image for %s\n", prefix, ref)
					}
					fmt.Fprintf(out, "%s%s\n", prefix, full)
				}()
			}
			wg.Wait()
			if failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "platform to take from a multi-platform image, os/arch[/variant] (default: the node's)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP or an unverified TLS certificate (for a loopback or test registry)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image's name")
	addNodeFlag(cmd, "node to pull on (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

// lockedWriter serialises writes from several nodes' progress.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// nodeWithImages returns --node's node, or the first ready node that has
// every one of refs.
func nodeWithImages(cmd *cobra.Command, refs ...string) (nodeTarget, error) {
	c, err := apiClient(cmd)
	if err != nil {
		return nodeTarget{}, err
	}
	ts, err := targetNodes(cmd, c)
	if err != nil {
		return nodeTarget{}, err
	}
	if n, _ := cmd.Flags().GetString("node"); n != "" {
		return ts[0], nil
	}
	var lastErr error
	for _, t := range ts {
		ok := true
		for _, r := range refs {
			if _, err := t.Agent.Image(r); err != nil {
				if !api.IsNotFound(err) {
					lastErr = nodeErr(ts, t, err)
				}
				ok = false
				break
			}
		}
		if ok {
			return t, nil
		}
	}
	if lastErr != nil {
		return nodeTarget{}, lastErr
	}
	if len(refs) == 1 {
		return nodeTarget{}, fmt.Errorf("no such image: %s (no ready node has it)", refs[0])
	}
	return nodeTarget{}, fmt.Errorf("no ready node has all of %s; use --node", strings.Join(refs, ", "))
}

func newImagePushCmd() *cobra.Command {
	var insecure, quiet bool
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Push an image to the registry its name names (from --node, else from a node that has it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			if _, err := image.ParseName(ref); err != nil {
				return err
			}
			auth, insec, err := registryAccess(ref, insecure)
			if err != nil {
				return err
			}
			t, err := nodeWithImages(cmd, ref)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				out = io.Discard
			}
			full, _ := image.FullName(ref)
			fmt.Fprintf(out, "The push refers to repository [%s]\n", full[:strings.LastIndexByte(full, ':')])
			view := newProgressView(out, isTerminal(cmd.OutOrStdout()) && !quiet, "")
			err = t.Agent.PushImage(cmdContext(cmd), api.ImagePushRequest{Ref: ref, Insecure: insec, Auth: auth}, view.update)
			view.finish()
			if err != nil {
				return err
			}
			if ii, err := t.Agent.Image(ref); err == nil {
				_, tag, _ := strings.Cut(full[strings.LastIndexByte(full, '/')+1:], ":")
				fmt.Fprintf(out, "%s: digest: %s\n", tag, ii.Digest)
			}
			if quiet {
				fmt.Fprintln(cmd.OutOrStdout(), full)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP or an unverified TLS certificate (for a loopback or test registry)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the pushed name")
	addNodeFlag(cmd, "node to push from (default: the first ready node that has the image)")
	addAddressFlag(cmd)
	return cmd
}

func newImageSaveCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] IMAGE...",
		Short: "Write images to a docker-compatible tar archive (stdout unless -o)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" && isTerminal(cmd.OutOrStdout()) {
				return errors.New("refusing to write an image archive to a terminal: use -o FILE or redirect stdout")
			}
			t, err := nodeWithImages(cmd, args...)
			if err != nil {
				return err
			}
			rc, err := t.Agent.SaveImages(cmdContext(cmd), args...)
			if err != nil {
				return err
			}
			defer rc.Close()
			if output == "" {
				if _, err := io.Copy(cmd.OutOrStdout(), rc); err != nil {
					return fmt.Errorf("save: %w", err)
				}
				return nil
			}
			tmp, err := os.CreateTemp(filepath.Dir(output), ".berth-save-*.tar")
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			defer os.Remove(tmp.Name())
			if _, err := io.Copy(tmp, rc); err != nil {
				tmp.Close()
				return fmt.Errorf("save: the archive was cut short: %w", err)
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("save: %w", err)
			}
			if err := os.Chmod(tmp.Name(), 0o644); err != nil {
				return fmt.Errorf("save: %w", err)
			}
			if err := os.Rename(tmp.Name(), output); err != nil {
				return fmt.Errorf("save: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	addNodeFlag(cmd, "node to save from (default: the first ready node that has the images)")
	addAddressFlag(cmd)
	return cmd
}

func newImageHistoryCmd() *cobra.Command {
	var noTrunc, quiet bool
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show how an image was built: each step's command and layer size",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			t, err := nodeWithImages(cmd, args[0])
			if err != nil {
				return err
			}
			ii, err := t.Agent.Image(args[0])
			if err != nil {
				return err
			}
			hist, err := t.Agent.ImageHistory(args[0])
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(cmd.OutOrStdout(), imageShortID(ii.ID))
				return nil
			}
			return render(cmd, hist, func(w io.Writer) error {
				tb := newTable(w, "IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")
				for i, h := range hist {
					id := "<missing>"
					if i == 0 {
						id = imageShortID(ii.ID)
						if noTrunc {
							id = ii.ID
						}
					}
					created := ""
					if h.Created > 0 {
						created = humanDuration(time.Since(time.Unix(h.Created, 0))) + " ago"
					}
					by := strings.Join(strings.Fields(h.CreatedBy), " ")
					if !noTrunc && len(by) > 45 {
						by = by[:44] + "…"
					}
					tb.Row(id, created, by, humanSizeDec(h.Size), h.Comment)
				}
				return tb.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not shorten the output")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show the image ID")
	addFormatFlag(cmd)
	addNodeFlag(cmd, "node to look on (default: the first ready node that has the image)")
	addAddressFlag(cmd)
	return cmd
}

func newImagePruneCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "prune [-a]",
		Short: "Remove images no container uses: dangling ones, or all with -a (on --node, else on every ready node)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ts, err := targetNodes(cmd, c)
			if err != nil {
				return err
			}
			var total int64
			failed := false
			out := cmd.OutOrStdout()
			for _, t := range ts {
				rep, err := t.Agent.PruneImages(all)
				if err != nil {
					failed = true
					fmt.Fprintln(cmd.ErrOrStderr(), "Error:", nodeErr(ts, t, err))
					continue
				}
				prefix := ""
				if len(ts) > 1 {
					prefix = t.name() + ": "
				}
				sort.Strings(rep.Images)
				if len(rep.Images) > 0 {
					fmt.Fprintf(out, "%sDeleted Images:\n", prefix)
				}
				for _, id := range rep.Images {
					fmt.Fprintf(out, "%sdeleted: %s\n", prefix, id)
				}
				total += rep.SpaceReclaimed
			}
			fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSizeDec(total))
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every image no container uses, not only dangling ones")
	cmd.Flags().BoolP("force", "f", false, "do not prompt (berth never prompts; accepted for docker compatibility)")
	addNodeFlag(cmd, "node to prune (default: every ready node)")
	addAddressFlag(cmd)
	return cmd
}

func newLoginCmd() *cobra.Command {
	var user, password string
	var passwordStdin, insecure, cluster bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry (default Docker Hub), or with --cluster to a berth cluster (an ACL token); kept in berth's config, mode 0600",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			host := image.RegistryKey(server)
			if cluster { // acl.go: the token comes as the password
				if !passwordStdin && password == "" {
					return errors.New("login --cluster: give the token with --password-stdin (echo \"$TOKEN\" | berth login --cluster --password-stdin [SERVER])")
				}
				if passwordStdin {
					b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
					if err != nil {
						return fmt.Errorf("login --cluster: read the token from stdin: %w", err)
					}
					password = strings.TrimSpace(string(b))
				}
				server = ""
				if len(args) == 1 {
					server = args[0]
				}
				return clusterLogin(cmd, server, password)
			}
			if user == "" {
				return errors.New("login: give the user name with -u USER (and the password with --password-stdin)")
			}
			switch {
			case passwordStdin && password != "":
				return errors.New("login: --password and --password-stdin are exclusive")
			case passwordStdin:
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
				if err != nil {
					return fmt.Errorf("login: read the password from stdin: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			case password != "":
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
			default:
				return errors.New("login: give the password with --password-stdin (echo \"$TOKEN\" | berth login -u USER --password-stdin)")
			}
			if password == "" {
				return errors.New("login: the password is empty")
			}
			cfg, err := image.LoadClientConfig("")
			if err != nil {
				return err
			}
			opts := image.RemoteOptions{Insecure: insecure, InsecureRegistries: cfg.InsecureRegistries}
			ctx, cancel := context.WithTimeout(cmdContext(cmd), time.Minute)
			defer cancel()
			a := image.Auth{Username: user, Password: password}
			if err := image.CheckLogin(ctx, host, a, opts); err != nil {
				return err
			}
			cfg.SetLogin(host, a)
			if err := cfg.Save(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().StringVarP(&password, "password", "p", "", "password (prefer --password-stdin)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP or an unverified TLS certificate")
	cmd.Flags().BoolVar(&cluster, "cluster", false, "store an ACL token for a berth server (SERVER, default $BERTH_ADDR) instead of a registry login")
	return cmd
}

func newLogoutCmd() *cobra.Command {
	var cluster bool
	cmd := &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Forget the credential berth keeps for a registry (default Docker Hub)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cluster { // acl.go
				server := ""
				if len(args) == 1 {
					server = args[0]
				}
				return clusterLogout(cmd, server)
			}
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			host := image.RegistryKey(server)
			cfg, err := image.LoadClientConfig("")
			if err != nil {
				return err
			}
			if !cfg.RemoveLogin(host) {
				fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s\n", host)
				return nil
			}
			if err := cfg.Save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", host)
			return nil
		},
	}
	cmd.Flags().BoolVar(&cluster, "cluster", false, "forget the ACL token stored for a berth server (SERVER, default $BERTH_ADDR)")
	return cmd
}
