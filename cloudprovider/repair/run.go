package repair

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Metrics of node repair.
type Metrics struct {
	actions   *prometheus.CounterVec
	held      *prometheus.CounterVec
	repaired  *prometheus.CounterVec
	unhealthy *prometheus.GaugeVec
	leader    prometheus.Gauge
}

// NewMetrics registers the repair metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openstack_autoscaler_repair_actions_total",
			Help: "Repair steps by node group, action (start, soft-reboot, hard-reboot, replace) and outcome (ok, failed, drain-timeout, dry-run).",
		}, []string{"group", "action", "outcome"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openstack_autoscaler_repair_held_total",
			Help: "Looks at an unhealthy node that took no step, by node group and what held it (grace, scaling, too-many-unhealthy).",
		}, []string{"group", "hold"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openstack_autoscaler_repair_repaired_total",
			Help: "Nodes healthy again after a repair step, by node group and the last step.",
		}, []string{"group", "action"}),
		unhealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "openstack_autoscaler_repair_unhealthy_nodes",
			Help: "Unhealthy nodes per node group at the last look.",
		}, []string{"group"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "openstack_autoscaler_repair_leader",
			Help: "1 while this replica holds the repair Lease and repairs, 0 otherwise.",
		}),
	}
	reg.MustRegister(m.actions, m.held, m.repaired, m.unhealthy, m.leader)
	return m
}

// Election names the Lease that makes one replica of the provider the one that repairs.
type Election struct {
	Namespace, Name, Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod: 15 s, 10 s and 2 s when zero.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// RunElected watches the Nodes, and runs the loop while this process holds the Lease, until
// ctx ends (the Lease is then released so another replica takes over at once). Leadership lost
// (a renewal failed: the API server was slow, or another replica took the Lease) stops the loop
// and the replica campaigns again: it is never out for good.
func RunElected(ctx context.Context, kube kubernetes.Interface, election Election, loop *Loop) {
	defer prepare(ctx, kube, loop)()

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: election.Namespace, Name: election.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: election.Identity},
	}
	retry := cmp.Or(election.RetryPeriod, 2*time.Second)
	// One loop at a time: the loop of a term that just ended may still be finishing its pass
	// when the next term starts.
	var running sync.Mutex
	config := leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: "node-repair",
		LeaseDuration: cmp.Or(election.LeaseDuration, 15*time.Second), RenewDeadline: cmp.Or(election.RenewDeadline, 10*time.Second),
		RetryPeriod: retry,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				running.Lock()
				defer running.Unlock()
				if ctx.Err() != nil {
					return // this term ended while the last one's loop finished
				}
				loop.Metrics.leader.Set(1)
				loop.Run(ctx)
			},
			OnStoppedLeading: func() {
				loop.Metrics.leader.Set(0)
				klog.InfoS("node repair: not the leader (any more)", "lease", election.Namespace+"/"+election.Name)
			},
			OnNewLeader: func(identity string) {
				if identity != election.Identity {
					klog.InfoS("node repair: another replica leads", "leader", identity)
				}
			},
		},
	}
	for {
		leaderelection.RunOrDie(ctx, config)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
			klog.InfoS("node repair: campaigning again for the Lease", "lease", election.Namespace+"/"+election.Name)
		}
	}
}

// RunWithAutoscaler runs the loop until ctx ends, acting only while loop.Gate says this pod's
// cluster-autoscaler leads (WithAutoscaler): the autoscaler's own Lease is then the election,
// so repair runs where the scaling in progress is seen, and a second Lease could only pick the
// other pod and leave nobody repairing.
func RunWithAutoscaler(ctx context.Context, kube kubernetes.Interface, loop *Loop) {
	defer prepare(ctx, kube, loop)()
	loop.Run(ctx)
}

// prepare watches the Nodes and sets up the loop's clients and Events; the returned function
// stops the Events.
func prepare(ctx context.Context, kube kubernetes.Interface, loop *Loop) func() {
	factory := informers.NewSharedInformerFactory(kube, 10*time.Minute)
	loop.Nodes = factory.Core().V1().Nodes().Lister()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	loop.Recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "openstack-autoscaler-repair"})
	loop.Kube = kube
	return broadcaster.Shutdown
}
