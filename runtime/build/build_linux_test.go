//go:build linux

package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/image"
	"github.com/berth-dev/berth/runtime/reexec"
)

func TestMain(m *testing.M) {
	if reexec.Run() {
		return
	}
	os.Exit(m.Run())
}

// fixture is a store with busybox imported and a builder over it.
type fixture struct {
	store *image.Store
	b     *Builder
	dir   string
}

func newFixture(t *testing.T) *fixture { return newBenchFixture(t) }

func newBenchFixture(t testing.TB) *fixture {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	s, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(testutil.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := s.Import(context.Background(), f, "busybox"); err != nil {
		t.Fatal(err)
	}
	b, err := New(s, filepath.Join(dir, "build"))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: s, b: b, dir: dir}
}

// writeContext lays files (name → content) into a new context dir.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// record collects a build's events.
type record struct {
	events []Event
	out    bytes.Buffer
}

func (r *record) fn(e Event) {
	r.events = append(r.events, e)
	if e.Kind == EventOutput {
		r.out.WriteString(e.Output)
	}
}

// cachedSteps lists the steps that came from the cache.
func (r *record) cachedSteps() []int {
	var out []int
	for _, e := range r.events {
		if e.Kind == EventCached {
			out = append(out, e.Step)
		}
	}
	return out
}

func (fx *fixture) build(t *testing.T, opts Options) (*Result, *record, error) {
	t.Helper()
	rec := &record{}
	opts.Progress = rec.fn
	res, err := fx.b.Build(context.Background(), opts)
	return res, rec, err
}

// readFile reads a file of a built image through its layers.
func (fx *fixture) readFile(t *testing.T, id, p string) (string, error) {
	t.Helper()
	root, release, err := fx.b.mountImage(id)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	b, err := os.ReadFile(filepath.Join(root, p))
	return string(b), err
}

const appDockerfile = `# an app on busybox
FROM busybox AS base
ARG GREETING=hello
ENV APP_HOME=/usr/src/app
WORKDIR $APP_HOME
COPY conf.txt ./
RUN echo "$GREETING from RUN" > greeting && rm /bin/vi && cat conf.txt
COPY src/ ./src/
RUN ls src > listing
USER 1000:1000
EXPOSE 8080
LABEL org.example.name=app
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --retries=2 CMD test -f /usr/src/app/greeting
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting"]
`

