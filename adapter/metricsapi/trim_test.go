package metricsapi

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
)

// realisticPod is a Deployment's pod as the API serves it: two containers with env, probes and
// mounts, a projected token volume, conditions, container statuses and managed fields.
func realisticPod(i int) *corev1.Pod {
	name := fmt.Sprintf("web-7d9c6b5f4-%05d", i)
	container := func(n string) corev1.Container {
		return corev1.Container{Name: n, Image: "registry.example/shop/" + n + ":1.24.3",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{{Name: "DATABASE_URL", Value: "postgres://db.shop.svc:5432/shop"}, {Name: "LOG_LEVEL", Value: "info"},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			Resources:      corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intOrString(8080)}}}}
	}
	now := metav1.NewTime(time.Unix(1_800_000_000, 0))
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(fmt.Sprintf("5d4c3b2a-0000-4000-8000-%012d", i)),
			ResourceVersion: "123456", Labels: map[string]string{"app": "web", "pod-template-hash": "7d9c6b5f4"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-30T10:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9c6b5f4", UID: "rs-uid"}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update", APIVersion: "v1", Time: &now,
				FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: make([]byte, 1200)}}}},
		Spec: corev1.PodSpec{NodeName: fmt.Sprintf("prod-general-%03d", i%300), Containers: []corev1.Container{container("web"), container("sidecar")},
			Volumes: []corev1.Volume{{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "198.51.100.130",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Ready: true, Image: "registry.example/shop/web:1.24.3",
				ImageID:     "registry.example/shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				ContainerID: "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}},
	}
}

func intOrString(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }

// heldBytes is the heap an indexer of n pods holds, each passed through transform.
func heldBytes(n int, transform func(any) (any, error)) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for i := 0; i < n; i++ {
		obj, _ := transform(realisticPod(i))
		_ = idx.Add(obj)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(idx)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc)
}

// At 30,000 pods the adapter keeps only what it reads of each: measured against whole pods.
func TestTrimmedPodsCostAFractionOfWholeOnes(t *testing.T) {
	const pods = 30_000
	whole := heldBytes(pods, func(o any) (any, error) { return o, nil })
	trimmed := heldBytes(pods, TrimPod)
	t.Logf("%d pods: whole %.1f MiB (%.0f B/pod), trimmed %.1f MiB (%.0f B/pod): %.1f× less",
		pods, whole/(1<<20), whole/pods, trimmed/(1<<20), trimmed/pods, whole/trimmed)
	if trimmed*3 > whole {
		t.Errorf("trimmed pods hold %.0f bytes, whole ones %.0f: want at least 3× less", trimmed, whole)
	}
	pod, _ := TrimPod(realisticPod(1))
	p := pod.(*corev1.Pod)
	if p.Name == "" || p.UID == "" || p.Labels["app"] != "web" || p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
		t.Errorf("trimmed pod lost what the adapter reads: %+v", p)
	}
}
