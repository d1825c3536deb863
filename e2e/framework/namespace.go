package framework

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Namespace creates a namespace for the test, after waiting out the deletion of one a previous
// run left (or is still deleting), and deletes it when the test ends.
func (w *World) Namespace(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	_ = w.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	Eventually(t, 120*time.Second, time.Second, "namespace "+name+" from a previous run to be gone", func() (bool, error) {
		_, err := w.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Errorf("still there (%v)", err)
	})
	if _, err := w.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}
