//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

// With --tls-client-ca, only clients holding a certificate of that CA get answers.
func TestProviderRequiresClientCertificates(t *testing.T) {
	w := framework.Connect(t)
	serverPKI, clientPKI, strangerPKI := framework.NewPKI(t, "server-ca"), framework.NewPKI(t, "clients-ca"), framework.NewPKI(t, "stranger-ca")
	serverCert, serverKey := serverPKI.Issue(t, "provider", x509.ExtKeyUsageServerAuth, nil)
	clientCert, clientKey := clientPKI.Issue(t, "cluster-autoscaler", x509.ExtKeyUsageClientAuth, nil)
	strangerCert, strangerKey := strangerPKI.Issue(t, "stranger", x509.ExtKeyUsageClientAuth, nil)
	p := framework.StartProvider(t, novaConfig(w, "tls", 0, 2),
		"--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", clientPKI.CAFile)

	call := func(certPath, keyPath string) error {
		roots := x509.NewCertPool()
		roots.AddCert(serverPKI.CA)
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
