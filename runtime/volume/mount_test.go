package volume

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestParseMount(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    Mount
		wantErr string // substring of the error; "" means success
	}{
		{name: "named volume", spec: "data:/var/lib/data", want: Mount{Type: TypeVolume, Source: "data", Destination: "/var/lib/data"}},
		{name: "named volume ro", spec: "data:/var/lib/data:ro", want: Mount{Type: TypeVolume, Source: "data", Destination: "/var/lib/data", ReadOnly: true}},
		{name: "named volume rw", spec: "my_vol.1-x:/d:rw", want: Mount{Type: TypeVolume, Source: "my_vol.1-x", Destination: "/d"}},
		{name: "bind", spec: "/srv/www:/usr/share/nginx/html", want: Mount{Type: TypeBind, Source: "/srv/www", Destination: "/usr/share/nginx/html"}},
		{name: "bind ro", spec: "/etc/hosts:/etc/hosts:ro", want: Mount{Type: TypeBind, Source: "/etc/hosts", Destination: "/etc/hosts", ReadOnly: true}},
		{name: "paths cleaned", spec: "/srv//www/./x/../:/data/", want: Mount{Type: TypeBind, Source: "/srv/www", Destination: "/data"}},
		{name: "anonymous", spec: "/cache", want: Mount{Type: TypeVolume, Destination: "/cache"}},
		{name: "host root bind", spec: "/:/host:ro", want: Mount{Type: TypeBind, Source: "/", Destination: "/host", ReadOnly: true}},

		{name: "empty", spec: "", wantErr: "empty"},
		{name: "relative anonymous", spec: "cache", wantErr: "not absolute"},
		{name: "relative destination", spec: "data:var/lib", wantErr: "not absolute"},
		{name: "relative host path", spec: "./data:/data", wantErr: "neither an absolute host path nor a volume name"},
		{name: "host path without slash", spec: "data/sub:/data", wantErr: "neither"},
		{name: "one-letter name", spec: "a:/data", wantErr: "neither"},
		{name: "empty source", spec: ":/data", wantErr: "empty source"},
		{name: "empty destination", spec: "data:", wantErr: "empty container path"},
		{name: "empty destination with opts", spec: "data::ro", wantErr: "empty container path"},
		{name: "empty options", spec: "data:/d:", wantErr: "empty options"},
		{name: "unknown option", spec: "data:/d:rx", wantErr: `unknown option "rx"`},
		{name: "both ro and rw", spec: "data:/d:ro,rw", wantErr: "both ro and rw"},
		{name: "mode without destination", spec: "/data:ro", wantErr: "no container path"},
		{name: "too many parts", spec: "a:/b:ro:rw", wantErr: "too many"},
		{name: "over root", spec: "data:/", wantErr: "root"},
		{name: "over root cleaned", spec: "/x:/a/..", wantErr: "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMount(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidMount) {
					t.Fatalf("ParseMount(%q) = %+v, %v; want an ErrInvalidMount containing %q", tt.spec, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMount(%q): %v", tt.spec, err)
			}
			if got != tt.want {
				t.Fatalf("ParseMount(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
			back, err := ParseMount(got.String())
			if err != nil || back != got {
				t.Fatalf("String() %q reparsed to %+v, %v", got.String(), back, err)
			}
		})
	}
}

func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"data:/var/lib/data:ro", "/a:/b", "/c", "x:y:z", "::", "/a:/b:rw,ro", "a:/", "/a/../b:/c/./d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseMount(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalidMount) {
				t.Fatalf("error %v does not wrap ErrInvalidMount", err)
			}
			return
		}
		if !path.IsAbs(m.Destination) || path.Clean(m.Destination) != m.Destination || m.Destination == "/" {
			t.Fatalf("%q: bad destination %q", spec, m.Destination)
		}
		switch m.Type {
		case TypeBind:
			if !path.IsAbs(m.Source) || path.Clean(m.Source) != m.Source {
				t.Fatalf("%q: bind source %q", spec, m.Source)
			}
		case TypeVolume:
			if m.Source != "" && ValidName(m.Source) != nil {
				t.Fatalf("%q: volume name %q", spec, m.Source)
			}
			if m.Source == "" && m.ReadOnly {
				t.Fatalf("%q: read-only anonymous volume", spec)
			}
		default:
			t.Fatalf("%q: type %q", spec, m.Type)
		}
		back, err := ParseMount(m.String())
		if err != nil || back != m {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", spec, m, m.String(), back, err)
		}
	})
}
