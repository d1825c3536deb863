package provider

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

const novaGroups = `cloud: {name: world}
clusterName: prod
nodeGroups:
- {name: general, backend: nova, minSize: 0, maxSize: 5, nova: {flavor: m1.small, image: world-node-image}}
`

func newProvider(t *testing.T, cloud *openstacktest.Cloud, yaml string) (*Provider, error) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return New(context.Background(), cfg, cloud.Clients(), NewMetrics(prometheus.NewRegistry()))
}

// A listing that fails once (a 503 from Nova's API behind a load balancer) is retried like the
// other calls instead of failing the refresh.
func TestSnapshotRetriesAFailedListing(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	cloud.AddServer("prod-general-a", "ACTIVE", membership.Metadata("prod", "general"))
	cloud.AddServer("other-cluster", "ACTIVE", membership.Metadata("staging", "general"))
	var listings atomic.Int32
	cloud.Fault = func(r *http.Request) int {
		if strings.HasSuffix(r.URL.Path, "/servers/detail") && listings.Add(1) == 1 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	p, err := newProvider(t, cloud, novaGroups)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := p.Snapshot(context.Background())
	if err != nil {
		t.Fatalf("snapshot after one failed listing: %v", err)
	}
	if len(snap.Servers) != 1 || snap.Servers[0].Name != "prod-general-a" {
		t.Errorf("snapshot servers %v, want only the cluster's server", snap.Servers)
	}
}

// A group's flavor that the cloud does not have is refused at start, naming the group, the
// flavor and where to find valid ones.
func TestUnknownFlavorIsRefusedByName(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	_, err := newProvider(t, cloud, strings.Replace(novaGroups, "m1.small", "m9.huge", 1))
	if err == nil || !strings.Contains(err.Error(), `node group "general": flavor "m9.huge" not found`) || !strings.Contains(err.Error(), "openstack flavor list") {
		t.Errorf("unknown flavor: %v", err)
	}
}

// Discovered stacks become groups only when tagged for the cluster with usable bounds.
func TestDiscoveredGroup(t *testing.T) {
	for _, tc := range []struct {
		tags   []string
		wantOK bool
	}{
		{[]string{TagEnabled, TagClusterPrefix + "prod", TagMin + "1", TagMax + "4"}, true},
		{[]string{TagEnabled, TagClusterPrefix + "staging", TagMax + "4"}, false},
		{[]string{TagClusterPrefix + "prod", TagMax + "4"}, false},
		{[]string{TagEnabled, TagClusterPrefix + "prod"}, false},                             // no max
		{[]string{TagEnabled, TagClusterPrefix + "prod", TagMin + "5", TagMax + "4"}, false}, // min > max
	} {
		g, ok := DiscoveredGroup("pool", tc.tags, "prod")
		if ok != tc.wantOK {
			t.Errorf("tags %v: ok %v, want %v", tc.tags, ok, tc.wantOK)
		}
		if ok && (g.MinSize != 1 || g.MaxSize != 4 || g.Heat.Stack != "pool" || g.Heat.CountParameter != "count") {
			t.Errorf("tags %v: group %+v", tc.tags, g)
		}
	}
}
