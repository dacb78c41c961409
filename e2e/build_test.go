//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
)

// Dockerfile builds through `berth image build` against `berth dev`: what a
// user types and sees.

// buildContext writes files (name → content) into a new directory.
func buildContext(t testing.TB, files map[string]string) string {
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

// repoRoot is the repository root (scripts/ lives there).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// pythonBase makes (or takes from the cache) the debootstrap bookworm +
// python3 rootfs tarball.
func pythonBase(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("debootstrap is not installed (apt-get install debootstrap): it makes the python base image")
	}
	out, err := exec.Command(filepath.Join(repoRoot(t), "scripts/python-base.sh")).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/python-base.sh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// The example, with pip replaced by what the minbase python has:
// build it, run it, see "Hi from container".
func TestBuildPythonApp(t *testing.T) {
	d := StartDev(t)
	base := pythonBase(t)
	d.MustBerth(t, "image", "import", base, "debian-python:bookworm")
	dir := buildContext(t, map[string]string{
		"Dockerfile": `FROM debian-python:bookworm
WORKDIR /usr/src/app
COPY requirements.txt ./
RUN python3 -c "import importlib; [importlib.import_module(m.strip()) for m in open('requirements.txt') if m.strip()]; print('requirements satisfied')"
COPY . .
CMD [ "python3", "./main.py" ]
`,
		"requirements.txt": "json\nsqlite3\n",
		"main.py":          "import json\nprint(json.loads('\"Hi from container\"'))\n",
	})
	r := d.MustBerth(t, "image", "build", "-t", "easy_python_app", dir)
	for _, want := range []string{"[1/6] FROM debian-python:bookworm", "[4/6] RUN python3 -c", "requirements satisfied", "[4/6] DONE", "Successfully tagged easy_python_app"} {
		if !strings.Contains(r.Stdout, want) {
			t.Fatalf("build output lacks %q:\n%s", want, r)
		}
	}
	run := d.MustBerth(t, "run", "--rm", "easy_python_app")
	if !strings.Contains(run.Stdout, "Hi from container") {
		t.Fatalf("run: %s", run)
	}
	// A second build is all cache.
	r = d.MustBerth(t, "build", "-t", "easy_python_app", dir)
	if n := strings.Count(r.Stdout, "CACHED"); n != 5 {
		t.Fatalf("rebuild: %d CACHED steps, want 5:\n%s", n, r)
	}
	hist := d.MustBerth(t, "image", "history", "easy_python_app")
	for _, want := range []string{"COPY requirements.txt ./", "RUN /bin/sh -c python3", "WORKDIR /usr/src/app", "CMD [\"python3\" \"./main.py\"]"} {
		if !strings.Contains(hist.Stdout, want) {
			t.Fatalf("history lacks %q:\n%s", want, hist)
		}
	}
}

// A static C program compiled here, checked in a build stage and copied
// into FROM scratch.
func TestBuildMultiStageScratch(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed (apt-get install gcc): it compiles the static test program")
	}
	d := StartDev(t)
	d.ImportBusybox()
	dir := buildContext(t, map[string]string{
		"hello.c": `#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "--check") == 0) { puts("check ok"); return 0; }
	printf("static hello from scratch");
	for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
	printf("\n");
	return 0;
}
`,
		"Dockerfile": `ARG STAGE_BASE=busybox
FROM ${STAGE_BASE} AS build
WORKDIR /build
COPY hello ./
RUN ./hello --check && mkdir -p /out && cp hello /out/hello
FROM scratch
COPY --from=build /out/hello /hello
ENTRYPOINT ["/hello"]
CMD ["default", "args"]
`,
	})
	if out, err := exec.Command(gcc, "-static", "-O2", "-o", filepath.Join(dir, "hello"), filepath.Join(dir, "hello.c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc -static: %v\n%s", err, out)
	}
	r := d.MustBerth(t, "build", "-t", "scratch-hello", dir)
	if !strings.Contains(r.Stdout, "check ok") {
		t.Fatalf("build stage did not run the program:\n%s", r)
	}
	if run := d.MustBerth(t, "run", "--rm", "scratch-hello"); !strings.Contains(run.Stdout, "static hello from scratch default args") {
		t.Fatalf("run: %s", run)
	}
	if run := d.MustBerth(t, "run", "--rm", "scratch-hello", "given"); !strings.Contains(run.Stdout, "static hello from scratch given") {
		t.Fatalf("run with args: %s", run)
	}
	insp := d.MustBerth(t, "image", "inspect", "scratch-hello")
	if strings.Count(insp.Stdout, "sha256:") < 2 || !strings.Contains(insp.Stdout, "/hello") {
		t.Fatalf("inspect: %s", insp)
	}
	// --target builds the first stage alone.
	if r := d.MustBerth(t, "build", "--target", "build", "-t", "hello-build", dir); !strings.Contains(r.Stdout, "[4/4]") {
		t.Fatalf("--target: %s", r)
	}
}