func TestBuildCacheAndConfig(t *testing.T) {
	fx := newFixture(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": appDockerfile,
		"conf.txt":   "conf v1\n",
		"src/a.txt":  "a\n",
		"src/b.txt":  "b\n",
	})
	res, rec, err := fx.build(t, Options{ContextDir: ctxDir, Tags: []string{"app:v1", "app:latest"}, BuildArgs: map[string]string{"GREETING": "hi"}})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, rec.out.String())
	}
	if res.Steps != 15 || res.Cached != 0 {
		t.Fatalf("first build: %d steps, %d cached", res.Steps, res.Cached)
	}
	if !strings.Contains(rec.out.String(), "conf v1") {
		t.Fatalf("RUN output not streamed: %q", rec.out.String())
	}
	img := res.Image
	if !slices.Equal(img.Names, []string{"app:latest", "app:v1"}) {
		t.Fatalf("names %v", img.Names)
	}
	if got, err := fx.readFile(t, img.ID, "usr/src/app/greeting"); err != nil || got != "hi from RUN\n" {
		t.Fatalf("greeting: %q %v", got, err)
	}
	if got, _ := fx.readFile(t, img.ID, "usr/src/app/listing"); got != "a.txt\nb.txt\n" {
		t.Fatalf("listing: %q", got)
	}
	if _, err := fx.readFile(t, img.ID, "bin/vi"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rm /bin/vi in RUN did not reach the image: %v", err)
	}
	if _, err := fx.readFile(t, img.ID, "bin/ls"); err != nil {
		t.Fatalf("the whiteout removed more than /bin/vi: %v", err)
	}
	// busybox + COPY + RUN + COPY + RUN: four layers on the base.
	if len(img.Layers) != 5 {
		t.Fatalf("%d layers, want 5", len(img.Layers))
	}
	cfg, err := fx.store.ConfigFile(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if c.WorkingDir != "/usr/src/app" || c.User != "1000:1000" || c.StopSignal != "SIGQUIT" ||
		!slices.Equal(c.Entrypoint, []string{"/bin/sh", "-c"}) || !slices.Equal(c.Cmd, []string{"cat greeting"}) ||
		c.Labels["org.example.name"] != "app" || !slices.Contains(c.Env, "APP_HOME=/usr/src/app") {
		t.Fatalf("config %+v", c)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Fatalf("exposed ports %v", c.ExposedPorts)
	}
	if c.Healthcheck == nil || !slices.Equal(c.Healthcheck.Test, []string{"CMD-SHELL", "test -f /usr/src/app/greeting"}) ||
		c.Healthcheck.Interval.Seconds() != 5 || c.Healthcheck.Retries != 2 {
		t.Fatalf("healthcheck %+v", c.Healthcheck)
	}
	if slices.ContainsFunc(c.Env, func(s string) bool { return strings.HasPrefix(s, "GREETING=") }) {
		t.Fatal("a build arg leaked into the image's Env")
	}
	var created []string
	for _, h := range cfg.History {
		created = append(created, h.CreatedBy)
	}
	if !slices.Contains(created, "COPY conf.txt ./ # buildkit") || !slices.Contains(created, "WORKDIR /usr/src/app") {
		t.Fatalf("history %q", created)
	}

	// Everything again: every step but the FROM and ARG comes from the cache.
	res2, rec2, err := fx.build(t, Options{ContextDir: ctxDir, Tags: []string{"app:v2"}, BuildArgs: map[string]string{"GREETING": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Image.ID != img.ID || res2.Cached != 13 || rec2.out.Len() != 0 {
		t.Fatalf("rebuild: id %s (want %s), %d cached, output %q", res2.Image.ID, img.ID, res2.Cached, rec2.out.String())
	}

	// One source file changes: its COPY (step 7) and everything after
	// run again; steps 3-6 (ENV, WORKDIR, COPY, RUN) are still cached.
	if err := os.WriteFile(filepath.Join(ctxDir, "src/b.txt"), []byte("b2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res3, rec3, err := fx.build(t, Options{ContextDir: ctxDir, BuildArgs: map[string]string{"GREETING": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec3.cachedSteps(); !slices.Equal(got, []int{3, 4, 5, 6}) {
		t.Fatalf("after editing src/b.txt, cached steps %v, want [3 4 5 6]", got)
	}
	if res3.Image.ID == img.ID {
		t.Fatal("the edited build made the same image")
	}
	if got, _ := fx.readFile(t, res3.Image.ID, "usr/src/app/src/b.txt"); got != "b2\n" {
		t.Fatalf("edited file in the image: %q", got)
	}
	// A different build arg misses from the first RUN on.
	_, rec4, err := fx.build(t, Options{ContextDir: ctxDir, BuildArgs: map[string]string{"GREETING": "yo"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec4.cachedSteps(); !slices.Equal(got, []int{3, 4, 5}) {
		t.Fatalf("with another build arg, cached steps %v, want [3 4 5]", got)
	}
	// --no-cache runs everything.
	res5, _, err := fx.build(t, Options{ContextDir: ctxDir, NoCache: true, BuildArgs: map[string]string{"GREETING": "hi"}})
	if err != nil || res5.Cached != 0 {
		t.Fatalf("--no-cache: %+v %v", res5, err)
	}

	// The cache survives a new builder and store (an agent restart), and
	// PruneBuildCache empties it.
	s2, err := image.Open(filepath.Join(fx.dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := New(s2, filepath.Join(fx.dir, "build"))
	if err != nil {
		t.Fatal(err)
	}
	fx2 := &fixture{store: s2, b: b2, dir: fx.dir}
	if res, _, err := fx2.build(t, Options{ContextDir: ctxDir, BuildArgs: map[string]string{"GREETING": "hi"}}); err != nil || res.Cached != 13 {
		t.Fatalf("after a restart: %+v %v", res, err)
	}
	if _, err := s2.PruneBuildCache(nil); err != nil {
		t.Fatal(err)
	}
	if res, _, err := fx2.build(t, Options{ContextDir: ctxDir, BuildArgs: map[string]string{"GREETING": "hi"}}); err != nil || res.Cached != 0 {
		t.Fatalf("after pruning the cache: %+v %v", res, err)
	}
}

func TestBuildFailingRun(t *testing.T) {
	fx := newFixture(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo one\nRUN for i in 1 2 3 4 5; do echo line$i; done; exit 3\nRUN echo never\n",
	})
	_, rec, err := fx.build(t, Options{ContextDir: ctxDir, Tags: []string{"broken"}})
	var se *StepError
	if !errors.As(err, &se) || !errors.Is(err, ErrStepFailed) {
		t.Fatalf("want a StepError, got %v", err)
	}
	if se.ExitCode != 3 || se.Step != 3 || se.Total != 4 || !slices.Equal(se.Tail, []string{"line1", "line2", "line3", "line4", "line5"}) {
		t.Fatalf("step error %+v", se)
	}
	if strings.Contains(rec.out.String(), "never") {
		t.Fatal("a step after the failure ran")
	}
	if _, err := fx.store.Get("broken"); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("a failed build tagged an image: %v", err)
	}
	// A missing program is exit code 127, as in docker.
	ctx2 := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN [\"/nonexistent\"]\n"})
	if _, _, err := fx.build(t, Options{ContextDir: ctx2}); !errors.As(err, &se) || se.ExitCode != 127 {
		t.Fatalf("missing program: %v", err)
	}
	// Nothing is left behind: no container, no scratch files.
	if ents, _ := os.ReadDir(fx.b.ctrRoot); len(ents) > 1 {
		t.Fatalf("build containers left: %v", ents)
	}
}

func TestBuildMultiStageScratchAndIgnore(t *testing.T) {
	fx := newFixture(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": `ARG BASE=busybox
FROM ${BASE} AS build
WORKDIR /out
COPY . /src/
RUN cp /bin/busybox /out/tool && ls -a /src > /out/ctx
FROM scratch
COPY --from=build /out/ /app/
COPY keep.txt /
ENTRYPOINT ["/app/tool"]
CMD ["echo", "from scratch"]
FROM busybox AS unused
RUN exit 1
`,
		".dockerignore": "*.log\nsecret/\n!secret/ok.txt\n**/*.tmp\n",
		"keep.txt":      "keep\n",
		"debug.log":     "no\n",
		"secret/key":    "no\n",
		"secret/ok.txt": "yes\n",
		"deep/x.tmp":    "no\n",
		"deep/y.txt":    "yes\n",
	})
	res, rec, err := fx.build(t, Options{ContextDir: ctxDir, Target: "1", Tags: []string{"tool"}})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, rec.out.String())
	}
	img := res.Image
	if len(img.Layers) != 2 {
		t.Fatalf("scratch image has %d layers, want 2", len(img.Layers))
	}
	ctxList, err := fx.readFile(t, img.ID, "app/ctx")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keep.txt", "secret", "deep", "Dockerfile", ".dockerignore"} {
		if !strings.Contains(ctxList, want+"\n") {
			t.Errorf("context in the image lacks %s: %q", want, ctxList)
		}
	}
	if strings.Contains(ctxList, "debug.log") {
		t.Errorf(".dockerignore'd file copied: %q", ctxList)
	}
	// secret/ is excluded but secret/ok.txt is let back in; deep/x.tmp is
	// excluded by **.
	root, release, err := fx.b.mountImage(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := os.Stat(filepath.Join(root, "app/tool")); err != nil {
		t.Fatalf("COPY --from: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the scratch image has the build stage's files: %v", err)
	}
	cfg, _ := fx.store.ConfigFile(img.ID)
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/app/tool"}) || !slices.Contains(cfg.Config.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") {
		t.Fatalf("scratch config %+v", cfg.Config)
	}

	// What the build stage saw of the context.
	srcRes, _, err := fx.build(t, Options{ContextDir: ctxDir, Target: "build"})
	if err != nil {
		t.Fatal(err)
	}
	sroot, srelease, err := fx.b.mountImage(srcRes.Image.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer srelease()
	for p, want := range map[string]bool{"src/secret/ok.txt": true, "src/secret/key": false, "src/deep/y.txt": true, "src/deep/x.tmp": false, "src/debug.log": false} {
		_, err := os.Stat(filepath.Join(sroot, p))
		if (err == nil) != want {
			t.Errorf("%s in the image: %v, want %v", p, err == nil, want)
		}
	}
	// COPY of an ignored file fails clearly.
	bad := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY debug.log /\n", ".dockerignore": "*.log\n", "debug.log": "x"})
	if _, _, err := fx.build(t, Options{ContextDir: bad}); !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("COPY of an ignored file: %v", err)
	}
}

func TestBuildCopyAddForms(t *testing.T) {
	fx := newFixture(t)
	// A gzip tar for ADD to unpack.
	var tgz bytes.Buffer
	{
		gz := gzip.NewWriter(&tgz)
		tw := tar.NewWriter(gz)
		for _, e := range []struct{ name, body string }{{"pkg/", ""}, {"pkg/lib.txt", "lib\n"}, {"pkg/bin/tool", "#!/bin/sh\necho tool\n"}} {
			hdr := &tar.Header{Name: e.name, Mode: 0o755, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
			if strings.HasSuffix(e.name, "/") {
				hdr.Typeflag, hdr.Size = tar.TypeDir, 0
			}
			tw.WriteHeader(hdr)
			tw.Write([]byte(e.body))
		}
		tw.Close()
		gz.Close()
	}
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": `FROM busybox
COPY *.conf /etc/app/
COPY --chown=app:app one.conf /home/app/owned.conf
COPY --chown=1234 --chmod=600 one.conf /numeric.conf
ADD pkg.tgz /opt/
ADD one.conf /opt/plain.conf
RUN chmod 1777 /tmp
COPY one.conf /tmp/x/
VOLUME /data
EXPOSE 80 53/udp
RUN stat -c '%u:%g %a' /home/app/owned.conf /numeric.conf /tmp /tmp/x && cat /opt/pkg/lib.txt
`,
		"one.conf": "1\n",
		"two.conf": "2\n",
		"pkg.tgz":  tgz.String(),
	})
	res, rec, err := fx.build(t, Options{ContextDir: ctxDir})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, rec.out.String())
	}
	if got := rec.out.String(); got != "1000:1000 644\n1234:1234 600\n0:0 1777\n0:0 755\nlib\n" {
		t.Fatalf("owners and modes seen by RUN: %q", got)
	}
	for p, want := range map[string]string{"etc/app/one.conf": "1\n", "etc/app/two.conf": "2\n", "opt/pkg/bin/tool": "#!/bin/sh\necho tool\n", "opt/plain.conf": "1\n"} {
		if got, err := fx.readFile(t, res.Image.ID, p); err != nil || got != want {
			t.Errorf("%s: %q %v", p, got, err)
		}
	}
	cfg, _ := fx.store.ConfigFile(res.Image.ID)
	if _, ok := cfg.Config.Volumes["/data"]; !ok {
		t.Errorf("volumes %v", cfg.Config.Volumes)
	}
	if _, ok := cfg.Config.ExposedPorts["53/udp"]; !ok {
		t.Errorf("ports %v", cfg.Config.ExposedPorts)
	}
	// A source outside the context is refused.
	out := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY ../etc/passwd /\n"})
	if _, _, err := fx.build(t, Options{ContextDir: out}); !errors.Is(err, ErrSource) {
		t.Fatalf("COPY ../: %v", err)
	}
}

func TestBuildNetworkNone(t *testing.T) {
	fx := newFixture(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN ls /sys/class/net | sort | tr '\\n' ' '\n"})
	_, rec, err := fx.build(t, Options{ContextDir: ctxDir, Network: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(rec.out.String()); got != "lo" {
		t.Fatalf("--network none: interfaces %q, want lo only", got)
	}
	_, rec, err = fx.build(t, Options{ContextDir: ctxDir, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(rec.out.String()); got == "lo" {
		t.Fatalf("host network: interfaces %q, want the host's", got)
	}
	// RUN --network=none overrides the build's host network.
	flagCtx := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN --network=none ls /sys/class/net | sort | tr '\\n' ' '\n"})
	_, rec, err = fx.build(t, Options{ContextDir: flagCtx})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(rec.out.String()); got != "lo" {
		t.Fatalf("RUN --network=none: interfaces %q, want lo only", got)
	}
	if _, _, err := fx.build(t, Options{ContextDir: ctxDir, Network: "bridge"}); !errors.Is(err, ErrOptions) {
		t.Fatalf("bad network: %v", err)
	}
	if _, _, err := fx.build(t, Options{ContextDir: ctxDir, Platform: "linux/s390x"}); !errors.Is(err, ErrOptions) {
		t.Fatalf("foreign platform: %v", err)
	}
}

func TestBuildOnBuildTriggers(t *testing.T) {
	fx := newFixture(t)
	base := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nONBUILD COPY app.txt /app/\nONBUILD RUN echo triggered > /app/t\n"})
	if _, _, err := fx.build(t, Options{ContextDir: base, Tags: []string{"onbuild-base"}}); err != nil {
		t.Fatal(err)
	}
	child := writeContext(t, map[string]string{"Dockerfile": "FROM onbuild-base\nRUN cat /app/t /app/app.txt\n", "app.txt": "child file\n"})
	res, rec, err := fx.build(t, Options{ContextDir: child})
	if err != nil {
		t.Fatalf("child: %v\n%s", err, rec.out.String())
	}
	if got := rec.out.String(); got != "triggered\nchild file\n" || res.Steps != 4 {
		t.Fatalf("triggers: output %q, %d steps", got, res.Steps)
	}
	cfg, _ := fx.store.ConfigFile(res.Image.ID)
	if len(cfg.Config.OnBuild) != 0 {
		t.Fatalf("the child inherited the triggers: %q", cfg.Config.OnBuild)
	}
	bad := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nONBUILD FROM x\n"})
	if _, _, err := fx.build(t, Options{ContextDir: bad}); !errors.Is(err, ErrDockerfile) {
		t.Fatalf("ONBUILD FROM: %v", err)
	}
}

func TestBuildLabelsAreCached(t *testing.T) {
	fx := newFixture(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nLABEL a=b\n"})
	opts := Options{ContextDir: ctxDir, Labels: map[string]string{"built.by": "berth"}}
	r1, _, err := fx.build(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := fx.build(t, opts)
	if err != nil || r2.Image.ID != r1.Image.ID || r2.Cached != 2 {
		t.Fatalf("rebuild with --label: %+v %v (first %s)", r2, err, r1.Image.ID)
	}
	// The untagged result is listed (dangling), its steps are not.
	list, _ := fx.store.List()
	if len(list) != 2 || (list[0].ID != r1.Image.ID && list[1].ID != r1.Image.ID) {
		t.Fatalf("image list after an untagged build: %d images", len(list))
	}
	cfg, _ := fx.store.ConfigFile(r1.Image.ID)
	if cfg.Config.Labels["a"] != "b" || cfg.Config.Labels["built.by"] != "berth" {
		t.Fatalf("labels %v", cfg.Config.Labels)
	}
	// FROM scratch alone makes an empty image, the same each time.
	empty := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	e1, _, err := fx.build(t, Options{ContextDir: empty})
	if err != nil {
		t.Fatal(err)
	}
	e2, _, err := fx.build(t, Options{ContextDir: empty})
	if err != nil || e1.Image.ID != e2.Image.ID || len(e1.Image.Layers) != 0 {
		t.Fatalf("FROM scratch: %+v %+v %v", e1.Image, e2.Image, err)
	}
}

func TestBuildConcurrent(t *testing.T) {
	fx := newFixture(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nCOPY f /f\nRUN cat /f > /g\nCMD [\"cat\", \"/g\"]\n",
		"f":          "same\n",
	})
	errs := make(chan error, 3)
	ids := make(chan string, 3)
	for i := 0; i < 3; i++ {
		go func(i int) {
			res, err := fx.b.Build(context.Background(), Options{ContextDir: ctxDir, Tags: []string{"par:" + string(rune('a'+i))}})
			if err == nil {
				ids <- res.Image.ID
			}
			errs <- err
		}(i)
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(ids)
	for id := range ids {
		if got, err := fx.readFile(t, id, "g"); err != nil || got != "same\n" {
			t.Fatalf("image %s: %q %v", id, got, err)
		}
	}
	// Afterwards the cache answers for everything.
	res, _, err := fx.build(t, Options{ContextDir: ctxDir})
	if err != nil || res.Cached != 3 {
		t.Fatalf("after concurrent builds: %+v %v", res, err)
	}
}

func TestBuildPullsBaseImage(t *testing.T) {
	testutil.RequireRegistry(t)
	fx := newFixture(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	ref := reg.Host + "/lib/busybox:1"
	if err := fx.store.Tag("busybox", ref); err != nil {
		t.Fatal(err)
	}
	remote := image.RemoteOptions{InsecureRegistries: []string{reg.Host}}
	if err := fx.store.Push(context.Background(), ref, image.PushOptions{RemoteOptions: remote}); err != nil {
		t.Fatal(err)
	}
	// A fresh store without the image: FROM and COPY --from pull it.
	s2, err := image.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := New(s2, filepath.Join(t.TempDir(), "build"))
	if err != nil {
		t.Fatal(err)
	}
	fx2 := &fixture{store: s2, b: b2}
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM " + ref + "\nRUN echo on pulled base\nFROM scratch\nCOPY --from=" + ref + " /bin/busybox /busybox\n"})
	res, rec, err := fx2.build(t, Options{ContextDir: ctxDir, Pull: image.PullOptions{RemoteOptions: remote}, Target: "0"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, rec.out.String())
	}
	if out := rec.out.String(); !strings.Contains(out, "pulling "+ref) || !strings.Contains(out, "on pulled base") {
		t.Fatalf("output %q", out)
	}
	if _, err := s2.Get(ref); err != nil || res.Image == nil {
		t.Fatalf("pulled base not stored: %v", err)
	}
	res, _, err = fx2.build(t, Options{ContextDir: ctxDir, Pull: image.PullOptions{RemoteOptions: remote}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx2.readFile(t, res.Image.ID, "busybox"); err != nil {
		t.Fatalf("COPY --from an image: %v", err)
	}
}

func TestBuildRunSpecialFiles(t *testing.T) {
	fx := newFixture(t)
	// A FIFO made by RUN is kept, and a hardlink stays one.
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN mkfifo /fifo && echo data > /a && ln /a /b\n"})
	res, rec, err := fx.build(t, Options{ContextDir: ctxDir, Network: "none"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, rec.out.String())
	}
	root, release, err := fx.b.mountImage(res.Image.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	fi, err := os.Lstat(filepath.Join(root, "fifo"))
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("fifo: %v %v", fi, err)
	}
	a, _ := os.Stat(filepath.Join(root, "a"))
	b, _ := os.Stat(filepath.Join(root, "b"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Fatalf("hardlink /a /b lost")
	}
}

func TestBuildManyLayers(t *testing.T) {
	fx := newFixture(t)
	// More layers than absolute lowerdir paths fit in one page of mount
	// options: COPY still mounts the image to resolve its destination,
	// and a RUN's container still starts on them.
	var df strings.Builder
	df.WriteString("FROM busybox\n")
	files := map[string]string{}
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&df, "COPY f%d /d/\n", i)
		files[fmt.Sprintf("f%d", i)] = fmt.Sprint(i)
	}
	df.WriteString("RUN cat /d/f0 /d/f39 > /d/both\n")
	files["Dockerfile"] = df.String()
	res, _, err := fx.build(t, Options{ContextDir: writeContext(t, files)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Image.Layers) != 42 {
		t.Fatalf("%d layers", len(res.Image.Layers))
	}
	if got, err := fx.readFile(t, res.Image.ID, "d/f0"); err != nil || got != "0" {
		t.Fatalf("first file through 42 layers: %q %v", got, err)
	}
	if got, err := fx.readFile(t, res.Image.ID, "d/both"); err != nil || got != "039" {
		t.Fatalf("RUN on 41 layers wrote %q %v", got, err)
	}
}
