package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newAuthority(t *testing.T, name string) authority {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf for 127.0.0.1; it returns the certificate and key PEM.
func (a authority) issue(t *testing.T, name string, usage x509.ExtKeyUsage) ([]byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func client(t *testing.T, trust authority, certPEM, keyPEM []byte) *http.Client {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(trust.cert)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
}

// cert-manager renews the serving certificate (under a new CA) and the client CA: the server
// takes both without a restart, and the old client certificate is refused from then on.
func TestServerConfigFollowsRenewedFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	servingCA, clientCA := newAuthority(t, "serving-1"), newAuthority(t, "clients-1")
	c, k := servingCA.issue(t, "server", x509.ExtKeyUsageServerAuth)
	write(t, certFile, c)
	write(t, keyFile, k)
	write(t, caFile, clientCA.pem)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conf, err := ServerConfig(ctx, "--tls-cert/--tls-key", certFile, keyFile, "--tls-client-ca", caFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	url := "https://" + lis.Addr().String() + "/"

	oldClientCert, oldClientKey := clientCA.issue(t, "adapter", x509.ExtKeyUsageClientAuth)
	if _, err := client(t, servingCA, oldClientCert, oldClientKey).Get(url); err != nil {
		t.Fatalf("before the renewal: %v", err)
	}

	servingCA2, clientCA2 := newAuthority(t, "serving-2"), newAuthority(t, "clients-2")
	c2, k2 := servingCA2.issue(t, "server", x509.ExtKeyUsageServerAuth)
	write(t, keyFile, k2)
	write(t, certFile, c2)
	write(t, caFile, clientCA2.pem)
	newCert, newKey := clientCA2.issue(t, "adapter", x509.ExtKeyUsageClientAuth)
	renewed := client(t, servingCA2, newCert, newKey)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := renewed.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificates were not taken: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := client(t, servingCA2, oldClientCert, oldClientKey).Get(url); err == nil {
		t.Error("a client certificate of the replaced CA is still accepted")
	}
}

// Files that do not hold what their flag says are refused at start, naming the flag.
func TestServerConfigNamesTheFlag(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "empty.pem")
	write(t, bad, []byte("not a certificate"))
	if _, err := ServerConfig(context.Background(), "--tls-cert/--tls-key", bad, bad, "", ""); err == nil || err.Error()[:len("--tls-cert/--tls-key")] != "--tls-cert/--tls-key" {
		t.Errorf("bad key pair: %v", err)
	}
}

// issueServer signs a serving certificate for a DNS name.
func (a authority) issueServer(t *testing.T, dns string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dns}, DNSNames: []string{dns},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// server serves HTTPS with cert, requiring client certificates of clients.
func server(t *testing.T, cert tls.Certificate, clients authority) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(clients.cert)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })
	return "https://" + lis.Addr().String() + "/"
}

// clientFixture is an adapter client (ClientConfig) with its files, its agents' CA and the CA
// of its client certificate, and a get that reports whether a request through it got an answer.
type clientFixture struct {
	certFile, keyFile, caFile string
	agents, clients           authority
	get                       func(url string) error
}

func newClientFixture(t *testing.T, serverName string) clientFixture {
	t.Helper()
	dir := t.TempDir()
	f := clientFixture{certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), caFile: filepath.Join(dir, "ca.crt"),
		agents: newAuthority(t, "agents-1"), clients: newAuthority(t, "clients-1")}
	c, k := f.clients.issue(t, "connection-metrics-adapter", x509.ExtKeyUsageClientAuth)
	write(t, f.certFile, c)
	write(t, f.keyFile, k)
	write(t, f.caFile, f.agents.pem)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conf, err := ClientConfig(ctx, "--agent-client-cert/--agent-client-key", f.certFile, f.keyFile, "--agent-ca", f.caFile, serverName)
	if err != nil {
		t.Fatal(err)
	}
	f.get = func(url string) error {
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}).Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	return f
}

// The adapter's client certificate and the agents' CA are renewed: the client takes both
// without a restart; the server is checked against the name given, not the address dialled.
func TestClientConfigFollowsRenewedFiles(t *testing.T) {
	f := newClientFixture(t, "agent.svc")
	certFile, keyFile, caFile, agents, clients, get := f.certFile, f.keyFile, f.caFile, f.agents, f.clients, f.get
	if err := get(server(t, agents.issueServer(t, "agent.svc"), clients)); err != nil {
		t.Fatalf("before the renewal: %v", err)
	}
	if err := get(server(t, agents.issueServer(t, "other.svc"), clients)); err == nil {
		t.Error("a server certificate for another name was accepted")
	}
	agents2, clients2 := newAuthority(t, "agents-2"), newAuthority(t, "clients-2")
	c2, k2 := clients2.issue(t, "connection-metrics-adapter", x509.ExtKeyUsageClientAuth)
	write(t, keyFile, k2)
	write(t, certFile, c2)
	write(t, caFile, agents2.pem)
	renewed := server(t, agents2.issueServer(t, "agent.svc"), clients2)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := get(renewed)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed client certificate and CA were not taken: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Without a server name, the server is checked against the address dialled (its IP), as the
// standard verification does: a certificate of the CA for another address is refused.
func TestClientConfigChecksTheAddressWithoutAServerName(t *testing.T) {
	f := newClientFixture(t, "")
	agents, clients, get := f.agents, f.clients, f.get
	ipCert, ipKey := agents.issue(t, "agent", x509.ExtKeyUsageServerAuth) // for 127.0.0.1
	pair, _ := tls.X509KeyPair(ipCert, ipKey)
	if err := get(server(t, pair, clients)); err != nil {
		t.Errorf("a certificate for the address dialled: %v", err)
	}
	if err := get(server(t, agents.issueServer(t, "elsewhere.svc"), clients)); err == nil {
		t.Error("a certificate of the CA for another name was accepted for 127.0.0.1")
	}
}
