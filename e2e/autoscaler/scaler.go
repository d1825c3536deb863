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
	for _, p := range pods.Items {
		switch {
		case p.Spec.NodeName != "":
			podsOn[p.Spec.NodeName]++
		case p.Status.Phase == corev1.PodPending && p.Spec.NodeSelector[membership.NodeGroupLabel] == s.Group:
			pending = append(pending, p)
		}
	}
	target, err := s.Driver.TargetSize(ctx, s.Group)
	if err != nil {
		return "", err
	}
	var members []corev1.Node
	for _, n := range loop.Nodes {
		if loop.NodeToGroup[n.Name] == s.Group {
			members = append(members, n)
		}
	}
	if len(pending) > 0 {
		if target > len(members) {
			return "", nil // a scale-up is under way: wait for its nodes
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
