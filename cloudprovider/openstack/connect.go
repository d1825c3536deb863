// Package openstack is the one place that authenticates to OpenStack: it reads clouds.yaml
// (gophercloud's config/clouds), builds the provider client and the service clients the
// provider uses, with the compute microversion it needs.
package openstack

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"golang.org/x/time/rate"
)

// ComputeMicroversion is the Nova API version requests are made at: 2.79 returns the flavor
// embedded in servers (2.47: name, vcpus, ram, disk, extra specs), accepts networks "none"
// (2.37) and tags (2.52), and is served by Nova since Train.
const ComputeMicroversion = "2.79"

// DefaultRequestTimeout bounds one HTTP request when the caller gives no client of its own.
const DefaultRequestTimeout = time.Minute

// CloudRef names a cloud in a clouds.yaml file.
type CloudRef struct {
	// CloudsFile is the path of clouds.yaml; empty means gophercloud's search path
	// (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, /etc/openstack).
	CloudsFile string
	// Cloud is the entry under "clouds:".
	Cloud string
	// CloudConfFile, instead of CloudsFile and Cloud, is the path of cloud-provider-openstack's
	// cloud.conf (INI, [Global] section), as the openstack-cloud-controller-manager reads it.
	CloudConfFile string
	// Region overrides the cloud's region_name when set.
	Region string
	// RateLimit is the most requests per second made to the cloud, in bursts of up to Burst
	// (at least 1); 0 is no limit.
	RateLimit float64
	Burst     int
}

// Clients holds authenticated service clients for one cloud and region.
type Clients struct {
	Provider      *gophercloud.ProviderClient
	Compute       *gophercloud.ServiceClient
	Orchestration *gophercloud.ServiceClient
	Image         *gophercloud.ServiceClient
	Region        string
}

// Connect authenticates with the cloud's credentials (password, token or application
// credential, as clouds.yaml says) and locates the services in the catalog. wrap, when set,
// wraps the HTTP transport (which carries clouds.yaml's cacert, cert/key and verify) to observe
// every call; ref.RateLimit, when set, limits them all (authentication included).
// Re-authentication on 401 is enabled: tokens expire while the provider runs for months.
func Connect(ctx context.Context, ref CloudRef, wrap func(http.RoundTripper) http.RoundTripper) (*Clients, error) {
	opts := []clouds.ParseOption{clouds.WithCloudName(ref.Cloud)}
	if ref.CloudsFile != "" {
		opts = append(opts, clouds.WithLocations(ref.CloudsFile))
	}
	if ref.CloudConfFile != "" {
		var err error
		if opts, err = cloudConfOptions(ref.CloudConfFile); err != nil {
			return nil, fmt.Errorf("cloud.conf: %w", err)
		}
		ref.Cloud = ref.CloudConfFile
	}
	if ref.Region != "" {
		opts = append(opts, clouds.WithRegion(ref.Region))
	}
	authOpts, endpointOpts, tlsConfig, err := clouds.Parse(opts...)
	if err != nil {
		if ref.CloudConfFile != "" {
			return nil, fmt.Errorf("cloud.conf %s: %w", ref.CloudConfFile, err)
		}
		return nil, fmt.Errorf("cloud %q in %s: %w (check the file and the cloud name)", ref.Cloud, describeFile(ref.CloudsFile), err)
	}
	authOpts.AllowReauth = true
	if ref.RateLimit > 0 {
		// Outside wrap, so the metrics' latency is OpenStack's, not the time spent waiting here.
		limiter := rate.NewLimiter(rate.Limit(ref.RateLimit), max(ref.Burst, 1))
		inner := wrap
		wrap = func(rt http.RoundTripper) http.RoundTripper {
			if inner != nil {
				rt = inner(rt)
			}
			return RateLimited(rt, limiter)
		}
	}
	provider, err := newProvider(ctx, authOpts, tlsConfig, wrap)
	if err != nil {
		return nil, fmt.Errorf("cloud %q: authenticating at %s: %w", ref.Cloud, authOpts.IdentityEndpoint, err)
	}
	c := &Clients{Provider: provider, Region: endpointOpts.Region}
	if c.Compute, err = gopenstack.NewComputeV2(provider, endpointOpts); err != nil {
		return nil, fmt.Errorf("cloud %q: compute (Nova) endpoint: %w", ref.Cloud, err)
	}
	c.Compute.Microversion = ComputeMicroversion
	// Heat and Glance are optional: a cloud without Heat can still run Nova node groups.
	if c.Orchestration, err = gopenstack.NewOrchestrationV1(provider, endpointOpts); err != nil {
		c.Orchestration = nil
	}
	if c.Image, err = gopenstack.NewImageV2(provider, endpointOpts); err != nil {
		c.Image = nil
	}
	return c, nil
}

func describeFile(path string) string {
	if path == "" {
		return "clouds.yaml (default search path)"
	}
	return path
}

// newProvider authenticates a provider client whose HTTP transport carries the cloud's TLS
// settings (cacert, cert/key, verify), wrapped by wrap when given (metrics).
func newProvider(ctx context.Context, authOpts gophercloud.AuthOptions, tlsConfig *tls.Config, wrap func(http.RoundTripper) http.RoundTripper) (*gophercloud.ProviderClient, error) {
	provider, err := gopenstack.NewClient(authOpts.IdentityEndpoint)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	var rt http.RoundTripper = transport
	if wrap != nil {
		rt = wrap(rt)
	}
	// A request OpenStack never answers must not hold its caller forever.
	provider.HTTPClient = http.Client{Timeout: DefaultRequestTimeout, Transport: rt}
	if err := gopenstack.Authenticate(ctx, provider, authOpts); err != nil {
		return nil, err
	}
	return provider, nil
}

// RateLimited returns next with every request first waiting for a token of limiter, as long as
// its context allows: one process shares the cloud's API with its other users, and a burst of
// deletions or a refresh loop gone wrong must not take their share (nor earn the project a 429).
func RateLimited(next http.RoundTripper, limiter *rate.Limiter) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if err := limiter.Wait(req.Context()); err != nil {
			return nil, fmt.Errorf("client-side rate limit of OpenStack calls (%g/s): %w", float64(limiter.Limit()), err)
		}
		return next.RoundTrip(req)
	})
}
