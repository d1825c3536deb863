package autoscaler

import (
	"context"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
)

// Scaler is a small stand-in for cluster-autoscaler's core decisions, for the demo when no
// cluster-autoscaler binary is at hand: it grows a group for its pending pods (sized with the
// group's template) and removes nodes that have held no pods for UnneededTime (cordon, then
// NodeGroupDeleteNodes). Everything it does goes through the provider's gRPC API.
type Scaler struct {
	Driver       *Driver
	Group        string
	UnneededTime time.Duration

	emptySince map[string]time.Time
}

// Step runs one loop and says what it did ("" for nothing).
func (s *Scaler) Step(ctx context.Context) (string, error) {
	if s.emptySince == nil {
		s.emptySince = map[string]time.Time{}
	}
	loop, err := s.Driver.RunLoop(ctx)
	if err != nil {
		return "", err
	}
	pods, err := s.Driver.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	var pending []corev1.Pod
	podsOn := map[string]int{}
	usedCPU := map[string]int64{}
	for _, p := range pods.Items {
		switch {
		case p.Spec.NodeName != "":
			podsOn[p.Spec.NodeName]++
			usedCPU[p.Spec.NodeName] += podCPU(p)
		case p.Status.Phase == corev1.PodPending && p.Spec.NodeSelector[membership.NodeGroupLabel] == s.Group:
			pending = append(pending, p)
		}
	}
	target, err := s.Driver.TargetSize(ctx, s.Group)
	if err != nil {
		return "", err
	}
	var members []corev1.Node
	ready := 0
	for _, n := range loop.Nodes {
		if loop.NodeToGroup[n.Name] == s.Group {
			members = append(members, n)
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !n.Spec.Unschedulable {
					ready++
				}
			}
		}
	}
	// Pending pods that fit on a ready member are waiting for the scheduler, not for a node.
	free := map[string]int64{}
	for _, n := range members {
		if !n.Spec.Unschedulable {
			free[n.Name] = n.Status.Allocatable.Cpu().MilliValue() - usedCPU[n.Name]
		}
	}
	var unplaceable []corev1.Pod
	for _, p := range pending {
		placed := false
		for name, left := range free {
			if left >= podCPU(p) {
				free[name] -= podCPU(p)
				placed = true
				break
			}
		}
		if !placed {
			unplaceable = append(unplaceable, p)
		}
	}
	pending = unplaceable
	if len(pending) > 0 {
		if target > ready {
			return "", nil // a scale-up is under way: wait until its nodes are ready and take pods
		}
		template, err := s.Driver.Template(ctx, s.Group)
		if err != nil {
			return "", err
		}
		need := min(NodesFor(template, pending), int(loop.Groups[s.Group].GetMaxSize())-target)
		if need <= 0 {
			return "", nil
		}
		return "scale up +" + strconv.Itoa(need) + " for " + strconv.Itoa(len(pending)) + " pending pods", s.Driver.IncreaseSize(ctx, s.Group, need)
	}
	var unneeded []corev1.Node
	for _, n := range members {
		if podsOn[n.Name] > 0 {
			delete(s.emptySince, n.Name)
			continue
		}
		since, seen := s.emptySince[n.Name]
		if !seen {
			s.emptySince[n.Name] = time.Now()
		} else if time.Since(since) >= s.UnneededTime && target-len(unneeded) > int(loop.Groups[s.Group].GetMinSize()) {
			unneeded = append(unneeded, n)
		}
	}
	if len(unneeded) == 0 {
		return "", nil
	}
	for _, n := range unneeded {
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		if _, err := s.Driver.Kube.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return "", err
		}
		delete(s.emptySince, n.Name)
	}
	return "scale down: delete " + strconv.Itoa(len(unneeded)) + " empty node(s)", s.Driver.DeleteNodes(ctx, s.Group, unneeded...)
}

func podCPU(p corev1.Pod) int64 {
	var m int64
	for _, c := range p.Spec.Containers {
		m += c.Resources.Requests.Cpu().MilliValue()
	}
	return m
}
