package api

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Environment variables of the client's TLS settings, as Nomad has
// NOMAD_CACERT, NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY.
const (
	EnvCACert     = "BERTH_CACERT"
	EnvClientCert = "BERTH_CLIENT_CERT"
	EnvClientKey  = "BERTH_CLIENT_KEY"
	// EnvTLSServerName overrides the name the server's certificate must
	// carry (default DefaultTLSServerName).
	EnvTLSServerName = "BERTH_TLS_SERVER_NAME"
)

// DefaultTLSServerName is the role name every server certificate of the
// default region carries (see `berth tls cert create --server`). A client
// given BERTH_CACERT checks it instead of the address, so a CLI or agent
// certificate can never pose as a server.
const DefaultTLSServerName = "server.global.berth"

// ErrTLSConfig means the client's TLS files could not be used.
var ErrTLSConfig = errors.New("api: bad TLS configuration")

// TLSConfig names the files of a client's mutual-TLS identity.
type TLSConfig struct {
	CACert     string // PEM CA bundle the server must chain to
	ClientCert string // PEM certificate presented to the server
	ClientKey  string // its key
	ServerName string // role name the server's certificate carries
}

// TLSConfigFromEnv reads BERTH_CACERT, BERTH_CLIENT_CERT,
// BERTH_CLIENT_KEY and BERTH_TLS_SERVER_NAME.
func TLSConfigFromEnv() TLSConfig {
	return TLSConfig{
		CACert:     os.Getenv(EnvCACert),
		ClientCert: os.Getenv(EnvClientCert),
		ClientKey:  os.Getenv(EnvClientKey),
		ServerName: os.Getenv(EnvTLSServerName),
	}
}

// Enabled reports whether any TLS file is named.
func (t TLSConfig) Enabled() bool { return t.CACert != "" || t.ClientCert != "" || t.ClientKey != "" }

// Build loads the files into a tls.Config.
func (t TLSConfig) Build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if cfg.ServerName == "" && t.CACert != "" {
		// With the cluster's own CA the server is identified by its role;
		// without one (a proxy with a public certificate) by its host name.
		cfg.ServerName = DefaultTLSServerName
	}
	if t.CACert != "" {
		b, err := os.ReadFile(t.CACert)
		if err != nil {
			return nil, fmt.Errorf("%w: read CA file (%s): %v", ErrTLSConfig, EnvCACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate (%s)", ErrTLSConfig, t.CACert, EnvCACert)
		}
		cfg.RootCAs = pool
	}
	if (t.ClientCert == "") != (t.ClientKey == "") {
		return nil, fmt.Errorf("%w: give both %s and %s", ErrTLSConfig, EnvClientCert, EnvClientKey)
	}
	if t.ClientCert != "" {
		kp, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("%w: load client certificate %s: %v", ErrTLSConfig, t.ClientCert, err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

// transportFor is the HTTP transport of a client for addr: with the TLS
// settings of the environment when addr is https.
func transportFor(addr string, maxIdle int) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxIdle
	if strings.HasPrefix(addr, "https://") {
		cfg, err := TLSConfigFromEnv().Build()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	return tr, nil
}

// defaultScheme is the scheme of an address given without one: https when
// the environment names TLS files.
func defaultScheme() string {
	if TLSConfigFromEnv().Enabled() {
		return "https://"
	}
	return "http://"
}

// SetTLSConfig makes the client use cfg for https addresses (a server or
// agent's own certificate, tests).
func (c *Client) SetTLSConfig(cfg *tls.Config) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.TLSClientConfig = cfg
	c.http = &http.Client{Transport: tr}
}

// SetTLSConfig makes the agent client use cfg for https addresses.
func (c *AgentClient) SetTLSConfig(cfg *tls.Config) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.TLSClientConfig = cfg
	c.http = &http.Client{Transport: tr}
}

// tlsHint adds what to check to a connection error that came from TLS.
func tlsHint(err error) string {
	var (
		ce  *tls.CertificateVerificationError
		ae  tls.AlertError
		hn  x509.HostnameError
		ua  x509.UnknownAuthorityError
		rhe tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &rhe):
		return "; the server does not speak TLS: use http://"
	case errors.As(err, &ce), errors.As(err, &hn), errors.As(err, &ua):
		return "; the server's certificate is not trusted: check " + EnvCACert + " and that it is a server certificate"
	case errors.As(err, &ae), strings.Contains(err.Error(), "tls:"):
		return "; the TLS handshake failed: check " + EnvClientCert + " and " + EnvClientKey + " (a certificate from `berth tls cert create --cli`)"
	}
	return ""
}
