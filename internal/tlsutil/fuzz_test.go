package tlsutil

import "testing"

// FuzzParsePEM feeds arbitrary certificate and key files (an operator
// may point --cert-file at anything): parsing must never panic.
func FuzzParsePEM(f *testing.F) {
	cert, key, err := CreateCA(CAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cert)
	f.Add(key)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseCert(b); err == nil {
			_, _ = RoleOf(c, "")
		}
		_, _ = ParseKey(b)
	})
}
