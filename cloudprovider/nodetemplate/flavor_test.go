package nodetemplate

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The flavor object Nova 26 (Zed) embeds in GET /servers/detail at compute microversion 2.79.
const embeddedFlavor = `{"vcpus": 8, "ram": 32768, "disk": 80, "ephemeral": 10, "swap": 0,
 "original_name": "g1.large", "extra_specs": {"pci_passthrough:alias": "a100:2", "hw:cpu_policy": "shared"}}`

func TestFlavorFromServer(t *testing.T) {
	var embedded map[string]any
	if err := json.Unmarshal([]byte(embeddedFlavor), &embedded); err != nil {
		t.Fatal(err)
	}
	f, err := FlavorFromServer(embedded)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "g1.large" || f.VCPUs != 8 || f.RAMMiB != 32768 || f.DiskGiB != 80 || f.EphemeralGiB != 10 {
		t.Errorf("flavor = %+v", f)
	}
	if f.ExtraSpecs["hw:cpu_policy"] != "shared" {
		t.Errorf("extra specs = %v", f.ExtraSpecs)
	}
	// Before microversion 2.47 a server only carries the flavor's id and links.
	if _, err := FlavorFromServer(map[string]any{"id": "3f3da3fb"}); err == nil {
		t.Error("a flavor reference without details was accepted")
	}
}

func TestGPUs(t *testing.T) {
	for _, tc := range []struct {
		specs     map[string]string
		wantCount int
		wantKind  string
	}{
		{nil, 0, ""},
		{map[string]string{"pci_passthrough:alias": "a100:2"}, 2, "a100"},
		{map[string]string{"pci_passthrough:alias": "a100"}, 1, "a100"},
		{map[string]string{"pci_passthrough:alias": "a100:1, t4:2"}, 3, "a100-t4"},
		{map[string]string{"resources:VGPU": "1"}, 1, "vgpu"},
		{map[string]string{"resources:VGPU": "0"}, 0, ""},
	} {
		n, kind := Flavor{ExtraSpecs: tc.specs}.GPUs()
		if n != tc.wantCount || kind != tc.wantKind {
			t.Errorf("GPUs(%v) = %d %q, want %d %q", tc.specs, n, kind, tc.wantCount, tc.wantKind)
		}
	}
}

func TestCapacityAndAllocatable(t *testing.T) {
	f := Flavor{Name: "g1.large", VCPUs: 8, RAMMiB: 32768, DiskGiB: 80, EphemeralGiB: 10,
		ExtraSpecs: map[string]string{"pci_passthrough:alias": "a100:2"}}
	capacity := f.Capacity(0, 0)
	want := map[corev1.ResourceName]string{
		corev1.ResourceCPU: "8", corev1.ResourceMemory: "32Gi", corev1.ResourceEphemeralStorage: "90Gi",
		corev1.ResourcePods: "110", GPUResource: "2",
	}
	for name, q := range want {
		got := capacity[name]
		if got.Cmp(resource.MustParse(q)) != 0 {
			t.Errorf("capacity %s = %s, want %s", name, got.String(), q)
		}
	}
	// Boot from a 200 GiB volume: the volume is the root disk.
	if got := f.Capacity(200, 50)[corev1.ResourceEphemeralStorage]; got.Cmp(resource.MustParse("210Gi")) != 0 {
		t.Errorf("boot-from-volume ephemeral-storage = %s, want 210Gi", got.String())
	}
	alloc := Allocatable(capacity, corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("40Gi"),
	})
	if got := alloc[corev1.ResourceCPU]; got.Cmp(resource.MustParse("7500m")) != 0 {
		t.Errorf("allocatable cpu = %s, want 7500m", got.String())
	}
	if got := alloc[corev1.ResourceMemory]; !got.IsZero() {
		t.Errorf("allocatable memory = %s, want 0 when reservations exceed capacity", got.String())
	}
	if got := alloc[GPUResource]; got.Cmp(resource.MustParse("2")) != 0 {
		t.Errorf("allocatable gpus = %s, want 2", got.String())
	}
}
