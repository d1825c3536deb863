package metricsapi

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
)

var now = time.Unix(1_800_000_000, 0)

func fixture(t *testing.T) *Provider {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	running := corev1.PodStatus{Phase: corev1.PodRunning}
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "u1", Labels: map[string]string{"app": "web"}}, Status: running},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-2", UID: "u2", Labels: map[string]string{"app": "web"}}, Status: running},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-3", UID: "u3", Labels: map[string]string{"app": "web"}},
			Status: corev1.PodStatus{Phase: corev1.PodPending}}, // starting: no samples
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-1", UID: "u4", Labels: map[string]string{"app": "db"}}, Status: running},
	} {
		_ = indexer.Add(p)
	}
	st := store.New(30*time.Second, 30*time.Second)
	st.Add(report.Report{Pods: []report.Pod{
		{Namespace: "shop", Name: "web-1", UID: "u1", Time: now, Inbound: 12, InboundByPort: map[uint16]int{8080: 10, 9090: 2}},
		{Namespace: "shop", Name: "web-2", UID: "u2", Time: now, Inbound: 8, InboundByPort: map[uint16]int{8080: 8}},
		{Namespace: "shop", Name: "db-1", UID: "u4", Time: now, Inbound: 3},
	}}, now)
	return &Provider{Store: st, Pods: corelisters.NewPodLister(indexer), Now: func() time.Time { return now.Add(time.Second) }}
}

func info(metric string) provider.CustomMetricInfo {
	return provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: metric}
}

func TestBySelectorAndPort(t *testing.T) {
	p := fixture(t)
	ctx := context.Background()
	list, err := p.GetMetricBySelector(ctx, "shop", labels.SelectorFromSet(labels.Set{"app": "web"}), info("tcp_connections"), labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range list.Items {
		got[it.DescribedObject.Name] = it.Value.String()
		if it.DescribedObject.Kind != "Pod" || it.WindowSeconds == nil || !it.Timestamp.Time.Equal(now) {
			t.Errorf("item %+v: want Kind Pod, a window and the sample's timestamp", it)
		}
	}
	if len(got) != 2 || got["web-1"] != "12" || got["web-2"] != "8" {
		t.Errorf("values = %v, want web-1 12, web-2 8, and web-3 left out (no samples)", got)
	}
	port, _ := labels.Parse("port=9090")
	list, err = p.GetMetricBySelector(ctx, "shop", labels.SelectorFromSet(labels.Set{"app": "web"}), info("tcp_connections"), port)
	byPort := map[string]string{}
	for _, it := range list.Items {
		byPort[it.DescribedObject.Name] = it.Value.String()
	}
	if err != nil || len(byPort) != 2 || byPort["web-1"] != "2" || byPort["web-2"] != "0" {
		t.Errorf("port 9090 values = %v, %v; want web-1 2 and web-2 0 (it does not listen on 9090: no connection on it)", byPort, err)
	}
	one, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "db-1"}, info("tcp_connections"), labels.Everything())
	if err != nil || one.Value.String() != "3" {
		t.Errorf("db-1 = %+v, %v; want 3", one, err)
	}
	if len(p.ListAllMetrics()) != 20 {
		t.Errorf("discovery lists %d metrics, want 5 for each of pods, services, deployments, statefulsets", len(p.ListAllMetrics()))
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	p := fixture(t)
	ctx := context.Background()
	_, err := p.GetMetricBySelector(ctx, "shop", labels.Everything(), info("http_requests"), labels.Everything())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "tcp_connections, tcp_connections_max") {
		t.Errorf("unknown metric: %v; want NotFound listing the served metrics", err)
	}
	nodes := provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "nodes"}, Metric: "tcp_connections"}
	if _, err := p.GetMetricBySelector(ctx, "", labels.Everything(), nodes, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("nodes: %v; want NotFound", err)
	}
	for _, sel := range []string{"colour=blue", "port!=80", "port=http"} {
		s, _ := labels.Parse(sel)
		_, err := p.GetMetricBySelector(ctx, "shop", labels.Everything(), info("tcp_connections"), s)
		if !apierrors.IsBadRequest(err) {
			t.Errorf("metric selector %q: %v; want BadRequest", sel, err)
		}
	}
	s, _ := labels.Parse("port=8080")
	if _, err := p.GetMetricBySelector(ctx, "shop", labels.Everything(), info("tcp_syn_backlog"), s); !apierrors.IsBadRequest(err) {
		t.Errorf("port selector on a metric without ports: %v; want BadRequest", err)
	}
	// A port typo is an error naming the ports the pods listen on, not a value of 0 that keeps
	// the HPA at minReplicas without a word.
	typo, _ := labels.Parse("port=8008")
	_, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-1"}, info("tcp_connections"), typo)
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "port 8008 is not a listening port of the pod (it listens on 8080, 9090)") {
		t.Errorf("port typo by name: %v; want BadRequest naming 8080, 9090", err)
	}
	if _, err := p.GetMetricBySelector(ctx, "shop", labels.SelectorFromSet(labels.Set{"app": "web"}), info("tcp_connections"), typo); !apierrors.IsBadRequest(err) {
		t.Errorf("port typo by selector: %v; want BadRequest", err)
	}
	twice, _ := labels.Parse("port=8080,port=9090")
	if _, err := p.GetMetricBySelector(ctx, "shop", labels.Everything(), info("tcp_connections"), twice); !apierrors.IsBadRequest(err) {
		t.Errorf("port given twice: %v; want BadRequest", err)
	}
	// Across all namespaces: refused, not answered by listing every pod of the cluster.
	if _, err := p.GetMetricBySelector(ctx, "", labels.Everything(), info("tcp_connections"), labels.Everything()); !apierrors.IsBadRequest(err) {
		t.Errorf("request without a namespace: %v; want BadRequest", err)
	}
	_, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-3"}, info("tcp_connections"), labels.Everything())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "no fresh tcp_connections") {
		t.Errorf("pod without samples: %v; want NotFound saying there is no fresh value", err)
	}
	// Stale: 31 s after the sample (TTL 30 s) nothing is served.
	p.Now = func() time.Time { return now.Add(31 * time.Second) }
	list, err := p.GetMetricBySelector(ctx, "shop", labels.Everything(), info("tcp_connections"), labels.Everything())
	if err != nil || len(list.Items) != 0 {
		t.Errorf("stale values served: %+v, %v", list, err)
	}
}

