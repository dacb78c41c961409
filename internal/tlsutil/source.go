package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// Config names the files of one member's TLS identity.
type Config struct {
	// CAFile is the PEM bundle of CA certificates that peers must chain to.
	CAFile string
	// CertFile and KeyFile are this member's certificate and key.
	CertFile string
	KeyFile  string
	// Role is the role this member's certificate must carry; NewSource
	// and Reload refuse a certificate of another role.
	Role Role
	// Region of the role names (default "global").
	Region string
}

// Enabled reports whether any file is named (and TLS is therefore wanted).
func (c Config) Enabled() bool { return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" }

// Source holds a member's certificate and CA pool and hands out tls.Config
// values that read them at each handshake, so Reload rotates them for
// every new connection. It is safe for concurrent use.
type Source struct {
	cfg Config
	cur atomic.Pointer[material]
	// now is the clock certificates are checked against (tests move it).
	now func() time.Time
}

// material is one loaded set of files.
type material struct {
	cert     *tls.Certificate
	pool     *x509.CertPool
	notAfter time.Time
}

// NewSource loads cfg's files and checks that the certificate carries
// cfg.Role and chains to the CA.
func NewSource(cfg Config) (*Source, error) {
	if cfg.CAFile == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, ErrIncomplete
	}
	if _, err := ParseRole(string(cfg.Role)); err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	s := &Source{cfg: cfg, now: time.Now}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Role is the role of this member's certificate.
func (s *Source) Role() Role { return s.cfg.Role }

// Region is the region of the role names.
func (s *Source) Region() string { return s.cfg.Region }

// NotAfter is when the loaded certificate expires.
func (s *Source) NotAfter() time.Time { return s.cur.Load().notAfter }

// Reload reads the files again. On any error the previous certificate and
// CA stay in force and the error says what is wrong with the new files.
func (s *Source) Reload() error {
	caPEM, err := os.ReadFile(s.cfg.CAFile)
	if err != nil {
		return fmt.Errorf("tlsutil: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%w: %s holds no CA certificate", ErrBadPEM, s.cfg.CAFile)
	}
	kp, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tlsutil: load %s and %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return fmt.Errorf("tlsutil: parse %s: %w", s.cfg.CertFile, err)
	}
	kp.Leaf = leaf
	role, err := RoleOf(leaf, s.cfg.Region)
	if err != nil {
		return fmt.Errorf("tlsutil: %s: %w", s.cfg.CertFile, err)
	}
	if role != s.cfg.Role {
		return fmt.Errorf("%w: %s is a %s certificate, this member needs a %s certificate (berth tls cert create --%s)",
			ErrWrongRole, s.cfg.CertFile, role, s.cfg.Role, s.cfg.Role)
	}
	inter := x509.NewCertPool()
	for _, der := range kp.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	// The chain is checked at a moment when the leaf is valid: an expired
	// certificate still loads (peers refuse it, and the log says why), so
	// that a SIGHUP with the renewed files can follow.
	at := s.now()
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: at}); err != nil {
		return fmt.Errorf("tlsutil: %s is not signed by the CA in %s: %w", s.cfg.CertFile, s.cfg.CAFile, err)
	}
	s.cur.Store(&material{cert: &kp, pool: pool, notAfter: leaf.NotAfter})
	return nil
}

// ServerConfig is the tls.Config of a listener that requires a client
// certificate of one of the accept roles.
func (s *Source) ServerConfig(accept ...Role) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		// The chain is verified in VerifyConnection against the current
		// pool (tls.Config.ClientCAs would be fixed at creation), which
		// also runs for resumed sessions.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, accept)
		},
	}
}

// ClientConfig is the tls.Config of a dialer that presents this member's
// certificate and accepts a server whose certificate has one of the peer
// roles. The server's address is not checked against its certificate: the
// role name is what identifies a berth server or agent, as in Nomad.
func (s *Source) ClientConfig(peer ...Role) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		// Go's own verification would check the address and a fixed pool;
		// VerifyConnection checks the chain against the current pool and
		// the role instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, peer)
		},
	}
}

// VerifyPeer checks a peer's chain (leaf first) as the configs do: signed
// by the CA, valid now, with the key usage, and carrying an accepted role.
func (s *Source) verifyPeer(chain []*x509.Certificate, usage x509.ExtKeyUsage, accept []Role) error {
	if len(chain) == 0 {
		return ErrNoPeerCert
	}
	m := s.cur.Load()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: s.now()}); err != nil {
		return fmt.Errorf("tlsutil: peer certificate %q: %w", leaf.Subject.CommonName, err)
	}
	role, err := RoleOf(leaf, s.cfg.Region)
	if err != nil {
		return err
	}
	if !slices.Contains(accept, role) {
		return fmt.Errorf("%w: its role is %s, want %v", ErrWrongRole, role, accept)
	}
	return nil
}
