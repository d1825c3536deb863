package framework

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RealNodeLabel is the label and taint key of the world's real node (e2e/world/realnode.sh):
// pods that tolerate it and select it run in real containers.
const RealNodeLabel = "openstack-autoscaler.io/world-node"

var (
	imagesOnce sync.Once
	imagesErr  error
	imagesOut  []byte
)

// RealNode returns the world's real node, Ready, after importing the product's images built from
// the code under test (`make images`, then `realnode.sh images`, once per test process): the
// images world.sh up imported may be older than the code.
func RealNode(t testing.TB, w *World) *corev1.Node {
	t.Helper()
	name := w.Env["OSA_WORLD_REAL_NODE"]
	if name == "" {
		t.Fatal("the world has no real node (OSA_WORLD_REAL_NODE unset): start it again with e2e/world/world.sh up")
	}
	node, err := w.Kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("real node %s: %v (see /var/tmp/openstack-autoscaler/realnode/log)", name, err)
	}
	ready := false
	for _, c := range node.Status.Conditions {
		ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
	}
	if !ready {
		t.Fatalf("real node %s is not Ready (see /var/tmp/openstack-autoscaler/realnode/log/kubelet.log)", name)
	}
	imagesOnce.Do(func() {
		root, _ := filepath.Abs("..")
		cmd := exec.Command("sh", "-c", "make images && e2e/world/realnode.sh images")
		cmd.Dir = root
		imagesOut, imagesErr = cmd.CombinedOutput()
	})
	if imagesErr != nil {
		t.Fatalf("building and importing the product's images: %v\n%s", imagesErr, Tail(string(imagesOut), 2000))
	}
	return node
}

// OnRealNode is what a pod spec needs to run on the real node.
func OnRealNode() (nodeSelector map[string]string, tolerations []corev1.Toleration) {
	return map[string]string{RealNodeLabel: "real"}, []corev1.Toleration{{Key: RealNodeLabel, Operator: corev1.TolerationOpExists}}
}
