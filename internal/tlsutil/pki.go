package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// Role is what a certificate allows its holder to be in a cluster.
type Role string

// Roles. A server certificate is used by servers (Raft, the HTTP API and
// calls to agents), an agent certificate by agents (their API and calls to
// servers), and a CLI certificate by people and scripts (client only).
const (
	RoleServer Role = "server"
	RoleAgent  Role = "agent"
	RoleCLI    Role = "cli"
)

// DefaultRegion is the region part of role names when none is given.
const DefaultRegion = "global"

// roleDomain is the top-level label of role names.
const roleDomain = "berth"

// Errors returned by this package.
var (
	// ErrBadRole means a role other than server, agent or cli was asked for.
	ErrBadRole = errors.New("tlsutil: unknown role; use server, agent or cli")
	// ErrNoRole means a certificate names no berth role for the region:
	// it was not made by `berth tls cert create`, or for another region.
	ErrNoRole = errors.New("tlsutil: certificate carries no berth role for this region")
	// ErrWrongRole means a peer presented a valid certificate of a role
	// that may not take this part (a CLI certificate posing as a server,
	// an agent certificate dialing Raft).
	ErrWrongRole = errors.New("tlsutil: peer certificate has a role that is not allowed here")
	// ErrNoPeerCert means the peer sent no certificate; every berth
	// connection is mutual TLS.
	ErrNoPeerCert = errors.New("tlsutil: peer sent no certificate; berth requires mutual TLS")
	// ErrIncomplete means a TLS configuration lacks one of the CA file, the
	// certificate or the key.
	ErrIncomplete = errors.New("tlsutil: TLS needs a CA file, a certificate file and a key file")
	// ErrBadPEM means a file did not hold the PEM block that was expected.
	ErrBadPEM = errors.New("tlsutil: not a PEM certificate or key")
	// ErrReservedName means an additional DNS name ends in .berth, where
	// only the role name may be.
	ErrReservedName = errors.New("tlsutil: additional DNS names may not end in .berth: that domain carries roles")
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleServer, RoleAgent, RoleCLI:
		return r, nil
	}
	return "", fmt.Errorf("%w: %q", ErrBadRole, s)
}

// RoleName is the DNS name that carries role in region's certificates:
// "server.global.berth".
func RoleName(role Role, region string) string {
	if region == "" {
		region = DefaultRegion
	}
	return string(role) + "." + region + "." + roleDomain
}

// RoleOf returns the berth role a certificate carries for region.
func RoleOf(cert *x509.Certificate, region string) (Role, error) {
	for _, r := range []Role{RoleServer, RoleAgent, RoleCLI} {
		want := RoleName(r, region)
		for _, n := range cert.DNSNames {
			if strings.EqualFold(n, want) {
				return r, nil
			}
		}
	}
	return "", fmt.Errorf("%w (%s; names %v)", ErrNoRole, region, cert.DNSNames)
}

// CAOptions tune CreateCA.
type CAOptions struct {
	// Days of validity (default 1825, five years).
	Days int
	// CommonName (default "berth agent CA").
	CommonName string
	// NotBefore (default now, less a minute for clock skew).
	NotBefore time.Time
}

// CreateCA makes a self-signed ECDSA P-256 certificate authority and
// returns its certificate and private key as PEM.
func CreateCA(opts CAOptions) (certPEM, keyPEM []byte, err error) {
	if opts.Days <= 0 {
		opts.Days = 1825
	}
	if opts.CommonName == "" {
		opts.CommonName = "berth agent CA"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	nb := notBefore(opts.NotBefore)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: opts.CommonName, Organization: []string{"berth"}},
		NotBefore:             nb,
		NotAfter:              nb.Add(time.Duration(opts.Days) * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: sign CA certificate: %w", err)
	}
	kp, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kp, nil
}

// CertOptions tune CreateCert.
type CertOptions struct {
	Role Role
	// Region of the role name (default "global").
	Region string
	// Days of validity (default 365).
	Days int
	// DNSNames and IPs are added to the certificate beside the role name
	// (servers and agents also get localhost and 127.0.0.1).
	DNSNames []string
	IPs      []net.IP
	// NotBefore (default now, less a minute for clock skew).
	NotBefore time.Time
}

// CreateCert makes a certificate for opts.Role signed by the CA, and
// returns it and its new private key as PEM.
func CreateCert(caCertPEM, caKeyPEM []byte, opts CertOptions) (certPEM, keyPEM []byte, err error) {
	if _, err := ParseRole(string(opts.Role)); err != nil {
		return nil, nil, err
	}
	if opts.Days <= 0 {
		opts.Days = 365
	}
	ca, err := ParseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA certificate: %w", err)
	}
	caKey, err := ParseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA key: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("tlsutil: %s is not a CA certificate", ca.Subject.CommonName)
	}
	roleName := RoleName(opts.Role, opts.Region)
	dns := []string{roleName}
	ips := append([]net.IP(nil), opts.IPs...)
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if opts.Role != RoleCLI {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
		dns = append(dns, "localhost")
		ips = append(ips, net.IPv4(127, 0, 0, 1))
	}
	for _, n := range opts.DNSNames {
		if n == "" {
			continue
		}
		if strings.HasSuffix(strings.ToLower(strings.TrimSuffix(n, ".")), "."+roleDomain) {
			return nil, nil, fmt.Errorf("%w: %q", ErrReservedName, n)
		}
		dns = append(dns, n)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	nb := notBefore(opts.NotBefore)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{CommonName: roleName, Organization: []string{"berth"},
			OrganizationalUnit: []string{string(opts.Role)}},
		NotBefore:             nb,
		NotAfter:              nb.Add(time.Duration(opts.Days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: sign %s certificate: %w", opts.Role, err)
	}
	kp, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kp, nil
}

// ParseCert decodes the first certificate of a PEM file.
func ParseCert(b []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: no CERTIFICATE block", ErrBadPEM)
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("tlsutil: parse certificate: %w", err)
			}
			return c, nil
		}
	}
}

// ParseKey decodes an EC (SEC 1) or PKCS #8 ECDSA private key from PEM.
func ParseKey(b []byte) (*ecdsa.PrivateKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: no private key block", ErrBadPEM)
		}
		switch blk.Type {
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("tlsutil: parse key: %w", err)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("tlsutil: parse key: %w", err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%w: the key is not ECDSA", ErrBadPEM)
			}
			return ek, nil
		}
	}
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("tlsutil: serial number: %w", err)
	}
	return s, nil
}

func notBefore(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	}
	return t.UTC()
}