// USER, WORKDIR, ENV, ENTRYPOINT and CMD as a running container sees them.
func TestBuildRuntimeConfig(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	tests := []struct {
		name, dockerfile string
		args             []string // berth run flags and args after the image
		want             string
	}{
		{"exec entrypoint and cmd", `FROM busybox
ENV GREETING=hello NAME=world
WORKDIR /work
WORKDIR dir
USER 1000:1000
ENTRYPOINT ["/bin/sh", "-c", "echo \"$GREETING $NAME in $(pwd) as $(id -u):$(id -g) args: $0 $*\"", "ep"]
CMD ["c1", "c2"]
`, nil, "hello world in /work/dir as 1000:1000 args: ep c1 c2"},
		{"run args replace CMD", `FROM busybox
ENTRYPOINT ["echo", "ep"]
CMD ["default"]
`, []string{"given"}, "ep given"},
		{"shell-form CMD sees ENV", `FROM busybox
ENV WHERE=shell
CMD echo "in the $WHERE at $HOME"
`, nil, "in the shell at /root"},
		{"ENTRYPOINT drops the base CMD", `FROM busybox AS base
CMD ["echo", "base cmd"]
FROM base
ENTRYPOINT ["echo", "entrypoint only"]
`, nil, "entrypoint only"},
		{"USER by name, env from -e", `FROM busybox
USER app
ENV X=image
CMD ["sh", "-c", "echo $(id -un) X=$X"]
`, []string{"-e", "X=flag"}, "app X=flag"},
		{"ARG does not reach the image", `FROM busybox
ARG SECRET=s3
RUN echo "$SECRET" > /seen
CMD ["sh", "-c", "echo seen=$(cat /seen) env=${SECRET:-unset}"]
`, nil, "seen=s3 env=unset"},
		{"SHELL changes the shell form", `FROM busybox
SHELL ["/bin/sh", "-ec"]
RUN echo shell-form > /f
CMD cat /f
`, nil, "shell-form"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag := "cfg" + string(rune('a'+i))
			dir := buildContext(t, map[string]string{"Dockerfile": tt.dockerfile})
			d.MustBerth(t, "build", "-t", tag, dir)
			args := []string{"run", "--rm"}
			img := []string{tag}
			flags, rest := tt.args, []string(nil)
			if len(flags) > 0 && !strings.HasPrefix(flags[0], "-") {
				flags, rest = nil, tt.args
			}
			args = append(append(append(args, flags...), img...), rest...)
			r := d.MustBerth(t, args...)
			if strings.TrimSpace(r.Stdout) != tt.want {
				t.Fatalf("berth %s: got %q, want %q\n%s", strings.Join(args, " "), strings.TrimSpace(r.Stdout), tt.want, r)
			}
		})
	}
}

