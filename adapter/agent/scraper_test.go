package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/sockdiag"
)

// Pods the agent cannot or must not measure: a gVisor pod is reported unsupported (not 0), a
// hostNetwork pod and a pod that is not running are skipped, a pod with no process on this host
// is left out.
func TestScrapeReportsWhatItCannotMeasure(t *testing.T) {
	proc := t.TempDir()
	// A /proc with only PID 1 (the host's namespace) and no pod processes.
	if err := os.MkdirAll(filepath.Join(proc, "1", "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(proc, "1", "cgroup"), []byte("0::/init.scope\n"), 0o644)
	_ = os.Symlink("net:[4026531840]", filepath.Join(proc, "1", "ns", "net"))
	gvisor := "gvisor"
	running := corev1.PodStatus{Phase: corev1.PodRunning}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "sandboxed", UID: "u1"}, Spec: corev1.PodSpec{RuntimeClassName: &gvisor}, Status: running},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "host", UID: "u2"}, Spec: corev1.PodSpec{HostNetwork: true}, Status: running},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "pending", UID: "u3"}, Status: corev1.PodStatus{Phase: corev1.PodPending}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "elsewhere", UID: "u4"}, Status: running},
	} {
		_ = indexer.Add(p)
	}
	s := &Scraper{Node: "n1", Pods: corelisters.NewPodLister(indexer), ProcRoot: proc, RescanEvery: time.Minute,
		Counter: sockdiag.NewCounter(sockdiag.Options{}), UnsupportedRuntimeClasses: map[string]bool{"gvisor": true}}
	if _, ok := s.Latest(); ok {
		t.Error("a report before the first scrape")
	}
	r := s.Scrape()
	if len(r.Pods) != 1 || r.Pods[0].Name != "sandboxed" || r.Pods[0].Unsupported == "" {
		t.Fatalf("report = %+v; want only the gVisor pod, marked unsupported", r.Pods)
	}
	if latest, ok := s.Latest(); !ok || latest.Node != "n1" || !latest.Time.Equal(r.Time) {
		t.Errorf("latest = %+v, %v", latest, ok)
	}
}

// A static pod's cgroups carry its config hash; the API shows its mirror pod, under another UID.
func TestStaticPodsAreFoundThroughTheirMirror(t *testing.T) {
	mirror := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "etcd-n1", UID: "5d4c3b2a-0000-4000-8000-000000000001",
		Annotations: map[string]string{MirrorAnnotation: "0c6b8e6f1d2a4b3c9e8f7a6b5c4d3e2f"}}}
	if got := CgroupUID(mirror); got != "0c6b8e6f1d2a4b3c9e8f7a6b5c4d3e2f" {
		t.Errorf("mirror pod: cgroup UID %q, want the config hash", got)
	}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}
	if got := CgroupUID(plain); got != "u1" {
		t.Errorf("plain pod: cgroup UID %q, want its UID", got)
	}
}
