package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/tlsutil"
)

func init() { addCommand(newTLSCmd) }

// CA file names, as Nomad writes nomad-agent-ca.pem.
const (
	tlsCAFile    = "berth-agent-ca.pem"
	tlsCAKeyFile = "berth-agent-ca-key.pem"
)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make the certificates of a cluster's mutual TLS",
		Long: `Make a certificate authority and the certificates that servers, agents and
the CLI present to one another. Every certificate carries its role
(server.global.berth, agent.global.berth, cli.global.berth): a CLI
certificate can never pose as a server or an agent, and an agent
certificate cannot join Raft.

  berth tls ca create
  berth tls cert create --server     # one per server
  berth tls cert create --agent      # one per agent host
  berth tls cert create --cli        # for people and scripts

Then start each role with --ca-file, --cert-file and --key-file, and point
the CLI at https://SERVER:9470 with BERTH_CACERT, BERTH_CLIENT_CERT and
BERTH_CLIENT_KEY. Replace the files and send SIGHUP to rotate them.`,
	}
	ca := &cobra.Command{Use: "ca", Short: "Manage the certificate authority"}
	ca.AddCommand(newTLSCACreateCmd())
	cert := &cobra.Command{Use: "cert", Short: "Manage certificates"}
	cert.AddCommand(newTLSCertCreateCmd())
	cmd.AddCommand(ca, cert)
	return cmd
}

func newTLSCACreateCmd() *cobra.Command {
	var (
		days int
		dir  string
		cn   string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a certificate authority (" + tlsCAFile + " and " + tlsCAKeyFile + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days <= 0 {
				return fmt.Errorf("--days %d: want a positive number of days", days)
			}
			certPath, keyPath := filepath.Join(dir, tlsCAFile), filepath.Join(dir, tlsCAKeyFile)
			for _, p := range []string{certPath, keyPath} {
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("%s already exists: remove it or use --dir to make another CA", p)
				}
			}
			certPEM, keyPEM, err := tlsutil.CreateCA(tlsutil.CAOptions{Days: days, CommonName: cn})
			if err != nil {
				return err
			}
			if err := writeNew(certPath, certPEM, 0o644); err != nil {
				return err
			}
			if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "==> CA certificate: %s\n==> CA key: %s (keep it secret; it signs every certificate)\n", certPath, keyPath)
			return nil
		},
	}
	cmd.Flags().IntVar(&days, "days", 1825, "days the CA is valid")
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write the files in")
	cmd.Flags().StringVar(&cn, "common-name", "", "the CA's common name (default \"berth agent CA\")")
	return cmd
}

func newTLSCertCreateCmd() *cobra.Command {
	var (
		server, agentRole, cli bool
		days                   int
		region, caFile, keyF   string
		dir                    string
		dnsNames, ips          []string
	)
	cmd := &cobra.Command{
		Use:   "create --server|--agent|--cli",
		Short: "Create a certificate for a server, an agent or the CLI, signed by the CA",
		Long: `Create a certificate and key signed by the CA, named REGION-ROLE-berth-N.pem
and REGION-ROLE-berth-N-key.pem with the first free N. Servers and agents
also get localhost and 127.0.0.1; add each host's names and addresses with
--additional-dnsname and --additional-ipaddress for clients that check them
(berth itself checks the role, not the address).`,
		Example: `  berth tls cert create --server --additional-ipaddress 10.0.0.1
  berth tls cert create --agent --days 90
  berth tls cert create --cli`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var role tlsutil.Role
			n := 0
			for r, on := range map[tlsutil.Role]bool{tlsutil.RoleServer: server, tlsutil.RoleAgent: agentRole, tlsutil.RoleCLI: cli} {
				if on {
					role = r
					n++
				}
			}
			if n != 1 {
				return errors.New("give exactly one of --server, --agent or --cli")
			}
			if days <= 0 {
				return fmt.Errorf("--days %d: want a positive number of days", days)
			}
			opts := tlsutil.CertOptions{Role: role, Region: region, Days: days, DNSNames: dnsNames}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--additional-ipaddress %q is not an IP address", s)
				}
				opts.IPs = append(opts.IPs, ip)
			}
			caPEM, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("read the CA certificate: %w (make one with `berth tls ca create`, or give --ca)", err)
			}
			caKey, err := os.ReadFile(keyF)
			if err != nil {
				return fmt.Errorf("read the CA key: %w (give --key)", err)
			}
			certPEM, keyPEM, err := tlsutil.CreateCert(caPEM, caKey, opts)
			if err != nil {
				return err
			}
			base := ""
			for i := 0; ; i++ {
				base = filepath.Join(dir, fmt.Sprintf("%s-%s-berth-%s", regionOr(region), role, strconv.Itoa(i)))
				if _, err := os.Stat(base + ".pem"); errors.Is(err, os.ErrNotExist) {
					break
				}
			}
			if err := writeNew(base+".pem", certPEM, 0o644); err != nil {
				return err
			}
			if err := writeNew(base+"-key.pem", keyPEM, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "==> Using CA %s and key %s\n==> %s certificate: %s.pem\n==> %s key: %s-key.pem\n",
				caFile, keyF, role, base, role, base)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&server, "server", false, "a server certificate (server."+tlsutil.DefaultRegion+".berth)")
	fl.BoolVar(&agentRole, "agent", false, "an agent certificate (agent."+tlsutil.DefaultRegion+".berth)")
	fl.BoolVar(&cli, "cli", false, "a CLI certificate (cli."+tlsutil.DefaultRegion+".berth): client only")
	fl.IntVar(&days, "days", 365, "days the certificate is valid")
	fl.StringVar(&region, "region", tlsutil.DefaultRegion, "region named in the role")
	fl.StringVar(&caFile, "ca", tlsCAFile, "CA certificate")
	fl.StringVar(&keyF, "key", tlsCAKeyFile, "CA key")
	fl.StringVar(&dir, "dir", ".", "directory to write the files in")
	fl.StringArrayVar(&dnsNames, "additional-dnsname", nil, "another DNS name for the certificate (repeatable)")
	fl.StringArrayVar(&ips, "additional-ipaddress", nil, "another IP address for the certificate (repeatable)")
	return cmd
}

func regionOr(r string) string {
	if r == "" {
		return tlsutil.DefaultRegion
	}
	return r
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
