package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
