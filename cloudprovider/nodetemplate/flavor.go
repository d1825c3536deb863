// Package nodetemplate turns a Nova flavor and a node group's declarations into the Kubernetes
// resources and labels its nodes have: capacity from the flavor, GPUs from its extra specs,
// allocatable after reservations.
package nodetemplate

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// GPUResource is the extended resource GPUs are advertised as.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// GPULabel is the label a GPU node carries, valued with the accelerator type (the PCI alias
// name, or "vgpu"). cluster-autoscaler asks for it through GPULabel to know that a node with
// the label but no allocatable GPUs yet is still starting its device plugin.
const GPULabel = "openstack-autoscaler.io/accelerator"

// DefaultMaxPods is the kubelet's default --max-pods.
const DefaultMaxPods = 110

// Flavor is what a node's size is made of.
type Flavor struct {
	ID           string
	Name         string
	VCPUs        int
	RAMMiB       int
	DiskGiB      int
	EphemeralGiB int
	ExtraSpecs   map[string]string
}

// FlavorFromServer reads the flavor Nova embeds in a server (compute microversion ≥ 2.47).
func FlavorFromServer(embedded map[string]any) (Flavor, error) {
	f := Flavor{ExtraSpecs: map[string]string{}}
	name, _ := embedded["original_name"].(string)
	if name == "" {
		return f, fmt.Errorf("server has no embedded flavor (compute microversion 2.47 or later is needed)")
	}
	f.Name = name
	f.VCPUs = intOf(embedded["vcpus"])
	f.RAMMiB = intOf(embedded["ram"])
	f.DiskGiB = intOf(embedded["disk"])
	f.EphemeralGiB = intOf(embedded["ephemeral"])
	if specs, ok := embedded["extra_specs"].(map[string]any); ok {
		for k, v := range specs {
			if s, ok := v.(string); ok {
				f.ExtraSpecs[k] = s
			}
		}
	}
	return f, nil
}

func intOf(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

// GPUs returns how many GPUs the flavor gives a server and their type: PCI passthrough aliases
// ("pci_passthrough:alias": "a100:2" or "a100:1,t4:1") or virtual GPUs ("resources:VGPU": "1").
func (f Flavor) GPUs() (count int, kind string) {
	if alias := f.ExtraSpecs["pci_passthrough:alias"]; alias != "" {
		var kinds []string
		for _, part := range strings.Split(alias, ",") {
			name, n, found := strings.Cut(strings.TrimSpace(part), ":")
			c := 1
			if found {
				if parsed, err := strconv.Atoi(n); err == nil {
					c = parsed
				}
			}
			count += c
			kinds = append(kinds, name)
		}
		return count, strings.Join(kinds, "-")
	}
	if v := f.ExtraSpecs["resources:VGPU"]; v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n, "vgpu"
		}
	}
	return 0, ""
}

// Capacity is the node's capacity: whole cores, the flavor's memory, its root plus ephemeral
// disk (rootVolumeGiB replaces the root disk when the server boots from a volume), max pods
// and GPUs.
func (f Flavor) Capacity(rootVolumeGiB, maxPods int) corev1.ResourceList {
	disk := f.DiskGiB
	if rootVolumeGiB > 0 {
		disk = rootVolumeGiB
	}
	if maxPods <= 0 {
		maxPods = DefaultMaxPods
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(f.VCPUs), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(int64(f.RAMMiB)<<20, resource.BinarySI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(int64(disk+f.EphemeralGiB)<<30, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(maxPods), resource.DecimalSI),
	}
	if n, _ := f.GPUs(); n > 0 {
		capacity[GPUResource] = *resource.NewQuantity(int64(n), resource.DecimalSI)
	}
	return capacity
}

// Allocatable subtracts reserved resources (system and kube reservations, eviction threshold)
// from capacity, never going below zero.
func Allocatable(capacity, reserved corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for name, q := range capacity {
		left := q.DeepCopy()
		if r, ok := reserved[name]; ok {
			left.Sub(r)
			if left.Sign() < 0 {
				left = *resource.NewQuantity(0, q.Format)
			}
		}
		out[name] = left
	}
	return out
}

// ParseReserved parses reservations written as {cpu: 500m, memory: 1Gi}.
func ParseReserved(reserved map[string]string) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	for name, value := range reserved {
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return nil, fmt.Errorf("reserved.%s %q: not a quantity (write it like 500m or 1Gi)", name, value)
		}
		out[corev1.ResourceName(name)] = q
	}
	return out, nil
}
