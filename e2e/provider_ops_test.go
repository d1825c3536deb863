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

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
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

// A token Keystone no longer honours (expired, or revoked as here) makes the next call fail with
// 401; the clients re-authenticate from clouds.yaml and the call succeeds.
func TestOpenStackClientsReauthenticateAfterTokenRevocation(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	clients, err := openstack.Connect(ctx, openstack.CloudRef{CloudsFile: w.Env["OS_CLIENT_CONFIG_FILE"], Cloud: "world"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := servers.List(clients.Compute, servers.ListOpts{}).AllPages(ctx); err != nil {
		t.Fatal(err)
	}
	old := clients.Provider.Token()
	identity, err := gopenstack.NewIdentityV3(w.Admin.Provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tokens.Revoke(ctx, identity, old).Err; err != nil {
		t.Fatalf("revoking the clients' token: %v", err)
	}
	if ok, _ := tokens.Validate(ctx, identity, old); ok {
		t.Fatal("the revoked token still validates")
	}
	// Asked of Keystone itself: the other services' token middleware caches validations for
	// minutes (per nova-api process), so a revoked token may still pass there for a while.
	ownIdentity, err := gopenstack.NewIdentityV3(clients.Provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := projects.ListAvailable(ownIdentity).AllPages(ctx); err != nil {
		t.Fatalf("listing the clients' projects after the token was revoked: %v (re-authentication expected)", err)
	}
	if _, err := servers.List(clients.Compute, servers.ListOpts{}).AllPages(ctx); err != nil {
		t.Fatalf("listing servers with the new token: %v", err)
	}
	if clients.Provider.Token() == old {
		t.Error("the call succeeded with the revoked token: it was not revoked, or not re-authenticated")
	}
}