// .dockerignore, a cache hit, and a miss after one file changes: only
// that step and the ones after it run again.
func TestBuildCacheAndIgnore(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	dir := buildContext(t, map[string]string{
		"Dockerfile": `FROM busybox
WORKDIR /app
COPY deps.txt ./
RUN echo "installing $(cat deps.txt)" && cp deps.txt installed.txt
COPY . .
RUN ls -a > listing
CMD ["cat", "listing"]
`,
		".dockerignore":   "*.log\nbuild/\n!build/keep.me\n",
		"deps.txt":        "dep-a\n",
		"main.txt":        "v1\n",
		"debug.log":       "noise\n",
		"build/junk":      "junk\n",
		"build/keep.me":   "kept\n",
		"sub/inner.log":   "nested logs match only with **\n",
		"sub/ok.txt":      "ok\n",
		"node_modules/.x": "x\n",
	})
	r := d.MustBerth(t, "build", "-t", "cached", dir)
	if strings.Contains(r.Stdout, "CACHED") || !strings.Contains(r.Stdout, "installing dep-a") {
		t.Fatalf("first build:\n%s", r)
	}
	listing := d.MustBerth(t, "run", "--rm", "cached").Stdout
	for _, want := range []string{"main.txt", "deps.txt", "build", "sub", "Dockerfile", ".dockerignore", "installed.txt"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(listing) {
			t.Fatalf("image lacks %s:\n%s", want, listing)
		}
	}
	if strings.Contains(listing, "debug.log") {
		t.Fatalf(".dockerignore'd debug.log is in the image:\n%s", listing)
	}
	r = d.MustBerth(t, "build", "-t", "cached", dir)
	if n := strings.Count(r.Stdout, "CACHED"); n != 6 || strings.Contains(r.Stdout, "installing dep-a") {
		t.Fatalf("rebuild: %d CACHED, want 6:\n%s", n, r)
	}
	// An ignored file changes: still all cached.
	if err := os.WriteFile(filepath.Join(dir, "debug.log"), []byte("more noise\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = d.MustBerth(t, "build", "-t", "cached", dir); strings.Count(r.Stdout, "CACHED") != 6 {
		t.Fatalf("an ignored file's change missed the cache:\n%s", r)
	}
	// main.txt changes: COPY . . (step 5) and what follows run again.
	if err := os.WriteFile(filepath.Join(dir, "main.txt"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = d.MustBerth(t, "build", "-t", "cached", dir)
	for _, want := range []string{"[2/7] CACHED WORKDIR", "[3/7] CACHED COPY deps.txt", "[4/7] CACHED RUN", "[5/7] COPY . .", "[6/7] RUN ls -a"} {
		if !strings.Contains(r.Stdout, want) {
			t.Fatalf("after editing main.txt, output lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.Stdout, "[5/7] CACHED") || strings.Contains(r.Stdout, "[6/7] CACHED") {
		t.Fatalf("steps after the change came from the cache:\n%s", r)
	}
	// --no-cache runs everything; system prune empties the cache.
	if r = d.MustBerth(t, "build", "--no-cache", "-t", "cached", dir); strings.Contains(r.Stdout, "CACHED") {
		t.Fatalf("--no-cache:\n%s", r)
	}
	d.MustBerth(t, "rmi", "cached")
	d.MustBerth(t, "system", "prune", "-f")
	if r = d.MustBerth(t, "build", "-t", "cached", dir); strings.Contains(r.Stdout, "CACHED") {
		t.Fatalf("the cache survived system prune:\n%s", r)
	}
}

// A failing RUN: its exit code, its last lines, no image.
func TestBuildFailingRun(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	dir := buildContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo fine\nRUN for i in 1 2 3; do echo out$i; done; echo err >&2; exit 42\nRUN echo never\n",
	})
	r := d.Berth("build", "-t", "failing", dir)
	if r.Code != 42 {
		t.Fatalf("exit %d, want the step's 42:\n%s", r.Code, r)
	}
	if !strings.Contains(r.Stderr, "[3/4] RUN for i in") || !strings.Contains(r.Stderr, "exit code 42") ||
		!strings.Contains(r.Stderr, "out3\nerr") || strings.Contains(r.Stdout, "never") {
		t.Fatalf("failure report:\n%s", r)
	}
	if ls := d.MustBerth(t, "image", "ls"); strings.Contains(ls.Stdout, "failing") {
		t.Fatalf("a failed build left an image:\n%s", ls)
	}
	// Bad Dockerfiles name the line.
	bad := buildContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\nFROBNICATE now\n"})
	if r := d.Berth("build", bad); r.Code == 0 || !strings.Contains(r.Stderr, "line 3") {
		t.Fatalf("bad instruction:\n%s", r)
	}
	// A missing COPY source.
	miss := buildContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY nothere /\n"})
	if r := d.Berth("build", miss); r.Code == 0 || !strings.Contains(r.Stderr, "nothere") {
		t.Fatalf("missing source:\n%s", r)
	}
}

// Build and push on one node, pull on another, through a real registry.
func TestBuildPushPull(t *testing.T) {
	testutil.RequireRegistry(t)
	d := StartDev(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	ref := reg.Host + "/team/built:v1"
	dir := buildContext(t, map[string]string{
		"Dockerfile": "FROM busybox\nCOPY msg /msg\nRUN wc -c /msg > /size\nLABEL stage=test\nCMD [\"cat\", \"/msg\", \"/size\"]\n",
		"msg":        "Hi from the registry\n",
	})
	d.StartAgent("node2")
	d.ImportBusybox()
	if r := d.Berth("build", "-t", ref, dir); r.Code == 0 || !strings.Contains(r.Stderr, "--node") {
		t.Fatalf("with two nodes and no --node:\n%s", r)
	}
	r := d.MustBerth(t, "build", "--node", "node2", "--push", "--insecure", "--label", "built.by=berth", "-t", ref, dir)
	if !strings.Contains(r.Stdout, "Pushed "+ref) {
		t.Fatalf("build --push:\n%s", r)
	}
	// node2 built it; the dev node pulls it from the registry.
	ls := d.MustBerth(t, "image", "ls").Stdout
	if strings.Count(ls, "team/built") != 1 {
		t.Fatalf("before the pull, one node has the image:\n%s", ls)
	}
	d.MustBerth(t, "image", "pull", "--insecure", ref)
	ls = d.MustBerth(t, "image", "ls").Stdout
	if strings.Count(ls, "team/built") != 2 {
		t.Fatalf("after the pull both nodes have it:\n%s", ls)
	}
	insp := d.MustBerth(t, "image", "inspect", ref).Stdout
	if !strings.Contains(insp, "built.by") || !strings.Contains(insp, "stage") {
		t.Fatalf("labels lost in the round trip:\n%s", insp)
	}
	run := d.MustBerth(t, "run", "--rm", ref)
	if !strings.Contains(run.Stdout, "Hi from the registry") || !strings.Contains(run.Stdout, "21 /msg") {
		t.Fatalf("run of the pulled image: %s", run)
	}
}

// A HEALTHCHECK from the Dockerfile is run by the agent: the task's
// health goes starting → healthy → unhealthy as the probe's file comes
// and goes.
func TestBuildHealthcheck(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	dir := buildContext(t, map[string]string{
		"Dockerfile": `FROM busybox
HEALTHCHECK --interval=1s --timeout=2s --start-period=3s --retries=2 CMD test -f /tmp/ok
CMD ["sh", "-c", "sleep 1.5; touch /tmp/ok; sleep 4; rm /tmp/ok; sleep 600"]
`,
	})
	d.MustBerth(t, "build", "-t", "hc", dir)
	d.MustBerth(t, "run", "-d", "--name", "hc", "hc")
	c, err := api.NewClient(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		allocs, _, err := c.Jobs().Allocations("hc", nil)
		if err == nil {
			for _, a := range allocs {
				for _, ts := range a.TaskStates {
					if h := ts.Health; h != "" && (len(seen) == 0 || seen[len(seen)-1] != h) {
						seen = append(seen, h)
					}
				}
			}
		}
		if len(seen) > 0 && seen[len(seen)-1] == "unhealthy" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Join(seen, " ") != "starting healthy unhealthy" {
		t.Fatalf("health went %q, want starting healthy unhealthy", seen)
	}
}
