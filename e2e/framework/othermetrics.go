package framework

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
)

// Where the other metrics server lives in the world.
const (
	OtherMetricsNamespace = "other-metrics"
	OtherMetricsService   = "other-metrics"
	// otherMetricsWritePort is where the test adapter takes metric values (fixed in its code).
	otherMetricsWritePort = 8080
)

// OtherMetrics is a metrics server that was there first, as prometheus-adapter or KEDA would be:
// sigs.k8s.io/custom-metrics-apiserver's test adapter, serving custom.metrics.k8s.io (values
// written with Write) and external.metrics.k8s.io (its fixed my-external-metric and
// other-external-metric) through APIServices of its own.
type OtherMetrics struct {
	// Service is its Service as the adapter's delegate flags take it; CAFile the CA of its
	// serving certificate.
	Service, CAFile string
	writeURL        string
}

// RunOtherMetrics starts the test adapter as a host process behind a Service of its own,
// registers it for custom.metrics.k8s.io (v1beta1, v1beta2) and external.metrics.k8s.io
// (v1beta1), and waits until they are available. It holds the metrics APIServices' lock until
// the test ends (StartConnectionMetrics WithDelegate uses it).
func RunOtherMetrics(t *testing.T, w *World) *OtherMetrics {
	t.Helper()
	ctx := context.Background()
	bin := BinaryOf(t, "test-adapter", "sigs.k8s.io/custom-metrics-apiserver/test-adapter")
	if l, err := net.Listen("tcp", ":"+strconv.Itoa(otherMetricsWritePort)); err != nil {
		t.Fatalf("the test adapter takes values on port %d, which is in use: %v", otherMetricsWritePort, err)
	} else {
		l.Close()
	}
	lock, err := lockAPIServices()
	if err != nil {
		t.Fatal(err)
	}
	var apis []string
	t.Cleanup(func() {
		agg := aggregator.NewForConfigOrDie(w.RestConfig)
		for _, name := range apis {
			_ = agg.ApiregistrationV1().APIServices().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
		_ = w.Kube.CoreV1().Namespaces().Delete(context.Background(), OtherMetricsNamespace, metav1.DeleteOptions{})
		_ = lock.Close()
	})
	dir := t.TempDir()
	pki, err := CreatePKI(dir, "other-metrics")
	if err != nil {
		t.Fatal(err)
	}
	hostIP := w.Env["OSA_WORLD_HOST_IP"]
	cert, key := pki.Issue(t, "other-metrics", x509.ExtKeyUsageServerAuth, []string{hostIP}, OtherMetricsService+"."+OtherMetricsNamespace+".svc")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := w.Env["KUBECONFIG"]
	Start(t, "test-adapter", bin, "--lister-kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
		"--authorization-kubeconfig", kubeconfig, "--bind-address", hostIP, "--secure-port", strconv.Itoa(port),
		"--tls-cert-file", cert, "--tls-private-key-file", key)
	if err := selectorlessService(ctx, w, OtherMetricsNamespace, OtherMetricsService, hostIP, port, 443); err != nil {
		t.Fatal(err)
	}
	apis, err = registerAPIServices(ctx, w, []apiregv1.APIServiceSpec{
		{Group: "custom.metrics.k8s.io", Version: "v1beta1"}, {Group: "custom.metrics.k8s.io", Version: "v1beta2"},
		{Group: "external.metrics.k8s.io", Version: "v1beta1"}}, OtherMetricsNamespace, OtherMetricsService, pki.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	return &OtherMetrics{Service: OtherMetricsNamespace + "/" + OtherMetricsService + ":443", CAFile: pki.CAFile,
		writeURL: "http://127.0.0.1:" + strconv.Itoa(otherMetricsWritePort) + "/write-metrics/"}
}

// Write sets a custom metric's value, object being its path as the API reads it
// (namespaces/default/services/queue/queue_items).
func (o *OtherMetrics) Write(t testing.TB, object, value string) {
	t.Helper()
	Eventually(t, 30*time.Second, time.Second, "the test adapter taking "+object, func() (bool, error) {
		resp, err := http.Post(o.writeURL+object, "application/json", strings.NewReader(strconv.Quote(value)))
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("POST %s: %s", object, resp.Status)
	})
}
