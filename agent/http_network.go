package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/network"
)

// networkRoutes adds the /v1/networks routes (api/agent.go).
func (a *Agent) networkRoutes(v1 *echo.Group) {
	v1.GET("/networks", a.handleNetworks)
	v1.POST("/networks", a.handleNetworkCreate)
	v1.POST("/networks/prune", a.handleNetworkPrune)
	v1.GET("/networks/:name", a.handleNetwork)
	v1.DELETE("/networks/:name", a.handleNetworkRemove)
}

// networkErr gives network errors their HTTP status.
func networkErr(err error) error {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, network.ErrNoNetwork):
		code = http.StatusNotFound
	case errors.Is(err, network.ErrNetworkExists), errors.Is(err, network.ErrNetworkInUse):
		code = http.StatusConflict
	case errors.Is(err, network.ErrBadName), errors.Is(err, network.ErrBadSubnet), errors.Is(err, network.ErrNoSubnet):
		code = http.StatusBadRequest
	}
	return echo.NewHTTPError(code, err.Error())
}

func (a *Agent) networks() (*network.Networks, error) {
	n := a.eng.Networks()
	if n == nil {
		return nil, echo.NewHTTPError(http.StatusServiceUnavailable, "networking is not available on this node (see the agent's log)")
	}
	return n, nil
}

func (a *Agent) networkJSON(in *network.Info) api.Network {
	return api.Network{Name: in.Name, Driver: "bridge", Bridge: in.Bridge, Subnet: in.Subnet, Gateway: in.Gateway,
		Builtin: in.Builtin, DNS: in.DNS, Containers: in.Containers, CreatedAt: in.CreatedAt, Node: a.node.Name}
}

func (a *Agent) handleNetworks(c echo.Context) error {
	n, err := a.networks()
	if err != nil {
		return err
	}
	out := []api.Network{}
	for _, in := range n.List() {
		out = append(out, a.networkJSON(in))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *Agent) handleNetwork(c echo.Context) error {
	n, err := a.networks()
	if err != nil {
		return err
	}
	in, err := n.Inspect(c.Param("name"))
	if err != nil {
		return networkErr(err)
	}
	return c.JSON(http.StatusOK, a.networkJSON(in))
}

func (a *Agent) handleNetworkCreate(c echo.Context) error {
	n, err := a.networks()
	if err != nil {
		return err
	}
	var req api.NetworkCreateRequest
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "network request: "+err.Error())
	}
	in, err := n.Create(req.Name, req.Subnet)
	if err != nil {
		return networkErr(err)
	}
	return c.JSON(http.StatusOK, a.networkJSON(in))
}

func (a *Agent) handleNetworkRemove(c echo.Context) error {
	n, err := a.networks()
	if err != nil {
		return err
	}
	if err := n.Remove(c.Param("name")); err != nil {
		return networkErr(err)
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *Agent) handleNetworkPrune(c echo.Context) error {
	n, err := a.networks()
	if err != nil {
		return err
	}
	removed, err := n.Prune()
	if err != nil {
		return networkErr(err)
	}
	return c.JSON(http.StatusOK, api.PruneReport{Networks: removed, Node: a.node.Name})
}