func TestObjectMetricsSumTheirPods(t *testing.T) {
	p := fixture(t)
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	ready, notReady := true, false
	_ = slices.Add(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"198.51.100.130"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-1"}},
			{Addresses: []string{"198.51.100.131"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-2"}},
		},
	})
	// The same Service's IPv6 slice lists web-1 again (dual stack).
	_ = slices.Add(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-v6", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv6,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"2001:db8::130"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-1"}},
		},
	})
	p.Slices = discoverylisters.NewEndpointSliceLister(slices)
	deployments := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = deployments.Add(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}})
	p.Deployments = appslisters.NewDeploymentLister(deployments)
	ctx := context.Background()

	svc := provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "services"}, Namespaced: true, Metric: "tcp_connections"}
	v, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, svc, labels.Everything())
	if err != nil || v.Value.String() != "12" || v.DescribedObject.Kind != "Service" {
		t.Errorf("service web = %+v, %v; want 12 (only the ready endpoint web-1, counted once over its two slices)", v, err)
	}
	dep := provider.CustomMetricInfo{GroupResource: schema.GroupResource{Group: "apps", Resource: "deployments"}, Namespaced: true, Metric: "tcp_connections"}
	v, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, dep, labels.Everything())
	if err != nil || v.Value.String() != "20" || v.DescribedObject.Kind != "Deployment" {
		t.Errorf("deployment web = %+v, %v; want 20 (web-1 12 + web-2 8; web-3 has no value)", v, err)
	}
	list, err := p.GetMetricBySelector(ctx, "shop", labels.SelectorFromSet(labels.Set{"tier": "front"}), dep, labels.Everything())
	if err != nil || len(list.Items) != 1 || list.Items[0].Value.String() != "20" {
		t.Errorf("deployments tier=front = %+v, %v", list, err)
	}
	if _, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "nope"}, dep, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("unknown deployment: %v; want NotFound", err)
	}

	// web-3 starts running and its agent has not reported it yet: a sum over web-1 and web-2
	// alone would understate the Deployment's load, so there is none.
	started, _ := p.Pods.Pods("shop").Get("web-3")
	started = started.DeepCopy()
	started.Status.Phase = corev1.PodRunning
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	all, _ := p.Pods.List(labels.Everything())
	for _, pod := range all {
		if pod.Name != "web-3" {
			_ = indexer.Add(pod)
		}
	}
	_ = indexer.Add(started)
	p.Pods = corelisters.NewPodLister(indexer)
	_, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, dep, labels.Everything())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "web-3") {
		t.Errorf("deployment with a running pod without a value: %v; want NotFound naming web-3", err)
	}
}

