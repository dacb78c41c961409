package build

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestParseErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, dockerfile string
		line             string // "line N" that the error must name; "" for none
	}{
		{"unknown instruction", "FROM busybox\nRUN true\nFROB x\n", "line 3"},
		{"no FROM", "RUN true\n", "line 1"},
		{"empty", "", ""},
		{"only ARG", "ARG A=1\n", ""},
		{"bad flag", "FROM busybox\nCOPY --frm=x a b\n", "line 2"},
		{"missing args", "FROM busybox\n\nWORKDIR\n", "line 3"},
		{"bad healthcheck", "FROM busybox\nHEALTHCHECK --interval=xx CMD true\n", "line 2"},
		{"ADD url", "FROM busybox\nADD https://example.com/x /x\n", "line 2"},
		{"heredoc", "FROM busybox\nRUN <<EOF\necho hi\nEOF\n", "line 2"},
		{"ENV without value", "FROM busybox\nENV\n", "line 2"},
		{"RUN --mount", "FROM busybox\nRUN --mount=type=cache,target=/x true\n", "line 2"},
		{"RUN --network bad", "FROM busybox\nRUN --network=bridge true\n", "line 2"},
		{"bad json", "FROM busybox\nCMD [\"a\",\n", ""},
	}
	lineRE := regexp.MustCompile(`line \d+`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.dockerfile))
			if tt.name == "bad json" {
				// Not JSON is the shell form: valid.
				if err != nil {
					t.Fatalf("shell-form CMD refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrDockerfile) {
				t.Fatalf("want ErrDockerfile, got %v", err)
			}
			if tt.line != "" && lineRE.FindString(err.Error()) != tt.line {
				t.Fatalf("error %q does not name %s", err, tt.line)
			}
		})
	}
}

func TestParseStages(t *testing.T) {
	df, err := Parse([]byte("ARG V=1\nFROM busybox:$V AS Build\nRUN true\nFROM scratch\nCOPY --from=build /x /x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(df.Stages) != 2 || len(df.MetaArgs) != 1 {
		t.Fatalf("%d stages, %d meta args", len(df.Stages), len(df.MetaArgs))
	}
	if i, ok := df.stageIndex("BUILD", 1); !ok || i != 0 {
		t.Fatal("stage names are case-insensitive")
	}
	if _, ok := df.stageIndex("build", 0); ok {
		t.Fatal("a stage found itself before it was defined")
	}
	if i, ok := df.stageIndex("0", 1); !ok || i != 0 {
		t.Fatal("stages are found by number")
	}
}

func TestNormalizePort(t *testing.T) {
	tests := []struct{ in, want string }{
		{"80", "80/tcp"}, {"53/udp", "53/udp"}, {"8000-8010", "8000-8010/tcp"}, {"80/TCP", "80/tcp"},
		{"x", ""}, {"0", ""}, {"80/foo", ""}, {"70000", ""},
	}
	for _, tt := range tests {
		got, err := normalizePort(tt.in)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("normalizePort(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzParse: any input parses or fails with ErrDockerfile; an error for
// a file with a FROM names a line or says what is missing; nothing
// panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		appDockerfileSeed,
		"FROM scratch\nCOPY a b\n",
		"ARG X\nFROM $X\n",
		"FROM busybox\nHEALTHCHECK NONE\n",
		"FROM busybox\nRUN [\"sh\", \"-c\", \"true\"]\n",
		"# escape=`\nFROM busybox\nRUN echo `\n  hi\n",
		"FROM busybox\nONBUILD RUN true\nSHELL [\"/bin/sh\",\"-c\"]\n",
		"FROM a AS b\nFROM b\nCOPY --from=b --chown=1:1 --chmod=755 x y\n",
		"FROM busybox\nEXPOSE 80/udp 443\nVOLUME [\"/data\"]\nSTOPSIGNAL 9\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		df, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrDockerfile) {
				t.Fatalf("error without ErrDockerfile: %v", err)
			}
			return
		}
		if len(df.Stages) == 0 {
			t.Fatal("parsed without a stage")
		}
		for _, s := range df.Stages {
			if strings.TrimSpace(s.BaseName) == "" && s.BaseName != "" {
				t.Fatalf("blank base name %q", s.BaseName)
			}
		}
	})
}

const appDockerfileSeed = `FROM python:3-alpine
WORKDIR /usr/src/app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
CMD [ "python", "./main.py" ]
`
