package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
)

// Scaler is a small stand-in for cluster-autoscaler's core decisions, for the demo when no
// cluster-autoscaler binary is at hand: it grows a group for its pending pods (sized with the
// group's template) and removes nodes that have held no pods for UnneededTime. It acts as
// 1.36.1 does: each loop starts with the provider's Refresh and the housekeeping of failed,
// unregistered and unfulfilled instances (Housekeeping), and nodes are deleted one call per
// node, all at once, tainted first and untainted when their call fails (DeleteNodesAsStock).
// Everything it does goes through the provider's gRPC API.
type Scaler struct {
	Driver       *Driver
	Group        string
	UnneededTime time.Duration
	Housekeeping Housekeeping

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
	s.Housekeeping.Run(ctx, s.Driver, loop)
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
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !n.Spec.Unschedulable && !Tainted(n) {
					ready++
				}
			}
		}
	}
	// Pending pods that fit on a ready member are waiting for the scheduler, not for a node.
	free := map[string]int64{}
	for _, n := range members {
		if !n.Spec.Unschedulable && !Tainted(n) {
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
		if err := s.Driver.IncreaseSize(ctx, s.Group, need); err != nil {
			return "", err
		}
		s.Housekeeping.ScaledUp(s.Group, need, target+need)
		return "scale up +" + strconv.Itoa(need) + " for " + strconv.Itoa(len(pending)) + " pending pods", nil
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
	deleted := 0
	var failed []error
	for name, err := range s.Driver.DeleteNodesAsStock(ctx, s.Group, unneeded...) {
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", name, err))
			continue
		}
		deleted++
		delete(s.emptySince, name)
	}
	return "scale down: deleted " + strconv.Itoa(deleted) + " of " + strconv.Itoa(len(unneeded)) + " empty node(s)", errors.Join(failed...)
}

func podCPU(p corev1.Pod) int64 {
	var m int64
	for _, c := range p.Spec.Containers {
		m += c.Resources.Requests.Cpu().MilliValue()
	}
	return m
}
