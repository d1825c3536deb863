package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a certificate authority a test (or the demo) makes for itself, valid for a day.
type PKI struct {
	Dir    string
	CA     *x509.Certificate
	CAFile string
	// Validity of the certificates issued from now on (0: 24 hours).
	Validity time.Duration
	key      *ecdsa.PrivateKey
}

// CreatePKI makes a CA and writes it to dir/ca.crt.
func CreatePKI(dir, name string) (*PKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(der)
	p := &PKI{Dir: dir, CA: ca, key: key}
	if p.CAFile, err = p.write(name+"-ca.crt", "CERTIFICATE", der); err != nil {
		return nil, err
	}
	return p, nil
}

// NewPKI is CreatePKI in the test's temp dir.
func NewPKI(t testing.TB, name string) *PKI {
	t.Helper()
	p, err := CreatePKI(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *PKI) write(name, kind string, der []byte) (string, error) {
	path := filepath.Join(p.Dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

func (p *PKI) validity() time.Duration {
	if p.Validity > 0 {
		return p.Validity
	}
	return 24 * time.Hour
}

// CAPEM is the CA certificate in PEM.
func (p *PKI) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.CA.Raw})
}

// IssueFiles writes name.crt and name.key signed by the CA, for 127.0.0.1 and the given IPs and
// names.
func (p *PKI) IssueFiles(name string, usage x509.ExtKeyUsage, ips []string, dnsNames ...string) (certPath, keyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(p.validity()),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: dnsNames}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.key)
	if err != nil {
		return "", "", err
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	if certPath, err = p.write(name+".crt", "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	keyPath, err = p.write(name+".key", "EC PRIVATE KEY", keyDER)
	return certPath, keyPath, err
}

// Issue is IssueFiles failing the test on error.
func (p *PKI) Issue(t testing.TB, name string, usage x509.ExtKeyUsage, ips []string, dnsNames ...string) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath, err := p.IssueFiles(name, usage, ips, dnsNames...)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
