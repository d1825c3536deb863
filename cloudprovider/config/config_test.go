package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const valid = `
cloud: {name: world}
clusterName: prod
nodeGroups:
- name: small
  backend: nova
  minSize: 0
  maxSize: 5
  labels: {tier: web}
  taints: [{key: dedicated, value: web, effect: NoSchedule}]
  reserved: {cpu: 100m, memory: 512Mi}
  nova:
    flavor: m1.small
    image: world-node-image
    userData: |
      #cloud-config
      # {{ .ClusterName }}/{{ .NodeGroup }} {{ .ServerName }} tier={{ index .Labels "tier" }}
- name: stacked
  backend: heat
  minSize: 1
  maxSize: 3
  heat: {stack: prod-workers}
`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if c.RefreshInterval.Duration != 10*time.Second {
		t.Errorf("refreshInterval default = %s", c.RefreshInterval.Duration)
	}
	if h := c.NodeGroups[1].Heat; h.CountParameter != "count" || h.RemovalParameter != "removal" {
		t.Errorf("heat defaults = %+v", h)
	}
	ud, err := c.NodeGroups[0].RenderUserData(UserDataInput{ClusterName: "prod", NodeGroup: "small", ServerName: "prod-small-x1",
		Labels: c.NodeGroups[0].Labels})
	if err != nil || !strings.Contains(ud, "# prod/small prod-small-x1 tier=web") {
		t.Errorf("user data = %q, %v", ud, err)
	}
}

