package registrar

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
)

// One server of GET /servers/detail from the world's Nova 26 at microversion 2.79 (trimmed).
const serverJSON = `{"id": "0b6b2f7e-98b4-4b0e-9d51-5f0b8f1f2c3d", "name": "World-Small_ab12", "status": "ACTIVE",
 "OS-EXT-AZ:availability_zone": "nova",
 "metadata": {"openstack-autoscaler:cluster": "world", "openstack-autoscaler:node-group": "small"},
 "flavor": {"vcpus": 2, "ram": 4096, "disk": 20, "ephemeral": 0, "swap": 0, "original_name": "m1.small", "extra_specs": {}},
 "created": "2026-11-22T14:40:00Z", "updated": "2026-11-22T14:40:13Z"}`

func TestNodeFor(t *testing.T) {
	var s servers.Server
	if err := json.Unmarshal([]byte(serverJSON), &s); err != nil {
		t.Fatal(err)
	}
	r := &Registrar{Region: "RegionOne", Decl: &Declarations{ClusterName: "world", NodeGroups: []Group{{
		Name: "small", Labels: map[string]string{"tier": "web"},
		Taints:   []corev1.Taint{{Key: "dedicated", Value: "web", Effect: corev1.TaintEffectNoSchedule}},
		Reserved: map[string]string{"memory": "512Mi"},
	}}}}
	node, err := r.NodeFor(s)
	if err != nil {
		t.Fatal(err)
	}
	if node.Name != "world-small-ab12" {
		t.Errorf("node name = %q", node.Name)
	}
	if node.Spec.ProviderID != membership.ProviderID(s.ID) {
		t.Errorf("providerID = %q", node.Spec.ProviderID)
	}
	for k, v := range map[string]string{"tier": "web", membership.NodeGroupLabel: "small",
		"node.kubernetes.io/instance-type": "m1.small", "topology.kubernetes.io/zone": "nova",
		"topology.kubernetes.io/region": "RegionOne"} {
		if node.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	if node.Annotations[KwokAnnotation] != "fake" || node.Annotations[ServerAnnotation] != s.ID {
		t.Errorf("annotations = %v", node.Annotations)
	}
	if m := node.Status.Allocatable[corev1.ResourceMemory]; m.Cmp(resource.MustParse("3584Mi")) != 0 {
		t.Errorf("allocatable memory = %s, want 3584Mi", m.String())
	}
	if len(node.Spec.Taints) != 1 {
		t.Errorf("taints = %v", node.Spec.Taints)
	}

	r.Decl.NodeGroups[0].Reserved["memory"] = "lots"
	if _, err := r.NodeFor(s); err == nil || !strings.Contains(err.Error(), "reserved.memory") {
		t.Errorf("bad reservation: err = %v, want one naming reserved.memory", err)
	}
}

func TestLoadDeclarationsNeedsClusterName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(path, []byte("nodeGroups: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDeclarations(path); err == nil || !strings.Contains(err.Error(), "clusterName") {
		t.Errorf("err = %v, want one naming clusterName", err)
	}
	// The provider's own config has more fields; they are ignored.
	if err := os.WriteFile(path, []byte("clusterName: world\nrefreshInterval: 10s\nnodeGroups:\n- name: a\n  maxSize: 3\n  labels: {x: z}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := LoadDeclarations(path)
	if err != nil || d.NodeGroups[0].Labels["x"] != "z" {
		t.Errorf("LoadDeclarations = %+v, %v", d, err)
	}
}
