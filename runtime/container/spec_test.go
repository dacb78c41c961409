package container

import (
	"errors"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestCombineArgs(t *testing.T) {
	tests := []struct {
		name                         string
		imgEP, imgCmd, ep, cmd, want []string
		epSet                        bool
	}{
		{name: "image cmd only", imgCmd: []string{"sh"}, want: []string{"sh"}},
		{name: "image entrypoint and cmd", imgEP: []string{"nginx"}, imgCmd: []string{"-g", "daemon off;"}, want: []string{"nginx", "-g", "daemon off;"}},
		{name: "run cmd replaces image cmd", imgEP: []string{"nginx"}, imgCmd: []string{"-v"}, cmd: []string{"-t"}, want: []string{"nginx", "-t"}},
		{name: "run entrypoint drops image cmd", imgEP: []string{"nginx"}, imgCmd: []string{"-v"}, ep: []string{"sh"}, epSet: true, want: []string{"sh"}},
		{name: "run entrypoint and cmd", imgEP: []string{"nginx"}, imgCmd: []string{"-v"}, ep: []string{"sh"}, cmd: []string{"-c", "x"}, epSet: true, want: []string{"sh", "-c", "x"}},
		{name: "empty run entrypoint resets it", imgEP: []string{"nginx"}, imgCmd: []string{"-v"}, epSet: true, cmd: []string{"ls"}, want: []string{"ls"}},
		{name: "nothing", want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CombineArgs(tc.imgEP, tc.imgCmd, tc.ep, tc.cmd, tc.epSet); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseCaps(t *testing.T) {
	tests := []struct {
		name      string
		add, drop []string
		want      CapSet
		err       bool
	}{
		{name: "default", want: 0xa80425fb},
		{name: "add with and without prefix", add: []string{"NET_ADMIN", "cap_sys_time"}, want: 0xa80425fb | 1<<12 | 1<<25},
		{name: "drop", drop: []string{"CAP_CHOWN", "MKNOD"}, want: 0xa80425fb &^ (1 | 1<<27)},
		{name: "drop all", drop: []string{"ALL"}, want: 0},
		{name: "drop all add one", drop: []string{"all"}, add: []string{"KILL"}, want: 1 << 5},
		{name: "add all", add: []string{"ALL"}, want: 1<<41 - 1},
		{name: "unknown", add: []string{"FLY"}, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCaps(tc.add, tc.drop)
			if (err != nil) != tc.err {
				t.Fatalf("err %v", err)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %#x, want %#x (%v)", uint64(got), uint64(tc.want), got.Names())
			}
		})
	}
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n# comment\nbad:x:notanumber:1\n"
	group  = "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:root\n"
)

func TestResolveUser(t *testing.T) {
	tests := []struct {
		name, spec string
		want       ExecUser
		err        bool
	}{
		{name: "default root", spec: "", want: ExecUser{UID: 0, GID: 0, Groups: []uint32{0, 10}, Home: "/root"}},
		{name: "name", spec: "app", want: ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 50}, Home: "/home/app"}},
		{name: "uid of a known user", spec: "1000", want: ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 50}, Home: "/home/app"}},
		{name: "unknown uid", spec: "4242", want: ExecUser{UID: 4242, GID: 0, Groups: []uint32{0}, Home: "/"}},
		{name: "uid:gid", spec: "4242:50", want: ExecUser{UID: 4242, GID: 50, Groups: []uint32{50}, Home: "/"}},
		{name: "name:group", spec: "app:staff", want: ExecUser{UID: 1000, GID: 50, Groups: []uint32{50}, Home: "/home/app"}},
		{name: "unknown name", spec: "nobody2", err: true},
		{name: "unknown group", spec: "app:nogroup2", err: true},
		{name: "empty group", spec: "app:", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveUser(tc.spec, strings.NewReader(passwd), strings.NewReader(group))
			if tc.err {
				if !errors.Is(err, ErrUser) {
					t.Fatalf("got %+v, %v; want ErrUser", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
	if u, err := ResolveUser("7", nil, nil); err != nil || u.UID != 7 {
		t.Errorf("numeric user without /etc/passwd: %+v %v", u, err)
	}
}

func FuzzResolveUser(f *testing.F) {
	f.Add("app", passwd, group)
	f.Add("1000:staff", passwd, group)
	f.Add("x:y", "x:x:1:2:::\n", "y:x:3:x\n")
	f.Fuzz(func(t *testing.T, spec, pw, gr string) {
		u, err := ResolveUser(spec, strings.NewReader(pw), strings.NewReader(gr))
		if err != nil {
			if !errors.Is(err, ErrUser) {
				t.Fatalf("error %v is not ErrUser", err)
			}
			return
		}
		if len(u.Groups) == 0 || u.Groups[0] != u.GID || u.Home == "" {
			t.Fatalf("resolved %+v: the primary group must come first and home be set", u)
		}
	})
}

func TestValidate(t *testing.T) {
	ok := func() Spec {
		return Spec{ID: "abc", Layers: []string{"/l"}, Args: []string{"true"}}
	}
	s := ok()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "abc" || s.Cwd != "/" || s.StopSignal != "SIGTERM" || s.Network != "none" || s.LogMaxFiles != 3 || s.LogMaxSize != 10<<20 {
		t.Errorf("defaults not applied: %+v", s)
	}
	tests := []struct {
		name   string
		modify func(*Spec)
	}{
		{"bad id", func(s *Spec) { s.ID = "../x" }},
		{"bad name", func(s *Spec) { s.Name = "a b" }},
		{"no layers", func(s *Spec) { s.Layers = nil }},
		{"relative layer", func(s *Spec) { s.Layers = []string{"l"} }},
		{"layer with colon", func(s *Spec) { s.Layers = []string{"/a:b"} }},
		{"no args", func(s *Spec) { s.Args = nil }},
		{"relative cwd", func(s *Spec) { s.Cwd = "tmp" }},
		{"mount on root", func(s *Spec) { s.Mounts = []Mount{{Source: "/x", Destination: "/"}} }},
		{"relative bind source", func(s *Spec) { s.Mounts = []Mount{{Source: "x", Destination: "/x"}} }},
		{"bad mount type", func(s *Spec) { s.Mounts = []Mount{{Destination: "/x", Type: "nfs"}} }},
		{"bad cap", func(s *Spec) { s.CapAdd = []string{"NOPE"} }},
		{"bad rlimit", func(s *Spec) { s.Rlimits = []Rlimit{{Type: "RLIMIT_NOPE"}} }},
		{"bad signal", func(s *Spec) { s.StopSignal = "SIGNOPE" }},
		{"bad network", func(s *Spec) { s.Network = "bridge0" }},
		{"bad device", func(s *Spec) { s.Devices = []Device{{Path: "/etc/x", Type: 'c'}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.modify(&s)
			if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("got %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": 15, "term": 15, "KILL": 9, "9": 9, "SIGUSR1": 10} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "SIGFOO", "0", "99", "+9"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "web_1.x-y"} {
		if !ValidID(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range []string{"", ".", "..", "-a", "a/b", "a b", strings.Repeat("a", 129)} {
		if ValidID(id) {
			t.Errorf("%q accepted", id)
		}
	}
}
