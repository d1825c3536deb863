package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The configuration examples in examples/ are valid.
func TestExamplesAreValid(t *testing.T) {
	clouds := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(clouds, []byte("clouds: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"provider-nova.yaml", "provider-heat.yaml"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(raw), "/etc/openstack/clouds.yaml", clouds)
		c, err := Parse([]byte(text))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, g := range c.NodeGroups {
			if g.Nova != nil && g.Nova.UserData != "" {
				if _, err := g.RenderUserData(UserDataInput{ClusterName: c.ClusterName, NodeGroup: g.Name, ServerName: "x", Labels: g.Labels}); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
	}
}

// The Nova example's user-data joins the node with kubeadm: it writes a JoinConfiguration
// (bootstrap token discovery) registering the node under the server's name with the group's
// labels (and the node-group label) as kubelet node labels and the group's taints, then runs
// kubeadm join with it.
func TestNovaExampleJoinsWithKubeadm(t *testing.T) {
	clouds := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(clouds, []byte("clouds: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "provider-nova.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(strings.ReplaceAll(string(raw), "/etc/openstack/clouds.yaml", clouds)))
	if err != nil {
		t.Fatal(err)
	}
	g := c.NodeGroups[0]
	taints := []corev1.Taint{{Key: "dedicated", Value: "web", Effect: corev1.TaintEffectNoSchedule}, {Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule}}
	out, err := g.RenderUserData(UserDataInput{ClusterName: c.ClusterName, NodeGroup: g.Name, ServerName: "prod-general-x7k2p", Labels: g.Labels, Taints: taints})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "#cloud-config\n") {
		t.Fatalf("user-data is not a cloud-config:\n%s", out)
	}
	var cloudConfig struct {
		WriteFiles []struct{ Path, Content, Permissions string } `json:"write_files"`
		RunCmd     [][]string                                    `json:"runcmd"`
	}
	if err := yaml.Unmarshal([]byte(out), &cloudConfig); err != nil {
		t.Fatalf("cloud-config: %v\n%s", err, out)
	}
	var joinPath, joinYAML string
	for _, f := range cloudConfig.WriteFiles {
		if strings.Contains(f.Content, "kind: JoinConfiguration") {
			joinPath, joinYAML = f.Path, f.Content
			if f.Permissions != "0600" {
				t.Errorf("%s permissions %q: it holds the bootstrap token, want 0600", f.Path, f.Permissions)
			}
		}
	}
	if joinPath == "" {
		t.Fatalf("no JoinConfiguration written:\n%s", out)
	}
	if len(cloudConfig.RunCmd) == 0 || strings.Join(cloudConfig.RunCmd[len(cloudConfig.RunCmd)-1], " ") != "kubeadm join --config "+joinPath {
		t.Errorf("runcmd %v: want kubeadm join --config %s last", cloudConfig.RunCmd, joinPath)
	}
	var join struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Discovery  struct {
			BootstrapToken struct {
				APIServerEndpoint string   `json:"apiServerEndpoint"`
				Token             string   `json:"token"`
				CACertHashes      []string `json:"caCertHashes"`
			} `json:"bootstrapToken"`
		} `json:"discovery"`
		NodeRegistration struct {
			Name             string                         `json:"name"`
			KubeletExtraArgs []struct{ Name, Value string } `json:"kubeletExtraArgs"`
			Taints           []corev1.Taint                 `json:"taints"`
		} `json:"nodeRegistration"`
	}
	if err := yaml.UnmarshalStrict([]byte(joinYAML), &join); err != nil {
		t.Fatalf("JoinConfiguration: %v\n%s", err, joinYAML)
	}
	if join.APIVersion != "kubeadm.k8s.io/v1beta4" || join.Discovery.BootstrapToken.Token == "" || join.Discovery.BootstrapToken.APIServerEndpoint == "" ||
		len(join.Discovery.BootstrapToken.CACertHashes) != 1 {
		t.Errorf("JoinConfiguration discovery: %+v", join)
	}
	if join.NodeRegistration.Name != "prod-general-x7k2p" {
		t.Errorf("node name %q, want the server's name", join.NodeRegistration.Name)
	}
	args := map[string]string{}
	for _, a := range join.NodeRegistration.KubeletExtraArgs {
		args[strings.ToLower(a.Name)] = a.Value
	}
	wantLabels := []string{"openstack-autoscaler.io/node-group=general"}
	for k, v := range g.Labels {
		wantLabels = append(wantLabels, k+"="+v)
	}
	for _, l := range wantLabels {
		if !slices.Contains(strings.Split(args["node-labels"], ","), l) {
			t.Errorf("kubelet node-labels %q lack %s", args["node-labels"], l)
		}
	}
	if args["cloud-provider"] != "external" {
		t.Errorf("kubelet cloud-provider %q, want external", args["cloud-provider"])
	}
	if !slices.EqualFunc(join.NodeRegistration.Taints, taints, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) && a.Value == b.Value }) {
		t.Errorf("taints %+v, want %+v", join.NodeRegistration.Taints, taints)
	}
}
