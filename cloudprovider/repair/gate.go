package repair

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// HoldElsewhere: the autoscaler that leads runs in another pod, where the scaling in progress
// can be seen; this pod's repair waits.
const HoldElsewhere Hold = "autoscaler-elsewhere"

// WithAutoscaler is a gate that lets the loop act only while the cluster-autoscaler of this pod
// leads: its Lease is held (and not expired) by identity, the pod's name, which is what
// cluster-autoscaler writes as its holder. In the chart each pod runs an autoscaler and a
// provider; only the leading autoscaler scales, so only its pod's provider sees the scaling in
// progress that repair must not cut across.
func WithAutoscaler(kube kubernetes.Interface, namespace, lease, identity string) func(ctx context.Context) (bool, string) {
	return func(ctx context.Context) (bool, string) {
		l, err := kube.CoordinationV1().Leases(namespace).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Sprintf("cannot read cluster-autoscaler's Lease %s/%s: %v", namespace, lease, err)
		}
		holder := ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		if holder != identity {
			return false, fmt.Sprintf("cluster-autoscaler leads in pod %q, not in this one (%s)", holder, identity)
		}
		if l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil &&
			time.Since(l.Spec.RenewTime.Time) > time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second {
			return false, fmt.Sprintf("cluster-autoscaler's Lease %s/%s expired at %s: no autoscaler leads", namespace, lease,
				l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second).Format(time.RFC3339))
		}
		return true, ""
	}
}
