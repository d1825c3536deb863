package openstack

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// dig reads a path of keys out of decoded JSON.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// openstack-cloud-controller-manager's cloud.conf, as its Secret holds it (with the sections
// that are the controller manager's own), authenticates as clouds.yaml would: the user in its
// domain, scoped to the project in its domain, the region and interface it names, the private
// CA of ca-file.
func TestConnectReadsCloudProviderOpenstacksCloudConf(t *testing.T) {
	srv, _, last := keystone(t)
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	conf := writeFile(t, dir, "cloud.conf", `[Global]
auth-url="`+srv.URL+`/v3"
username="k8s-cloud"
password="s3cr=t;#x"
user-domain-name="users"
tenant-name="prod"
tenant-domain-name="projects"
region="RegionTwo"
os-endpoint-type="internal"
ca-file="`+ca+`"

[LoadBalancer]
use-octavia=true
floating-network-id="f7a4"

[BlockStorage]
bs-version=v3
`)
	clients, err := Connect(context.Background(), CloudRef{CloudConfFile: conf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if clients.Region != "RegionTwo" || !strings.Contains(clients.Compute.Endpoint, "/two-internal/") {
		t.Errorf("region %q, compute %s: want RegionTwo's internal endpoint", clients.Region, clients.Compute.Endpoint)
	}
	user := dig(*last, "auth", "identity", "password", "user")
	if dig(user, "name") != "k8s-cloud" || dig(user, "password") != "s3cr=t;#x" || dig(user, "domain", "name") != "users" {
		t.Errorf("user sent as %v", user)
	}
	project := dig(*last, "auth", "scope", "project")
	if dig(project, "name") != "prod" || dig(project, "domain", "name") != "projects" {
		t.Errorf("scope sent as %v", project)
	}

	// The region given in the provider's config wins over cloud.conf's.
	clients, err = Connect(context.Background(), CloudRef{CloudConfFile: conf, Region: "RegionOne"}, nil)
	if err != nil || clients.Region != "RegionOne" || !strings.Contains(clients.Compute.Endpoint, "/one-internal/") {
		t.Errorf("region override: %v, %v", clients, err)
	}
}

func TestCloudConfApplicationCredentialAndInsecure(t *testing.T) {
	srv, _, last := keystone(t)
	conf := writeFile(t, t.TempDir(), "cloud.conf", `[Global]
auth-url=`+srv.URL+`/v3
application-credential-id=ac-id
application-credential-secret=ac-secret
region=RegionOne
tls-insecure=true
`)
	if _, err := Connect(context.Background(), CloudRef{CloudConfFile: conf}, nil); err != nil {
		t.Fatal(err) // without tls-insecure httptest's CA would be refused
	}
	ac := dig(*last, "auth", "identity", "application_credential")
	if dig(ac, "id") != "ac-id" || dig(ac, "secret") != "ac-secret" {
		t.Errorf("application credential sent as %v (body %v)", ac, *last)
	}
}

func TestCloudConfUseCloudsReadsTheNamedEntry(t *testing.T) {
	srv, _, last := keystone(t)
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	clouds := writeFile(t, dir, "clouds.yaml", `clouds:
  other: {auth: {auth_url: https://unused.invalid/v3}}
  k8s:
    auth: {auth_url: `+srv.URL+`/v3, username: u, password: p, project_id: p1, user_domain_id: default}
    region_name: RegionOne
    cacert: `+ca+`
`)
	conf := writeFile(t, dir, "cloud.conf", "[Global]\nuse-clouds=true\nclouds-file="+clouds+"\ncloud=k8s\n")
	if _, err := Connect(context.Background(), CloudRef{CloudConfFile: conf}, nil); err != nil {
		t.Fatal(err)
	}
	if dig(*last, "auth", "identity", "password", "user", "name") != "u" {
		t.Errorf("sent %v", *last)
	}
}

func TestCloudConfErrorsNameTheKeyAndTheFix(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ text, want string }{
		{"[Global]\nusername=u\n", "no auth-url"},
		{"[Global]\nauth-url=https://k.invalid/v3\ntls-insecure=maybe\n", `tls-insecure="maybe": write true or false`},
		{"[Global]\nauth-url=https://k.invalid/v3\ntrust-id=t\n", "trust-id is not supported"},
		{"[Global]\nuse-clouds=true\ncloud=k8s\n", "without clouds-file"},
		{"clouds:\n  k8s: {}\n", "is not a cloud.conf"},
	} {
		conf := writeFile(t, dir, "cloud.conf", c.text)
		_, err := Connect(context.Background(), CloudRef{CloudConfFile: conf}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.text, err, c.want)
		}
	}
	if _, err := Connect(context.Background(), CloudRef{CloudConfFile: filepath.Join(dir, "missing.conf")}, nil); err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("missing file: %v", err)
	}
}
