// Package leader says whether this provider may write to OpenStack on its own initiative:
// resume a deletion or a replacement recorded by a process before it, retry a stack update,
// repair a node. Only the provider whose autoscaler leads does; every other replica is a
// standby that keeps its state fresh from OpenStack and writes nothing, so that a Lease handover
// never makes two writers. What the autoscaler asks in a call is not gated here: only the
// leading autoscaler calls (a standby cluster-autoscaler builds no cloud provider until it
// leads), and in providerOnly mode only the elected replica is ready behind the Service.
package leader

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Gate says whether this provider leads now, and why not.
type Gate interface {
	Leads() (bool, string)
}

// Leads asks gate; no gate (nil) is a single replica, which always leads.
func Leads(gate Gate) (bool, string) {
	if gate == nil {
		return true, ""
	}
	return gate.Leads()
}

// Always leads: a single replica (the flag naming a Lease is not set).
type Always struct{}

// Leads is always true.
func (Always) Leads() (bool, string) { return true, "" }

// Lease follows a Lease held by the process this provider serves (cluster-autoscaler in the
// same pod), or by this provider itself (Elect). It leads while the Lease names identity and
// has not expired.
type Lease struct {
	Namespace, Name, Identity string
	now                       func() time.Time

	mu      sync.Mutex
	lease   *coordinationv1.Lease
	synced  bool
	onLoss  []func()
	onGain  []func()
	leading bool

	// Hooks run in order on one goroutine of their own: Leads is called under the groups'
	// locks, and a hook takes them.
	hookMu  sync.Mutex
	hooks   []func()
	signal  chan struct{}
	runHook sync.Once
}

// NewLease follows namespace/name for identity; Start begins the watch.
func NewLease(namespace, name, identity string) *Lease {
	return &Lease{Namespace: namespace, Name: name, Identity: identity, now: time.Now, signal: make(chan struct{}, 1)}
}

// Start watches the Lease (one object, through an informer) until ctx ends.
func (l *Lease) Start(ctx context.Context, kube kubernetes.Interface) {
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(l.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", l.Name).String()
		}))
	informer := factory.Coordination().V1().Leases().Informer()
	set := func(obj any) {
		if lease, ok := obj.(*coordinationv1.Lease); ok {
			l.Observe(lease)
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(any) { l.Observe(nil) },
	})
	factory.Start(ctx.Done())
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			l.mu.Lock()
			l.synced = true
			l.mu.Unlock()
		}
		// A Lease that expires changes nothing in the API: look at the clock too.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				l.Leads()
			}
		}
	}()
}

// Observe takes the Lease as read (nil: it does not exist).
func (l *Lease) Observe(lease *coordinationv1.Lease) {
	l.mu.Lock()
	l.lease = lease
	l.synced = true
	l.mu.Unlock()
	l.Leads()
}

// OnLoss calls f each time this provider stops leading (to stop writers at once).
func (l *Lease) OnLoss(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onLoss = append(l.onLoss, f)
}

// OnGain calls f each time this provider starts leading (its state must be read afresh).
func (l *Lease) OnGain(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onGain = append(l.onGain, f)
}

// Leads says whether the Lease names this provider's identity and has not expired.
func (l *Lease) Leads() (bool, string) {
	l.mu.Lock()
	ok, why := l.leadsLocked()
	lost, gained := l.leading && !ok, !l.leading && ok
	if l.leading != ok {
		klog.InfoS("leadership changed: this provider writes to OpenStack on its own only while it leads", "leads", ok, "why", why,
			"lease", l.Namespace+"/"+l.Name, "identity", l.Identity)
	}
	l.leading = ok
	var hooks []func()
	if lost {
		hooks = append(hooks, l.onLoss...)
	}
	if gained {
		hooks = append(hooks, l.onGain...)
	}
	l.mu.Unlock()
	if len(hooks) > 0 {
		l.deliver(hooks)
	}
	return ok, why
}

func (l *Lease) deliver(hooks []func()) {
	l.hookMu.Lock()
	l.hooks = append(l.hooks, hooks...)
	l.hookMu.Unlock()
	l.runHook.Do(func() { go l.runHooks() })
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

func (l *Lease) runHooks() {
	for range l.signal {
		for {
			l.hookMu.Lock()
			if len(l.hooks) == 0 {
				l.hookMu.Unlock()
				break
			}
			f := l.hooks[0]
			l.hooks = l.hooks[1:]
			l.hookMu.Unlock()
			f()
		}
	}
}

func (l *Lease) leadsLocked() (bool, string) {
	if !l.synced {
		return false, fmt.Sprintf("Lease %s/%s not read yet", l.Namespace, l.Name)
	}
	if l.lease == nil {
		return false, fmt.Sprintf("Lease %s/%s does not exist: no autoscaler leads", l.Namespace, l.Name)
	}
	holder := ""
	if l.lease.Spec.HolderIdentity != nil {
		holder = *l.lease.Spec.HolderIdentity
	}
	if holder != l.Identity {
		return false, fmt.Sprintf("Lease %s/%s is held by %q, not by this pod (%s)", l.Namespace, l.Name, holder, l.Identity)
	}
	if l.lease.Spec.RenewTime != nil && l.lease.Spec.LeaseDurationSeconds != nil {
		expires := l.lease.Spec.RenewTime.Add(time.Duration(*l.lease.Spec.LeaseDurationSeconds) * time.Second)
		if l.now().After(expires) {
			return false, fmt.Sprintf("Lease %s/%s expired at %s: nobody leads", l.Namespace, l.Name, expires.Format(time.RFC3339))
		}
	}
	return true, ""
}