func TestParseErrorsNameFieldAndFix(t *testing.T) {
	for _, tc := range []struct {
		name, edit, from, want string
	}{
		{"no cloud", "cloud: {name: world}", "cloud: {}", "cloud.name is empty"},
		{"cloud.conf and clouds.yaml", "cloud: {name: world}", "cloud: {name: world, cloudConfFile: /dev/null}", "use either clouds.yaml (name, cloudsFile) or cloud-provider-openstack's cloud.conf"},
		{"cloud.conf missing", "cloud: {name: world}", "cloud: {cloudConfFile: /etc/kubernetes/missing-cloud.conf}", "cloud.cloudConfFile \"/etc/kubernetes/missing-cloud.conf\""},
		{"no cluster", "clusterName: prod", "clusterName: \"\"", "clusterName is empty"},
		{"min above max", "minSize: 1\n  maxSize: 3", "minSize: 4\n  maxSize: 3", "nodeGroups[1] (stacked).minSize 4 is above maxSize 3"},
		{"no flavor", "flavor: m1.small", "flavor: \"\"", "nodeGroups[0] (small).nova.flavor is empty"},
		{"bad backend", "backend: heat", "backend: magnum", `backend "magnum": use nova or heat`},
		{"bad taint", "effect: NoSchedule", "effect: Sometimes", "taints[0].effect \"Sometimes\""},
		{"bad reservation", "memory: 512Mi", "memory: lots", "reserved.memory \"lots\": not a quantity"},
		{"typo", "minSize: 0", "minSzie: 0", "unknown field \"minSzie\""},
		{"bad template", "{{ .ServerName }}", "{{ .ServerName ", "nova.userData"},
		{"bad duration", "clusterName: prod", "clusterName: prod\nrefreshInterval: soon", "is not a duration"},
		{"duplicate", "name: stacked", "name: small", "is used by another group"},
		{"region with slash", "clusterName: prod", "clusterName: prod\nproviderIDRegion: RegionOne/", `providerIDRegion "RegionOne/": a region name without '/'`},
		{"user-data field typo", "{{ .NodeGroup }}", "{{ .Nodegroup }}", `nodeGroups[0] (small).nova.userData: rendering it for a sample server`},
		{"fixed port, several servers", "image: world-node-image", "image: world-node-image\n    networks: [{port: 5d3c}]", "nodeGroups[0] (small).nova.networks[0]: a fixed port can be attached to one server only: set maxSize 1"},
		{"fixed IP, several servers", "image: world-node-image", "image: world-node-image\n    networks: [{uuid: 9a1e, fixedIP: 198.51.100.50}]", "nodeGroups[0] (small).nova.networks[0]: a fixed IP can be given to one server only"},
		{"size beyond int32", "maxSize: 5", "maxSize: 3000000000", "nodeGroups[0] (small).maxSize 3000000000: at most 2147483647"},
		{"threshold out of range", "minSize: 0", "minSize: 0\n  options: {scaleDownUtilizationThreshold: 1.5}", "options.scaleDownUtilizationThreshold 1.5: a fraction from 0 to 1"},
		{"negative option", "minSize: 0", "minSize: 0\n  options: {scaleDownUnneededTime: -5m}", "options.scaleDownUnneededTime -5m0s: must not be negative"},
		// A kubelet refuses to start with --node-labels in kubernetes.io/k8s.io outside the set it
		// may set on its own Node, and NodeRestriction refuses them: the node would never join.
		{"node-role label", "labels: {tier: web}", "labels: {tier: web, node-role.kubernetes.io/worker: \"\"}",
			`nodeGroups[0] (small).labels: key "node-role.kubernetes.io/worker": a kubelet may not set it on its own Node (NodeRestriction; kubelet --node-labels refuses it)`},
		{"k8s.io label", "labels: {tier: web}", "labels: {tier: web, team.k8s.io/owner: a}", `labels: key "team.k8s.io/owner": a kubelet may not set it`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(valid, tc.edit, tc.from, 1)
			if text == valid {
				t.Fatalf("edit %q not found", tc.edit)
			}
			_, err := Parse([]byte(text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// cluster-autoscaler 1.36's externalgrpc client reads only the released option fields: a group
// that sets options gets maxNodeStartupTime 0 from it. The configuration says so.
// Labels a kubelet may set on its own Node pass: the allowed well-known keys and the
// node.kubernetes.io and kubelet.kubernetes.io namespaces.
func TestKubeletLabelsThatMayJoin(t *testing.T) {
	text := strings.Replace(valid, "labels: {tier: web}", `labels: {tier: web, node.kubernetes.io/role: worker, topology.kubernetes.io/zone: nova, example.kubelet.kubernetes.io/x: y}`, 1)
	if _, err := Parse([]byte(text)); err != nil {
		t.Fatal(err)
	}
}

func TestWarningsAboutOptionsTheStockClientDrops(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings without options: %v", w)
	}
	c, err = Parse([]byte(strings.Replace(valid, "minSize: 0", "minSize: 0\n  options: {scaleDownUnneededTime: 2m, maxNodeStartupTime: 20m}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{`node group "small" sets options: cluster-autoscaler 1.36`, "maxNodeStartupTime 0", "maxNodeStartupTime is not read by any released cluster-autoscaler"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q lack %q", w, want)
		}
	}
}

// Two node groups driving the same group of a stack would both claim its nodes (the autoscaler
// is told either at random) and both resize it: refused, naming both groups and the stack.
func TestStackClaimedByTwoGroupsIsRefused(t *testing.T) {
	const twice = `
cloud: {name: world}
clusterName: prod
nodeGroups:
- {name: workers, backend: heat, minSize: 0, maxSize: 5, heat: {stack: prod-workers%s}}
- {name: batch, backend: heat, minSize: 0, maxSize: 5, heat: {stack: prod-workers%s}}
`
	for _, tc := range []struct {
		name, first, second, want string
	}{
		{"same stack", "", "", `nodeGroups[1] (batch).heat.stack: stack "prod-workers" is already node group "workers"'s (nodeGroups[0])`},
		{"one names the resource group, the other takes the only one", "", ", resourceGroup: nodes",
			`nodeGroups[1] (batch).heat.stack: stack "prod-workers" is already node group "workers"'s (nodeGroups[0])`},
		{"same resource group", ", resourceGroup: nodes", ", resourceGroup: nodes, countParameter: count_b",
			`nodeGroups[1] (batch).heat.stack: stack "prod-workers" is already node group "workers"'s (nodeGroups[0])`},
		{"two resource groups, one count parameter", ", resourceGroup: nodes", ", resourceGroup: batch, removalParameter: removal_b",
			`nodeGroups[1] (batch).heat.countParameter: "count" of stack "prod-workers" is already node group "workers"'s (nodeGroups[0])`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(fmt.Sprintf(twice, tc.first, tc.second)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	t.Run("each with its own resource group and parameters", func(t *testing.T) {
		text := fmt.Sprintf(twice, ", resourceGroup: nodes", ", resourceGroup: batch, countParameter: count_b, removalParameter: removal_b")
		if _, err := Parse([]byte(text)); err != nil {
			t.Errorf("two groups of one stack, each with its own resource group and parameters: %v", err)
		}
	})
}
