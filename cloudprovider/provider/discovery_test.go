package provider

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack/openstacktest"
)

// A tagged stack that a configured group already drives (named by its name or its ID) is not
// discovered as a second group: two groups claiming one stack's nodes answer
// NodeGroupForNode at random, and both resize it. It is said once, not at every refresh.
func TestDiscoveryLeavesStacksOfConfiguredGroups(t *testing.T) {
	cloud := openstacktest.NewCloud(t)
	tags := []string{TagEnabled, TagClusterPrefix + "prod", TagMin + "0", TagMax + "5"}
	cloud.AddStack("prod-workers", map[string]string{"count": "0", "removal": ""}).Tags = tags
	batch := cloud.AddStack("prod-batch", map[string]string{"count": "0", "removal": ""})
	batch.Tags = tags
	cloud.AddStack("prod-spare", map[string]string{"count": "0", "removal": ""}).Tags = tags
	p, err := newProvider(t, cloud, fmt.Sprintf(`cloud: {name: world}
clusterName: prod
nodeGroups:
- {name: workers, backend: heat, minSize: 0, maxSize: 5, heat: {stack: prod-workers}}
- {name: batch, backend: heat, minSize: 0, maxSize: 5, heat: {stack: %s}}
autoDiscovery: {heatStacks: true}
`, batch.ID))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	klog.LogToStderr(false)
	klog.SetOutput(&logged)
	t.Cleanup(func() {
		klog.SetOutput(os.Stderr)
		klog.LogToStderr(true)
	})
	ctx := context.Background()
	for refresh := 1; refresh <= 2; refresh++ {
		snap, err := p.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, g := range p.discoverStacks(ctx, snap, nil) {
			ids = append(ids, g.ID())
		}
		if got := strings.Join(ids, ","); got != "prod-spare" {
			t.Errorf("refresh %d: discovered %q, want only prod-spare (prod-workers and prod-batch are configured groups' stacks)", refresh, got)
		}
	}
	klog.Flush()
	for _, want := range []string{`stack="prod-workers" group="workers"`, `stack="prod-batch" group="batch"`} {
		if n := strings.Count(logged.String(), want); n != 1 {
			t.Errorf("%s said %d times over two refreshes, want once; log:\n%s", want, n, logged.String())
		}
	}
}
