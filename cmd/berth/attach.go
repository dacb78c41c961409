package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/api"
)

func init() { addCommand(newAttachCmd) }

func newAttachCmd() *cobra.Command {
	var noStdin bool
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach this terminal to a running container",
		Long: `Attach connects to a running container through the server, wherever it
runs: to its terminal (run -t) or its open stdin (run -i), or else to its
output from now on. Ctrl-p ctrl-q detaches from a terminal and leaves the
container running; otherwise berth exits with the container's exit code
when it ends.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			x, err := resolveCtr(c, args[0])
			if err != nil {
				return err
			}
			if !x.running() {
				return fmt.Errorf("container %s is not running: you cannot attach to a stopped container (`berth logs %s` shows its output)", x.Name, x.Name)
			}
			ag, err := agentFor(c, x)
			if err != nil {
				return err
			}
			tty := x.Task != nil && x.Task.Tty
			stdin := !noStdin && (x.Task == nil || x.Task.Interactive || tty)
			code, err := interact(cmd, x.ID, tty, stdin, func(sig string) error { return ag.Kill(x.ID, sig) }, func(ctx context.Context, o api.AttachOptions) (*api.AttachStream, error) {
				return ag.Attach(ctx, x.ID, o)
			})
			if errors.Is(err, errDetached) {
				return nil
			}
			return exitWith(code, err)
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not send this terminal's input")
	cmd.Flags().String("detach-keys", defaultDetachKeys, "the keys that detach from a terminal")
	addAddressFlag(cmd)
	return cmd
}

// exitWith turns interact's answer into the command's result.
func exitWith(code int, err error) error {
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// errDetached marks a session the user left with the detach keys.
var errDetached = errors.New("detached")

// defaultDetachKeys is docker's default: ctrl-p then ctrl-q.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// parseDetachKeys reads docker's --detach-keys: a comma-separated sequence
// of single characters and ctrl-X (X a letter or one of @ [ \ ] ^ _).
func parseDetachKeys(spec string) ([]byte, error) {
	if spec == "" {
		spec = defaultDetachKeys
	}
	var keys []byte
	for _, k := range strings.Split(spec, ",") {
		lower := strings.ToLower(k)
		switch {
		case len(k) == 1 && k[0] >= 0x20 && k[0] < 0x7f:
			keys = append(keys, k[0])
		case len(k) == 6 && strings.HasPrefix(lower, "ctrl-") && lower[5] >= 'a' && lower[5] <= 'z':
			keys = append(keys, lower[5]-'a'+1)
		case len(k) == 6 && strings.HasPrefix(lower, "ctrl-") && strings.IndexByte("@[\\]^_", k[5]) >= 0:
			keys = append(keys, k[5]-'@')
		default:
			return nil, fmt.Errorf("invalid --detach-keys %q: want a comma-separated list of characters and ctrl-X (X a letter or one of @[\\]^_), such as %s", spec, defaultDetachKeys)
		}
	}
	return keys, nil
}

// detachKeysOf returns the command's --detach-keys (the default when it
// has no such flag).
func detachKeysOf(cmd *cobra.Command) ([]byte, error) {
	spec := ""
	if f := cmd.Flags().Lookup("detach-keys"); f != nil {
		spec = f.Value.String()
	}
	return parseDetachKeys(spec)
}

// interact runs one interactive session: it opens the stream with open,
// puts this terminal in raw mode when tty is set and stdin is a terminal
// (restored on every way out), forwards stdin (when stdin is set), window
// size changes and, without a terminal, SIGINT and SIGTERM through kill
// (nil: they end the session, which for an exec ends its process), and
// copies the output. It returns the process's exit
// code, errDetached after the user detached, or an exitError of 128+N
// when signal N (SIGTERM, SIGHUP) ended the session.
func interact(cmd *cobra.Command, id string, tty, stdin bool, kill func(signal string) error,
	open func(context.Context, api.AttachOptions) (*api.AttachStream, error)) (int, error) {
	in, out, errOut := cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	inFile, _ := in.(*os.File)
	outFile, _ := out.(*os.File)
	if err := checkTTYInput(cmd, tty, stdin); err != nil {
		return 0, err
	}
	keys, err := detachKeysOf(cmd)
	if err != nil {
		return 0, err
	}
	local := tty && stdinTerminal(cmd)
	opts := api.AttachOptions{Stdin: stdin, Logs: true}
	sizeOf := func() (uint16, uint16, bool) {
		for _, f := range []*os.File{outFile, inFile} {
			if f != nil && term.IsTerminal(int(f.Fd())) {
				if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
					return uint16(h), uint16(w), true
				}
			}
		}
		return 0, 0, false
	}
	if tty {
		opts.Rows, opts.Cols, _ = sizeOf()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := open(ctx, opts)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if local && stdin {
		state, err := term.MakeRaw(int(inFile.Fd()))
		if err != nil {
			return 0, fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		defer term.Restore(int(inFile.Fd()), state) //nolint:errcheck
	}

	// Signals: a window change is a resize; without a terminal, ^C and
	// SIGTERM go to the container (a terminal sends ^C as a byte); a
	// hangup or SIGTERM with a terminal ends the session (the deferred
	// restore puts the terminal back).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGWINCH, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	var killedBy atomic.Int32
	sigDone := make(chan struct{})
	defer close(sigDone)
	go func() {
		for {
			select {
			case sg := <-sigs:
				switch {
				case sg == syscall.SIGWINCH:
					if rows, cols, ok := sizeOf(); ok && tty {
						_ = s.Resize(rows, cols)
					}
				case !tty && kill != nil && (sg == syscall.SIGINT || sg == syscall.SIGTERM):
					_ = kill(map[os.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sg])
				default:
					killedBy.Store(int32(sg.(syscall.Signal)))
					s.Close()
				}
			case <-sigDone:
				return
			}
		}
	}()

	detached := make(chan struct{})
	if stdin {
		go func() {
			var detach []byte
			if local && stdin {
				detach = keys
			}
			if err := copyInput(s.Stdin, in, detach); errors.Is(err, errDetached) {
				close(detached)
				s.Close()
				return
			}
			_ = s.CloseStdin()
		}()
	}
	res, err := s.Copy(out, errOut)
	if err != nil {
		select {
		case <-detached:
			if local {
				fmt.Fprint(errOut, "\r\n")
			}
			fmt.Fprintf(errOut, "berth: detached; the container keeps running (`berth attach %s` to come back)\n", shortID(id))
			return 0, errDetached
		default:
		}
		if sg := killedBy.Load(); sg != 0 {
			// The session ended, not the container: no exit to wait for.
			return 0, exitError{128 + int(sg)}
		}
		if errors.Is(err, api.ErrAttachStream) {
			return 0, fmt.Errorf("the connection to %s was lost (its node's agent or the server went away); `berth attach %s` reconnects while it runs", shortID(id), shortID(id))
		}
		return 0, err
	}
	if res.Error != "" && res.ExitCode < 0 {
		return 0, fmt.Errorf("container %s: %s", shortID(id), res.Error)
	}
	if res.Error != "" {
		fmt.Fprintf(errOut, "berth: %s\n", res.Error)
	}
	if res.OOMKilled {
		fmt.Fprintf(errOut, "berth: container %s was killed for exceeding its memory limit (OOM)\n", shortID(id))
	}
	return res.ExitCode, nil
}

func stdinTerminal(cmd *cobra.Command) bool {
	f, ok := cmd.InOrStdin().(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// checkTTYInput refuses -it when stdin is no terminal, as docker does:
// raw keystrokes cannot come from a pipe.
func checkTTYInput(cmd *cobra.Command, tty, stdin bool) error {
	if tty && stdin && !stdinTerminal(cmd) {
		return errors.New("the input device is not a TTY: drop -t to pipe input to the container (-i alone)")
	}
	return nil
}

// copyInput sends in to the stream with send. With detach keys it watches for
// them and returns errDetached when they come in sequence (a partial
// sequence followed by anything else is sent as typed).
func copyInput(send func([]byte) error, in io.Reader, detach []byte) error {
	buf := make([]byte, 32<<10)
	matched := 0 // how much of detach was typed last, held back
	for {
		n, err := in.Read(buf)
		if n > 0 {
			p := buf[:n]
			if len(detach) > 0 {
				out := make([]byte, 0, n+len(detach))
				done := false
				for _, b := range p {
					if b != detach[matched] {
						out = append(out, detach[:matched]...)
						matched = 0
					}
					if b == detach[matched] {
						if matched++; matched == len(detach) {
							done = true
							break
						}
						continue
					}
					out = append(out, b)
				}
				if done {
					// What came before the keys is still the user's input.
					if len(out) > 0 {
						if werr := send(out); werr != nil {
							return werr
						}
					}
					return errDetached
				}
				p = out
			}
			if len(p) > 0 {
				if werr := send(p); werr != nil {
					return werr
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// startAttach follows a container that `start -a` (re)started: an
// interactive session for one with a terminal or an open stdin (input
// only with -i), its log stream otherwise; berth exits with its exit code.
func startAttach(cmd *cobra.Command, c *api.Client, x *ctr, stdin bool) error {
	if x.Task == nil || (!x.Task.Tty && !x.Task.Interactive) {
		code, err := attachRun(cmd, c, x, false)
		return exitWith(code, err)
	}
	ag, err := agentFor(c, x)
	if err != nil {
		return err
	}
	code, err := interact(cmd, x.ID, x.Task.Tty, stdin, func(sig string) error { return ag.Kill(x.ID, sig) }, func(ctx context.Context, o api.AttachOptions) (*api.AttachStream, error) {
		return ag.Attach(ctx, x.ID, o)
	})
	if errors.Is(err, errDetached) {
		return nil
	}
	return exitWith(code, err)
}
