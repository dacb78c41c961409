package main

// `berth image build` (alias `berth build`): the context directory is
// sent as a tar (with .dockerignore applied here, as docker does) to one
// node's agent, which builds the image into its store and streams the
// steps back. With --push the node pushes the tags, so every node can
// pull the image.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/build"
)

func init() {
	addCommand(func() *cobra.Command {
		c := newImageBuildCmd()
		c.Use = "build [OPTIONS] PATH"
		return c
	})
}

// maxDockerfile bounds the Dockerfile sent with the request.
const maxDockerfile = 256 << 10

func newImageBuildCmd() *cobra.Command {
	var (
		tags, buildArgs, labels                   []string
		file, target, network, platform, nodeFlag string
		noCache, push, insecure, quiet            bool
	)
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH",
		Short: "Build an image from a Dockerfile on one node (--node; with one node it is implied)",
		Long: `Build an image from a Dockerfile and a context directory, as docker build does.

The context (PATH, minus what .dockerignore excludes) is uploaded to one
node, which runs the build there: RUN steps run in berth containers of the
image built so far, each step's result is cached on that node, and the
final image is stored there under every -t name. --push then pushes the
names to their registry so that other nodes can pull the image.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctxDir := args[0]
			if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
				return fmt.Errorf("build context %q is not a directory", ctxDir)
			}
			req := api.BuildRequest{Tags: tags, Target: target, NoCache: noCache, Network: network,
				Platform: platform, Push: push, Insecure: insecure}
			var err error
			if req.BuildArgs, err = keyValues(buildArgs, "--build-arg", true); err != nil {
				return err
			}
			if req.Labels, err = keyValues(labels, "--label", false); err != nil {
				return err
			}
			if push && len(tags) == 0 {
				return errors.New("--push needs a name: -t REGISTRY/NAME[:TAG]")
			}
			if push {
				auth, insec, err := registryAccess(tags[0], insecure)
				if err != nil {
					return err
				}
				req.Auth, req.Insecure = auth, insec
			}
			dfRel, err := dockerfileFor(ctxDir, file, &req)
			if err != nil {
				return err
			}
			t, err := buildNode(cmd, nodeFlag)
			if err != nil {
				return err
			}
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(build.ContextTar(ctxDir, dfRel, pw)) }()
			defer pr.Close()

			out := cmd.OutOrStdout()
			if quiet {
				out = io.Discard
			}
			v := &buildView{out: out}
			start := time.Now()
			res, err := t.Agent.Build(cmdContext(cmd), req, pr, v.event)
			v.flush()
			if err != nil {
				var be *api.BuildError
				if errors.As(err, &be) {
					fmt.Fprintln(cmd.ErrOrStderr(), "ERROR:", be.Message)
					if be.ExitCode > 0 {
						return exitError{be.ExitCode}
					}
					return exitError{1}
				}
				return err
			}
			if quiet {
				fmt.Fprintln(cmd.OutOrStdout(), res.Image.ID)
				return nil
			}
			fmt.Fprintf(out, "Successfully built %s on %s in %.2fs (%d of %d steps cached)\n",
				imageShortID(res.Image.ID), t.name(), time.Since(start).Seconds(), res.Cached, v.total)
			for _, tag := range tags {
				fmt.Fprintln(out, "Successfully tagged", tag)
			}
			for _, p := range res.Pushed {
				fmt.Fprintln(out, "Pushed", p)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&tags, "tag", "t", nil, "name the image NAME[:TAG] (repeatable)")
	f.StringVarP(&file, "file", "f", "", "the Dockerfile (default PATH/Dockerfile; - reads stdin)")
	f.StringVar(&target, "target", "", "build this stage (default: the last)")
	f.BoolVar(&noCache, "no-cache", false, "run every step again")
	f.StringArrayVar(&buildArgs, "build-arg", nil, "set an ARG: KEY=VALUE, or KEY to take $KEY (repeatable)")
	f.StringArrayVar(&labels, "label", nil, "add a label KEY=VALUE to the image (repeatable)")
	f.StringVar(&network, "network", "host", "network of RUN steps: host or none")
	f.StringVar(&platform, "platform", "", "target platform; only the node's own (linux/ARCH) is supported")
	f.StringVar(&nodeFlag, "node", "", "node to build on (default: the only ready node)")
	f.BoolVar(&push, "push", false, "push every -t name to its registry after the build")
	f.BoolVar(&insecure, "insecure", false, "allow plain HTTP to the registry (for a loopback or test registry)")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the image ID")
	addAddressFlag(cmd)
	return cmd
}

// keyValues parses KEY=VALUE flags; with fromEnv a bare KEY takes $KEY
// (and is left out when unset), as docker's --build-arg does.
func keyValues(in []string, flag string, fromEnv bool) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		if !ok {
			if !fromEnv {
				return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
			}
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		out[k] = v
	}
	return out, nil
}

// dockerfileFor reads the Dockerfile into req and returns its path
// inside the context ("" when it is outside), so that the context tar
// always carries it.
func dockerfileFor(ctxDir, file string, req *api.BuildRequest) (string, error) {
	var data []byte
	var err error
	switch file {
	case "":
		file = filepath.Join(ctxDir, "Dockerfile")
		data, err = os.ReadFile(file)
	case "-":
		data, err = io.ReadAll(io.LimitReader(os.Stdin, maxDockerfile+1))
	default:
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("read the Dockerfile: %w", err)
	}
	if len(data) > maxDockerfile {
		return "", fmt.Errorf("the Dockerfile is larger than %d KiB", maxDockerfile>>10)
	}
	req.DockerfileContent = string(data)
	if file == "-" {
		return "", nil
	}
	absCtx, err1 := filepath.Abs(ctxDir)
	absFile, err2 := filepath.Abs(file)
	if err1 != nil || err2 != nil {
		return "", nil
	}
	rel, err := filepath.Rel(absCtx, absFile)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", nil
	}
	req.Dockerfile = filepath.ToSlash(rel)
	return req.Dockerfile, nil
}

// buildNode is --node's node, or the only ready one.
func buildNode(cmd *cobra.Command, node string) (nodeTarget, error) {
	c, err := apiClient(cmd)
	if err != nil {
		return nodeTarget{}, err
	}
	ts, err := targetNodes(cmd, c)
	if err != nil {
		return nodeTarget{}, err
	}
	if node == "" && len(ts) > 1 {
		names := make([]string, 0, len(ts))
		for _, t := range ts {
			names = append(names, t.name())
		}
		return nodeTarget{}, fmt.Errorf("several nodes are ready (%s): pick one with --node, and --push to share the image", strings.Join(names, ", "))
	}
	return ts[0], nil
}

// buildView prints a build's events: "[2/6] RUN …", the command's
// output as it comes, "CACHED" for reused steps and each step's time.
type buildView struct {
	out     io.Writer
	pending string // a step line not printed yet
	cached  bool   // the current step was reused
	total   int
}

func (v *buildView) event(e api.BuildEvent) {
	if e.Total > 0 {
		v.total = e.Total
	}
	tag := fmt.Sprintf("[%d/%d]", e.Step, e.Total)
	switch e.Kind {
	case api.BuildStep:
		v.flush()
		v.pending = tag + " " + e.Instruction
	case api.BuildCached:
		if v.pending != "" {
			fmt.Fprintf(v.out, "%s CACHED %s\n", tag, strings.TrimPrefix(v.pending, tag+" "))
			v.pending = ""
		}
		v.cached = true
	case api.BuildOutput:
		v.flush()
		io.WriteString(v.out, e.Output)
	case api.BuildDone:
		if v.cached {
			v.cached = false
			return
		}
		if v.pending != "" {
			fmt.Fprintf(v.out, "%s %.2fs\n", v.pending, e.DurationMS/1000)
			v.pending = ""
			return
		}
		fmt.Fprintf(v.out, "%s DONE %.2fs\n", tag, e.DurationMS/1000)
	case api.BuildPush:
		v.flush()
		if e.Layer != "" {
			fmt.Fprintf(v.out, "%s: %s\n", shortLayer(e.Layer), e.Status)
		} else {
			fmt.Fprintln(v.out, e.Status)
		}
	}
}

func (v *buildView) flush() {
	if v.pending != "" {
		fmt.Fprintln(v.out, v.pending)
		v.pending = ""
	}
}
