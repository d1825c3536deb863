package framework

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Namespace creates a namespace for the test, after waiting out the deletion of one a previous
// run left (or is still deleting), and deletes it when the test ends.
func (w *World) Namespace(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	_ = w.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err := ensureNamespace(ctx, w.Kube, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// ensureNamespace makes namespace name exist, waiting (up to 2 minutes) for a terminating one
// to be gone first: nothing can be created in a namespace being deleted.
func ensureNamespace(ctx context.Context, kube kubernetes.Interface, name string) error {
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		ns, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			if err == nil || !apierrors.IsAlreadyExists(err) {
				return err
			}
		case err == nil && ns.DeletionTimestamp == nil:
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: still being deleted after 2 minutes (%v)", name, err)
		}
	}
}