// withWorkloads adds a Deployment and a StatefulSet named web over the fixture's app=web pods.
func withWorkloads(p *Provider) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	deployments := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = deployments.Add(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{Selector: sel}})
	p.Deployments = appslisters.NewDeploymentLister(deployments)
	sets := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = sets.Add(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.StatefulSetSpec{Selector: sel}})
	p.StatefulSets = appslisters.NewStatefulSetLister(sets)
}

// A rollout or scale-up of a slow-starting app: web-2 runs but does not listen on 9090 yet, so
// it holds 0 connections on 9090. The Deployment's and the StatefulSet's sums on port=9090 are
// web-1's 2 (not a 400 that stalls the HPA), and the per-pod answer serves web-2 as 0. Only a
// port that no pod of the object listens on is the typo error naming the ports they listen on.
func TestPortSumCountsAPodNotListeningYetAsZero(t *testing.T) {
	p := fixture(t)
	withWorkloads(p)
	ctx := context.Background()
	web := types.NamespacedName{Namespace: "shop", Name: "web"}
	port9090, _ := labels.Parse("port=9090")
	typo, _ := labels.Parse("port=8008")
	for _, gr := range []schema.GroupResource{deploymentsResource, statefulSetsResource} {
		obj := provider.CustomMetricInfo{GroupResource: gr, Namespaced: true, Metric: "tcp_connections"}
		v, err := p.GetMetricByName(ctx, web, obj, port9090)
		if err != nil || v.Value.String() != "2" {
			t.Errorf("%s web port=9090 = %v, %v; want 2 (web-1 2 + web-2 0: not listening yet)", gr, v, err)
		}
		_, err = p.GetMetricByName(ctx, web, obj, typo)
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "8080, 9090") {
			t.Errorf("%s web port=8008 (no pod listens): %v; want BadRequest naming 8080, 9090", gr, err)
		}
	}
	list, err := p.GetMetricBySelector(ctx, "shop", labels.SelectorFromSet(labels.Set{"app": "web"}), info("tcp_connections"), port9090)
	got := map[string]string{}
	if list != nil {
		for _, it := range list.Items {
			got[it.DescribedObject.Name] = it.Value.String()
		}
	}
	if err != nil || len(got) != 2 || got["web-1"] != "2" || got["web-2"] != "0" {
		t.Errorf("pods app=web port=9090 = %v, %v; want web-1 2, web-2 0 (not listening yet: 0 connections on 9090)", got, err)
	}
	if _, err := p.GetMetricBySelector(ctx, "shop", labels.SelectorFromSet(labels.Set{"app": "web"}), info("tcp_connections"), typo); !apierrors.IsBadRequest(err) ||
		!strings.Contains(err.Error(), "8080, 9090") {
		t.Errorf("pods app=web port=8008 (no pod listens): %v; want BadRequest naming 8080, 9090", err)
	}
}

// A withheld value says why in the answer the HPA shows (kubectl describe hpa): web-2's node
// clock is 10 minutes ahead (its samples refused), web-1's agent stopped reporting.
func TestWithheldValuesSayWhy(t *testing.T) {
	p := fixture(t)
	withWorkloads(p)
	ctx := context.Background()
	ahead := now.Add(10 * time.Minute)
	p.Store.Add(report.Report{Pods: []report.Pod{{Namespace: "shop", Name: "web-2", UID: "u2", Time: ahead, Inbound: 8}}}, now)
	_, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-2"}, info("tcp_connections"), labels.Everything())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "stamps its samples 10m0s ahead of their receipt") {
		t.Errorf("pod whose node's clock is 10 min ahead: %v; want NotFound naming the skew", err)
	}
	dep := provider.CustomMetricInfo{GroupResource: deploymentsResource, Namespaced: true, Metric: "tcp_connections"}
	_, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, dep, labels.Everything())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "web-2 (its node's connection-agent stamps its samples 10m0s ahead") {
		t.Errorf("deployment with that pod: %v; want NotFound naming web-2 and the skew", err)
	}
	p.Now = func() time.Time { return now.Add(31 * time.Second) }
	_, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-1"}, info("tcp_connections"), labels.Everything())
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "its newest sample was received 31s ago, more than the TTL (30s)") {
		t.Errorf("pod whose agent stopped reporting: %v; want NotFound saying when its newest sample was received", err)
	}
}
