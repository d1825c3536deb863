package repair

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// evictRetry is how often an eviction a PodDisruptionBudget refused is asked again.
const evictRetry = 2 * time.Second

func cordon(ctx context.Context, kube kubernetes.Interface, node string) error {
	_, err := kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	return err
}

// drain evicts the node's pods through the eviction API, so PodDisruptionBudgets are respected,
// for at most timeout. It returns the pods still refused when the time is up ("namespace/name").
// It does not wait for the pods to terminate: the kubelet of a broken node cannot confirm it,
// and the pods are removed with the Node.
func drain(ctx context.Context, kube kubernetes.Interface, node string, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	evicted := map[string]bool{}
	for {
		pods, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
		if err != nil {
			return nil, err
		}
		var refused []string
		for _, p := range pods.Items {
			key := p.Namespace + "/" + p.Name
			if evicted[key] || !evictable(&p) {
				continue
			}
			err := kube.CoreV1().Pods(p.Namespace).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
			switch {
			case err == nil, apierrors.IsNotFound(err):
				evicted[key] = true
			case apierrors.IsTooManyRequests(err):
				refused = append(refused, key) // a PodDisruptionBudget does not allow it now
			default:
				return nil, fmt.Errorf("evicting %s: %w", key, err)
			}
		}
		if len(refused) == 0 {
			return nil, nil
		}
		if time.Now().Add(evictRetry).After(deadline) {
			sort.Strings(refused)
			return refused, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(evictRetry):
		}
	}
}

// evictable: DaemonSet pods stay (their controller ignores cordons and would recreate them),
// mirror pods cannot be evicted, and finished or terminating pods need nothing.
func evictable(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller && o.Kind == "DaemonSet" {
			return false
		}
	}
	return true
}
