package leader

import (
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func lease(holder string, renewed time.Time, seconds int32) *coordinationv1.Lease {
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder,
		RenewTime: &metav1.MicroTime{Time: renewed}, LeaseDurationSeconds: &seconds}}
}

// The provider leads only while its autoscaler's Lease names this pod and has not expired;
// before the Lease is read, and when it is gone, nobody here leads. Each loss is told once.
func TestLeadsOnlyWhileTheLeaseNamesThisPod(t *testing.T) {
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	l := NewLease("kube-system", "cluster-autoscaler", "pod-a")
	l.now = func() time.Time { return now }
	var losses atomic.Int32
	l.OnLoss(func() { losses.Add(1) })
	if ok, why := l.Leads(); ok || why == "" {
		t.Errorf("before the Lease is read: leads %v (%q), want false with a reason", ok, why)
	}
	steps := []struct {
		lease *coordinationv1.Lease
		at    time.Time
		want  bool
	}{
		{lease("pod-a", now, 15), now, true},
		{lease("pod-a", now, 15), now.Add(10 * time.Second), true},
		{lease("pod-a", now, 15), now.Add(16 * time.Second), false}, // expired: the autoscaler stopped renewing
		{lease("pod-a", now.Add(16*time.Second), 15), now.Add(17 * time.Second), true},
		{lease("pod-b", now.Add(20*time.Second), 15), now.Add(20 * time.Second), false}, // handed over
		{nil, now.Add(21 * time.Second), false},
	}
	for i, s := range steps {
		now = s.at
		l.Observe(s.lease)
		if ok, why := l.Leads(); ok != s.want || (!ok && why == "") {
			t.Errorf("step %d: leads %v (%q), want %v", i, ok, why, s.want)
		}
	}
	for i := 0; i < 1000 && losses.Load() < 2; i++ { // hooks run on their own goroutine
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	if got := losses.Load(); got != 2 {
		t.Errorf("%d losses told, want 2 (expiry, handover)", got)
	}
}
