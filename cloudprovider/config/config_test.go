package config

import (
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
