package scheduler

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
)

// newAgentProxy serves ANY /v1/nodes/:id/agent/* by forwarding the request
// to that node's agent API (/v1/*), so the CLI only ever talks to a
// server. Responses stream through unbuffered, which followed logs and exec
// output need, and a request with "Connection: Upgrade" that the agent
// answers with 101 (attach, exec -it: the berth-attach protocol of
// api/attach.go) becomes a raw connection copied both ways until either
// side closes. lookup resolves a node ID, unique ID prefix or name.
// transport carries the calls (with TLS it presents the server's
// certificate, accepts only agent certificates and sends http:// as
// https://); nil means http.DefaultTransport.
func newAgentProxy(lookup func(r *http.Request, ref string) (*api.Node, error), transport http.RoundTripper) echo.HandlerFunc {
	upgrades := http1Only(transport)
	return func(c echo.Context) error {
		node, err := lookup(c.Request(), c.Param("id"))
		if err != nil {
			return err
		}
		if node.HTTPAddr == "" {
			return echo.NewHTTPError(http.StatusBadGateway, fmt.Sprintf("node %s has not reported an agent address", node.Name))
		}
		if node.Status == api.NodeStatusDown {
			return echo.NewHTTPError(http.StatusBadGateway, fmt.Sprintf("node %s is down: its agent is unreachable", node.Name))
		}
		target := &url.URL{Scheme: "http", Host: node.HTTPAddr}
		rest := "/" + strings.TrimPrefix(c.Param("*"), "/")
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.URL.Path = "/v1" + rest
				pr.Out.URL.RawPath = ""
				pr.Out.Host = node.HTTPAddr
			},
			Transport:     transport,
			FlushInterval: -1,
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadGateway)
				fmt.Fprintf(w, "{\"error\":%q}\n", fmt.Sprintf("agent of node %s (%s) unreachable: %v", node.Name, node.HTTPAddr, err))
			},
		}
		if c.Request().Header.Get("Upgrade") != "" {
			proxy.Transport = upgrades
		}
		proxy.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}

// http1Only returns a transport like rt that speaks HTTP/1.1 only, where
// upgrades exist (HTTP/2 has none), so an attach reaches the agent even
// when it offers HTTP/2 over TLS.
func http1Only(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	switch t := rt.(type) {
	case *http.Transport:
		t = t.Clone()
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
		return t
	case httpsUpgrade:
		return httpsUpgrade{http1Only(t.base)}
	}
	return rt
}
