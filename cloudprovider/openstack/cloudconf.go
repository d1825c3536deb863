package openstack

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	gcfg "gopkg.in/gcfg.v1"
	"gopkg.in/yaml.v3"
)

// cloudConfName is the clouds.yaml entry a cloud.conf is read as.
const cloudConfName = "cloud-conf"

// cloudConf is the [Global] section of cloud-provider-openstack's cloud.conf (the
// openstack-cloud-controller-manager's Secret, usually `cloud-config` in kube-system). Its other
// sections ([LoadBalancer], [BlockStorage], …) are the controller manager's and are ignored.
type cloudConf struct {
	Global struct {
		AuthURL          string `gcfg:"auth-url"`
		Username         string
		UserID           string `gcfg:"user-id"`
		Password         string
		TenantID         string `gcfg:"tenant-id"`
		TenantName       string `gcfg:"tenant-name"`
		TrustID          string `gcfg:"trust-id"`
		DomainID         string `gcfg:"domain-id"`
		DomainName       string `gcfg:"domain-name"`
		TenantDomainID   string `gcfg:"tenant-domain-id"`
		TenantDomainName string `gcfg:"tenant-domain-name"`
		UserDomainID     string `gcfg:"user-domain-id"`
		UserDomainName   string `gcfg:"user-domain-name"`
		Region           string
		EndpointType     string `gcfg:"os-endpoint-type"`
		CAFile           string `gcfg:"ca-file"`
		TLSInsecure      string `gcfg:"tls-insecure"`
		CertFile         string `gcfg:"cert-file"`
		KeyFile          string `gcfg:"key-file"`
		AppCredID        string `gcfg:"application-credential-id"`
		AppCredName      string `gcfg:"application-credential-name"`
		AppCredSecret    string `gcfg:"application-credential-secret"`
		UseClouds        bool   `gcfg:"use-clouds"`
		CloudsFile       string `gcfg:"clouds-file"`
		Cloud            string
	}
}

// cloudConfOptions reads a cloud.conf as gophercloud's clouds.yaml parser takes it: the same
// credentials (password, application credential; user and project domains), region, interface
// and TLS settings (ca-file, tls-insecure, cert-file/key-file). With use-clouds=true it names a
// clouds.yaml entry instead (clouds-file, cloud), which is read as such.
func cloudConfOptions(path string) ([]clouds.ParseOption, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c cloudConf
	// FatalOnly: unknown sections and keys (the controller manager's own) are not errors.
	if err := gcfg.FatalOnly(gcfg.ReadStringInto(&c, string(raw))); err != nil {
		return nil, fmt.Errorf("%s is not a cloud.conf (INI with a [Global] section): %w", path, err)
	}
	g := c.Global
	if g.UseClouds {
		file := g.CloudsFile
		if file == "" {
			return nil, fmt.Errorf("%s: use-clouds=true without clouds-file: name the clouds.yaml file", path)
		}
		if g.Cloud == "" {
			return nil, fmt.Errorf("%s: use-clouds=true without cloud: name the entry of %s", path, file)
		}
		return []clouds.ParseOption{clouds.WithLocations(file), clouds.WithCloudName(g.Cloud)}, nil
	}
	if g.AuthURL == "" {
		return nil, fmt.Errorf("%s: [Global] has no auth-url: set it to Keystone's URL (or use-clouds=true with clouds-file and cloud)", path)
	}
	if g.TrustID != "" {
		return nil, fmt.Errorf("%s: trust-id is not supported: give the provider a password or an application credential of its own", path)
	}
	cloud := clouds.Cloud{
		AuthInfo: &clouds.AuthInfo{
			AuthURL: g.AuthURL, Username: g.Username, UserID: g.UserID, Password: g.Password,
			ProjectID: g.TenantID, ProjectName: g.TenantName,
			DomainID: g.DomainID, DomainName: g.DomainName,
			ProjectDomainID: g.TenantDomainID, ProjectDomainName: g.TenantDomainName,
			UserDomainID: g.UserDomainID, UserDomainName: g.UserDomainName,
			ApplicationCredentialID: g.AppCredID, ApplicationCredentialName: g.AppCredName, ApplicationCredentialSecret: g.AppCredSecret,
		},
		RegionName: g.Region, Interface: g.EndpointType,
		CACertFile: g.CAFile, ClientCertFile: g.CertFile, ClientKeyFile: g.KeyFile,
	}
	if g.AppCredSecret != "" {
		cloud.AuthType = clouds.AuthV3ApplicationCredential
	}
	if g.TLSInsecure != "" {
		insecure, err := strconv.ParseBool(strings.TrimSpace(g.TLSInsecure))
		if err != nil {
			return nil, fmt.Errorf("%s: tls-insecure=%q: write true or false", path, g.TLSInsecure)
		}
		verify := !insecure
		cloud.Verify = &verify
	}
	out, err := yaml.Marshal(clouds.Clouds{Clouds: map[string]clouds.Cloud{cloudConfName: cloud}})
	if err != nil {
		return nil, err
	}
	return []clouds.ParseOption{clouds.WithCloudsYAML(bytes.NewReader(out)), clouds.WithCloudName(cloudConfName)}, nil
}
