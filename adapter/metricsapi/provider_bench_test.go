package metricsapi

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
)

// A selector query over 1,000 pods with full windows (6 samples each), as the HPA makes every
// sync for a 1,000-replica Deployment; reports the 99th percentile besides the mean.
func BenchmarkSelector1000Pods(b *testing.B) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	st := store.New(30*time.Second, time.Hour)
	for s := 0; s < 6; s++ {
		r := report.Report{}
		for i := 0; i < 1000; i++ {
			name := fmt.Sprintf("web-%d", i)
			if s == 0 {
				_ = indexer.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(name),
					Labels: map[string]string{"app": "web"}}})
			}
			r.Pods = append(r.Pods, report.Pod{Namespace: "shop", Name: name, UID: name, Time: now.Add(time.Duration(s) * 5 * time.Second),
				Inbound: i % 50, InboundByPort: map[uint16]int{8080: i % 50}})
		}
		st.Add(r, now.Add(time.Duration(s)*5*time.Second))
	}
	p := &Provider{Store: st, Pods: corelisters.NewPodLister(indexer), Now: func() time.Time { return now.Add(26 * time.Second) }}
	sel := labels.SelectorFromSet(labels.Set{"app": "web"})
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		list, err := p.GetMetricBySelector(context.Background(), "shop", sel, info("tcp_connections"), labels.Everything())
		durations = append(durations, time.Since(start))
		if err != nil || len(list.Items) != 1000 {
			b.Fatalf("%d items, %v", len(list.Items), err)
		}
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	b.ReportMetric(float64(durations[len(durations)*99/100].Microseconds())/1000, "p99-ms")
}
