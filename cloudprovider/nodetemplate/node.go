package nodetemplate

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
)

// Spec is everything a node of a group is made of.
type Spec struct {
	NodeName      string
	NodeGroup     string
	Flavor        Flavor
	Region, Zone  string
	Labels        map[string]string // the group's declared labels
	Taints        []corev1.Taint
	Reserved      corev1.ResourceList
	MaxPods       int
	RootVolumeGiB int
}

// Node is the Node a server of the group registers as: the labels the kubelet and the OpenStack
// cloud controller manager set (hostname, os, arch, instance type, region, zone), the group
// label, a GPU label for GPU flavors, then the group's own labels; its taints; capacity from the
// flavor and allocatable after reservations. The provider's scale-up template and the local
// world's registrar both build nodes with it, so simulation and reality agree.
func Node(s Spec) *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":           s.NodeName,
		"kubernetes.io/os":                 "linux",
		"kubernetes.io/arch":               "amd64",
		"node.kubernetes.io/instance-type": s.Flavor.Name,
		"topology.kubernetes.io/region":    s.Region,
		membership.NodeGroupLabel:          s.NodeGroup,
	}
	if s.Zone != "" {
		labels["topology.kubernetes.io/zone"] = s.Zone
	}
	if n, kind := s.Flavor.GPUs(); n > 0 {
		labels[GPULabel] = kind
	}
	for k, v := range s.Labels {
		labels[k] = v
	}
	capacity := s.Flavor.Capacity(s.RootVolumeGiB, s.MaxPods)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: s.NodeName, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: append([]corev1.Taint(nil), s.Taints...)},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: Allocatable(capacity, s.Reserved),
			NodeInfo:    corev1.NodeSystemInfo{Architecture: "amd64", OperatingSystem: "linux"},
			Phase:       corev1.NodeRunning,
		},
	}
}
