//go:build e2e

package e2e

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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// `openstack-provider validate` checks the file and the cloud, and names what is wrong.
func TestProviderValidate(t *testing.T) {
	w := framework.Connect(t)
	bin := framework.ProviderBinary(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, flavor string
		wantOK       bool
		want         string
	}{
		{"good", "m1.small", true, "valid; cloud \"world\""},
		{"unknown flavor", "m9.huge", false, `flavor "m9.huge" not found in region RegionOne`},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		cfg := strings.Replace(novaConfig(w, "validate", 0, 2), "flavor: m1.small", "flavor: "+tc.flavor, 1)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "validate", "--config", path).CombinedOutput()
		if (err == nil) != tc.wantOK || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: validate = %v, %q; want ok=%v and %q", tc.name, err, out, tc.wantOK, tc.want)
		}
	}
}

type pki struct {
	dir string
	ca  *x509.Certificate
	key *ecdsa.PrivateKey
}

func newPKI(t *testing.T, name string) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, key: key}
	p.write(t, "ca.crt", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue writes name.crt and name.key signed by the CA.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPath, keyPath string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return p.write(t, name+".crt", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", keyDER)
}

// With --tls-client-ca, only clients holding a certificate of that CA get answers.
func TestProviderRequiresClientCertificates(t *testing.T) {
	w := framework.Connect(t)
	serverPKI, clientPKI, strangerPKI := newPKI(t, "server-ca"), newPKI(t, "clients-ca"), newPKI(t, "stranger-ca")
	serverCert, serverKey := serverPKI.issue(t, "provider", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := clientPKI.issue(t, "cluster-autoscaler", x509.ExtKeyUsageClientAuth)
	strangerCert, strangerKey := strangerPKI.issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	p := framework.StartProvider(t, novaConfig(w, "tls", 0, 2),
		"--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", filepath.Join(clientPKI.dir, "ca.crt"))

	call := func(certPath, keyPath string) error {
		roots := x509.NewCertPool()
		roots.AddCert(serverPKI.ca)
		conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if certPath != "" {
			cert, err := tls.LoadX509KeyPair(certPath, keyPath)
			if err != nil {
				t.Fatal(err)
			}
			conf.Certificates = []tls.Certificate{cert}
		}
		conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = pb.NewCloudProviderClient(conn).NodeGroups(ctx, &pb.NodeGroupsRequest{})
		return err
	}
	if err := call(clientCert, clientKey); err != nil {
		t.Errorf("client with a certificate of the clients CA: %v", err)
	}
	if err := call("", ""); err == nil {
		t.Error("client without a certificate got an answer")
	}
	if err := call(strangerCert, strangerKey); err == nil {
		t.Error("client with a certificate of another CA got an answer")
	}
}
