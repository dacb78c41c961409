package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/tlsutil"
)

// securityFlags are the transport-security flags of `berth server` and
// `berth agent` (a --config file may set them too: ca-file, cert-file,
// key-file, insecure, encrypt).
type securityFlags struct {
	caFile, certFile, keyFile string
	region                    string
	insecure                  bool
	encrypt                   string
}

func (f *securityFlags) register(cmd *cobra.Command, role tlsutil.Role) {
	fl := cmd.Flags()
	fl.StringVar(&f.caFile, "ca-file", "", "PEM CA certificate that every peer's certificate must chain to (berth tls ca create)")
	fl.StringVar(&f.certFile, "cert-file", "", fmt.Sprintf("PEM %s certificate (berth tls cert create --%s); reloaded on SIGHUP", role, role))
	fl.StringVar(&f.keyFile, "key-file", "", "PEM key of --cert-file; reloaded on SIGHUP")
	fl.StringVar(&f.region, "region", tlsutil.DefaultRegion, "region named in the role of the TLS certificates (server.REGION.berth)")
	fl.BoolVar(&f.insecure, "insecure", false, "allow listening on a non-loopback address without TLS (anyone who can reach it controls the cluster)")
	fl.StringVar(&f.encrypt, "encrypt", "", "base64 gossip encryption key (16, 24 or 32 bytes; berth operator gossip keyring generate); kept in the data directory's keyring afterwards")
}

// source loads the TLS files, or returns nil when none is given. It also
// enforces the safe default: without TLS, a non-loopback bind needs
// --insecure, and then gets a loud warning on stderr.
func (f *securityFlags) source(role tlsutil.Role, bind string, stderr io.Writer) (*tlsutil.Source, error) {
	cfg := tlsutil.Config{CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile, Role: role, Region: f.region}
	if cfg.Enabled() {
		if f.insecure {
			return nil, fmt.Errorf("--insecure and TLS files given together: drop --insecure")
		}
		src, err := tlsutil.NewSource(cfg)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w (give --ca-file, --cert-file and --key-file made by `berth tls`)", err)
		}
		return src, nil
	}
	ip := net.ParseIP(bind)
	if ip != nil && ip.IsLoopback() {
		return nil, nil
	}
	if !f.insecure {
		return nil, fmt.Errorf("refusing to listen on %s without TLS: anyone who can reach it could run containers as root on this cluster.\n"+
			"Make certificates with `berth tls ca create` and `berth tls cert create --%s`, then pass --ca-file, --cert-file and --key-file;\n"+
			"or bind 127.0.0.1; or pass --insecure on a network you trust completely", bind, role)
	}
	fmt.Fprintf(stderr, "\n"+
		"*****************************************************************\n"+
		"* WARNING: berth %s is running WITHOUT TLS on %s (--insecure).\n"+
		"* Its API, Raft and gossip are open to anyone who can reach them,\n"+
		"* and they can run any container as root on every host.\n"+
		"*****************************************************************\n\n", role, bind)
	return nil, nil
}

// reloadTLS reloads src on SIGHUP until ctx ends; nil does nothing.
func reloadTLS(ctx context.Context, src *tlsutil.Source, log *slog.Logger) {
	if src != nil {
		go src.ReloadOnSIGHUP(ctx, log)
	}
}

// addClientTLSFlags adds the CLI's TLS flags to a command group; they
// override BERTH_CACERT, BERTH_CLIENT_CERT and BERTH_CLIENT_KEY.
func addClientTLSFlags(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("ca-cert", "", "CA certificate the server's certificate must chain to ($"+api.EnvCACert+")")
	pf.String("client-cert", "", "client certificate for mutual TLS, from `berth tls cert create --cli` ($"+api.EnvClientCert+")")
	pf.String("client-key", "", "key of --client-cert ($"+api.EnvClientKey+")")
}

// applyClientTLSFlags puts the TLS flags given on the command line into
// the environment, where every client this process makes (server and
// agent clients alike) reads them.
func applyClientTLSFlags(cmd *cobra.Command) {
	for flag, env := range map[string]string{"ca-cert": api.EnvCACert, "client-cert": api.EnvClientCert, "client-key": api.EnvClientKey} {
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			_ = os.Setenv(env, f.Value.String())
		}
	}
}
