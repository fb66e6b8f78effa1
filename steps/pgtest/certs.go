package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certFiles are the PEM files written for a cluster.
type certFiles struct {
	ca, otherCA, cert, key string
}

// issuer is a certificate authority able to sign certificates.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// writeCerts writes into dir a CA (ca.crt), a second unrelated CA
// (other-ca.crt), and a server certificate and key (server.crt, server.key)
// of the given kind. The key is 0600 and owned by the server user.
func writeCerts(dir string, kind CertKind, owner runAs) (certFiles, error) {
	files := certFiles{
		ca:      filepath.Join(dir, "ca.crt"),
		otherCA: filepath.Join(dir, "other-ca.crt"),
		cert:    filepath.Join(dir, "server.crt"),
		key:     filepath.Join(dir, "server.key"),
	}
	now := time.Now()
	ca, err := newCA("pgtest CA", now)
	if err != nil {
		return files, err
	}
	other, err := newCA("pgtest other CA", now)
	if err != nil {
		return files, err
	}

	leaf := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	signer := ca
	switch kind {
	case CertValid:
	case CertExpired:
		leaf.NotBefore = now.Add(-72 * time.Hour)
		leaf.NotAfter = now.Add(-24 * time.Hour)
	case CertWrongHost:
		leaf.Subject.CommonName = "db.wrong.invalid"
		leaf.DNSNames = []string{"db.wrong.invalid"}
		leaf.IPAddresses = nil
	case CertUnknownCA:
		signer = other
	default:
		return files, fmt.Errorf("unknown CertKind %d", kind)
	}
	certPEM, keyPEM, err := signer.sign(leaf)
	if err != nil {
		return files, err
	}

	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{files.ca, ca.pem, 0o644},
		{files.otherCA, other.pem, 0o644},
		{files.cert, certPEM, 0o644},
		{files.key, keyPEM, 0o600},
	} {
		if err := os.WriteFile(f.path, f.data, f.perm); err != nil {
			return files, err
		}
		if err := os.Chmod(f.path, f.perm); err != nil {
			return files, err
		}
		if err := owner.chown(f.path); err != nil {
			return files, err
		}
	}
	return files, nil
}

// newCA creates a self-signed ECDSA P-256 certificate authority.
func newCA(name string, now time.Time) (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"pgtest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issuer{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// sign issues tmpl with a fresh ECDSA P-256 key and returns the certificate
// and PKCS #8 key in PEM.
func (ca *issuer) sign(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = serialNumber(); err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// serialNumber returns a random positive 128-bit serial number.
func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}
