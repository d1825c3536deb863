package membership

import "testing"

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		meta      map[string]string
		wantGroup string
		wantOK    bool
	}{
		{Metadata("prod", "gpu"), "gpu", true},
		{Metadata("staging", "gpu"), "", false},             // another cluster's server
		{map[string]string{ClusterKey: "prod"}, "", false},  // no group
		{map[string]string{NodeGroupKey: "gpu"}, "", false}, // no cluster
		{nil, "", false},
	} {
		group, ok := Of(tc.meta, "prod")
		if group != tc.wantGroup || ok != tc.wantOK {
			t.Errorf("Of(%v) = %q %v, want %q %v", tc.meta, group, ok, tc.wantGroup, tc.wantOK)
		}
	}
}

func TestProviderID(t *testing.T) {
	const id = "9c5f8a0e-3b1d-4d8e-a0c1-5b7f0f3e2a11"
	if got := ProviderID(id); got != "openstack:///"+id {
		t.Errorf("ProviderID = %q", got)
	}
	if got := (IDs{}).ProviderID(id); got != "openstack:///"+id {
		t.Errorf("IDs{}.ProviderID = %q", got)
	}
	if got := (IDs{Region: "RegionOne"}).ProviderID(id); got != "openstack://RegionOne/"+id {
		t.Errorf("IDs{RegionOne}.ProviderID = %q", got)
	}
	for _, tc := range []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"openstack:///" + id, id, true},
		{"openstack:///", "", false},
		{"openstack://RegionOne/" + id, id, true},
		{"openstack://RegionOne/", "", false},
		{"openstack://" + id, "", false},
		{"openstack://RegionOne/a/" + id, "", false},
		{"openstack-autoscaler:///g0/world-g0-abcde", "", false},
		{"aws:///us-east-1a/i-0abc", "", false},
		{"", "", false},
	} {
		got, ok := ServerID(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("ServerID(%q) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}
