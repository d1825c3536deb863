//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// servedSerial is the serial of the certificate a TLS server presents (read before the server
// asks for a client certificate this client does not have).
func servedSerial(addr string) (string, error) {
	var serial string
	conf := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, // only reading what is presented
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if c, err := x509.ParseCertificate(raw[0]); err == nil {
				serial = c.SerialNumber.String()
			}
			return nil
		}}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, conf)
	if err == nil {
		conn.Close()
	}
	if serial == "" {
		return "", fmt.Errorf("%s presented no certificate: %v", addr, err)
	}
	return serial, nil
}

// Certificates renewed in their Secrets (as cert-manager renews them: same CA, new key and
// certificate) are taken by the running pods without a restart, while an HPA reads the metric:
// the adapter's serving certificate (the API server's connection), the agent's serving
// certificate and the adapter's client certificate (their connection). The first certificates
// expire four minutes after they are made: a pod that kept one would fail after that, and the
// reads of the metric, every two seconds from the rotation to past the expiry, would show it.
func TestCertificatesRotateWithoutRestarts(t *testing.T) {
	w := framework.Connect(t)
	framework.RealNode(t, w)
	helm := framework.HelmBinary(t)
	ctx := context.Background()
	const rel, ns, app = "osa-rot", "osa-rotation-e2e", "rot-web"
	waitMetricsAPIsFree(t, w)
	testNamespace(t, w, ns)
	t.Cleanup(func() { _, _ = helmRun(w, helm, "uninstall", rel, "-n", ns, "--wait", "--timeout", "2m") })
	logNamespaceOnFailure(t, w, ns, "connection-agent", "connection-metrics-adapter")
	fullname := rel + "-openstack-autoscaler"
	agentSvc, adapterSvc := fullname+"-connection-agent."+ns+".svc", fullname+"-connection-metrics-adapter."+ns+".svc"
	pki := framework.NewPKI(t, "rotation-ca")
	const firstValidity = 4 * time.Minute
	pki.Validity = firstValidity
	issued := time.Now()
	secrets := func(generation string) {
		t.Helper()
		for _, s := range []struct {
			name, cn string
			usage    x509.ExtKeyUsage
			dns      []string
		}{
			{"agent-tls", "connection-agent", x509.ExtKeyUsageServerAuth, []string{agentSvc}},
			{"adapter-client-tls", "connection-metrics-adapter", x509.ExtKeyUsageClientAuth, nil},
			{"adapter-serving-tls", adapterSvc, x509.ExtKeyUsageServerAuth, []string{adapterSvc}},
		} {
			certPath, keyPath := pki.Issue(t, s.name+"-"+generation, s.usage, nil, append(s.dns, s.cn)...)
			crt, _ := os.ReadFile(certPath)
			key, _ := os.ReadFile(keyPath)
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.name}, Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": pki.CAPEM()}}
			if _, err := w.Kube.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
				if _, err := w.Kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	secrets("1")

	selector, tolerations := framework.OnRealNode()
	values := map[string]any{
		"serviceMonitors": map[string]any{"enabled": false},
		"certificates":    map[string]any{"mode": "existingSecret"},
		"connectionMetrics": map[string]any{
			"agent":   map[string]any{"nodeSelector": selector, "interval": "2s"},
			"adapter": map[string]any{"nodeSelector": selector, "tolerations": tolerations, "window": "6s", "ttl": "10s", "pullInterval": "2s"},
			"tls":     map[string]any{"agentSecret": "agent-tls", "adapterClientSecret": "adapter-client-tls", "adapterServingSecret": "adapter-serving-tls"},
		},
	}
	raw, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	valuesFile := filepath.Join(t.TempDir(), "rotation.yaml")
	if err := os.WriteFile(valuesFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := helmRun(w, helm, "install", rel, framework.ChartDir(), "-n", ns, "-f", valuesFile, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	var pods *corev1.PodList
	framework.Eventually(t, 90*time.Second, time.Second, "the agent and both adapter pods Ready", func() (bool, error) {
		if pods, err = w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=openstack-autoscaler"}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if !podReady(p) {
				return false, fmt.Errorf("%s not Ready", p.Name)
			}
		}
		return len(pods.Items) == 3, fmt.Errorf("%d pods", len(pods.Items))
	})

	// A workload holding 10 connections, its value read as an HPA reads it.
	realWorkload(t, w, ns, app)
	var target string
	framework.Eventually(t, 90*time.Second, time.Second, "the workload's pod Ready", func() (bool, error) {
		list, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil || len(list.Items) != 1 || !podReady(list.Items[0]) {
			return false, err
		}
		target = net.JoinHostPort(list.Items[0].Status.PodIP, "8080")
		return true, nil
	})
	_, stopLoad := holdSpread(t, w, func() []string { return []string{target} }, func() int { return 10 })
	defer stopLoad()
	read := func() error {
		out := kubectl(t, w, "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/"+ns+"/pods/*/tcp_connections?labelSelector=app%3D"+app)
		var list metricValueList
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return fmt.Errorf("%s", framework.Tail(out, 300))
		}
		if len(list.Items) != 1 || list.Items[0].Value.Value() != 10 {
			return fmt.Errorf("values %+v", list.Items)
		}
		return nil
	}
	framework.Eventually(t, 60*time.Second, 2*time.Second, "10 connections served", func() (bool, error) { err := read(); return err == nil, err })

	restarts := map[string]int32{}
	addrs := map[string]string{}
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			restarts[p.Name] += c.RestartCount
		}
		switch p.Labels["app.kubernetes.io/component"] {
		case "connection-agent":
			addrs[p.Name] = net.JoinHostPort(p.Status.PodIP, "10260")
		case "connection-metrics-adapter":
			addrs[p.Name] = net.JoinHostPort(p.Status.PodIP, "6443")
		}
	}
	before := map[string]string{}
	for name, addr := range addrs {
		if before[name], err = servedSerial(addr); err != nil {
			t.Fatal(err)
		}
	}

	// Reads every two seconds from now until past the first certificates' expiry.
	var mu sync.Mutex
	var failures []string
	reads := 0
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Second):
			}
			err := read()
			mu.Lock()
			reads++
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05"), err))
			}
			mu.Unlock()
		}
	}()
	rotated := time.Now()
	secrets("2")
	took := framework.Eventually(t, 3*time.Minute, 3*time.Second, "every pod presenting its new certificate", func() (bool, error) {
		for name, addr := range addrs {
			serial, err := servedSerial(addr)
			if err != nil || serial == before[name] {
				return false, fmt.Errorf("%s still presents %s (%v)", name, serial, err)
			}
		}
		return true, nil
	})
	t.Logf("new certificates served by every pod %s after the Secrets changed", took.Round(time.Second))
	if wait := time.Until(issued.Add(firstValidity + 30*time.Second)); wait > 0 {
		t.Logf("reading the metric until the first certificates have expired (%s more)", wait.Round(time.Second))
		time.Sleep(wait)
	}
	close(done)
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d of %d reads of the metric failed during the rotation: %v", len(failures), reads, failures)
	}
	t.Logf("%d reads over %s from the rotation past the old certificates' expiry: none failed", reads, time.Since(rotated).Round(time.Second))
	if err := read(); err != nil {
		t.Errorf("after the old certificates expired: %v", err)
	}
	now, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=openstack-autoscaler"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range now.Items {
		var n int32
		for _, c := range p.Status.ContainerStatuses {
			n += c.RestartCount
		}
		if old, ok := restarts[p.Name]; !ok || n != old {
			t.Errorf("pod %s: restarts %d (before %d, known %v): the rotation must need no restart", p.Name, n, old, ok)
		}
	}
}
