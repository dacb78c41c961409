package image

import (
	"context"
	"sync"
)

// flightGroup runs one pull per key at a time; callers that ask for a key
// already in flight wait for it and receive its progress events. The
// zero value is ready to use.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done    chan struct{}
	cancel  context.CancelFunc
	img     *Image
	err     error
	waiters int
	nextSub int
	subs    map[int]Progress // guarded by flightGroup.mu
}

// do returns fn's result for key, running fn only if no call for key is
// in flight. fn runs on its own context, detached from any one caller's
// and cancelled when every caller has given up.
func (g *flightGroup) do(ctx context.Context, key string, fn func(context.Context) (*Image, error)) (*Image, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*flightCall{}
	}
	c := g.calls[key]
	if c == nil {
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flightCall{done: make(chan struct{}), cancel: cancel, subs: map[int]Progress{}}
		g.calls[key] = c
		runCtx = WithProgress(runCtx, func(ev ProgressEvent) { g.broadcast(c, ev) })
		go func() {
			img, err := fn(runCtx)
			g.mu.Lock()
			c.img, c.err = img, err
			if g.calls[key] == c {
				delete(g.calls, key)
			}
			g.mu.Unlock()
			cancel()
			close(c.done)
		}()
	}
	id := c.nextSub
	c.nextSub++
	c.waiters++
	c.subs[id] = progressFrom(ctx)
	g.mu.Unlock()

	select {
	case <-c.done:
		g.mu.Lock()
		delete(c.subs, id)
		g.mu.Unlock()
		return c.img, c.err
	case <-ctx.Done():
		g.mu.Lock()
		delete(c.subs, id)
		c.waiters--
		if c.waiters == 0 {
			// Nobody waits any more: stop the download, and let the
			// next caller start afresh rather than join a dying call.
			c.cancel()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
		}
		g.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (g *flightGroup) broadcast(c *flightCall, ev ProgressEvent) {
	g.mu.Lock()
	fns := make([]Progress, 0, len(c.subs))
	for _, fn := range c.subs {
		fns = append(fns, fn)
	}
	g.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}
