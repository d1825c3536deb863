package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
)

// ProviderPod is openstack-provider installed by the chart alone (nodeAutoscaling.providerOnly)
// on the world's real node: a real container with the chart's ServiceAccount, Secrets and probes,
// reaching OpenStack through the catalog's internal endpoints, answering gRPC with mutual TLS at
// its pod IP.
type ProviderPod struct {
	Release, Namespace string
	// Name is the chart's name for the Deployment, Service and ServiceAccount.
	Name string
	Pod  corev1.Pod
	// ClientSecret holds the chart's client certificate (tls.crt, tls.key, ca.crt).
	ClientSecret *corev1.Secret
}

// InternalClouds is a clouds.yaml holding only the world's "world-internal" cloud: the
// autoscaler's application credential, Keystone at the world's own address and the catalog's
// internal endpoints, which world-forward brings to the APIs (a pod cannot reach 127.0.0.1).
func InternalClouds(w *World) (string, error) {
	raw, err := os.ReadFile(w.Env["OS_CLIENT_CONFIG_FILE"])
	if err != nil {
		return "", err
	}
	var all struct {
		Clouds map[string]any `json:"clouds"`
	}
	if err := yaml.Unmarshal(raw, &all); err != nil {
		return "", err
	}
	cloud, ok := all.Clouds["world-internal"]
	if !ok {
		return "", fmt.Errorf("the world's clouds.yaml has no world-internal cloud: the world was started by an older world.sh; run e2e/world/world.sh down, then up")
	}
	out, err := yaml.Marshal(map[string]any{"clouds": map[string]any{"world-internal": cloud}})
	return string(out), err
}

// NodeAutoscalingValues are the chart's values for node autoscaling on the real node, one replica,
// serving nodeGroups (the provider's node group configuration) for the world's cluster through
// the catalog's internal endpoints; providerOnly leaves the cluster-autoscaler container out.
func NodeAutoscalingValues(w *World, nodeGroups []any, providerOnly bool) (map[string]any, error) {
	clouds, err := InternalClouds(w)
	if err != nil {
		return nil, err
	}
	selector, tolerations := OnRealNode()
	return map[string]any{
		"connectionMetrics": map[string]any{"enabled": false},
		"serviceMonitors":   map[string]any{"enabled": false},
		"nodeAutoscaling": map[string]any{
			"enabled": true, "providerOnly": providerOnly, "replicas": 1,
			"nodeSelector": selector, "tolerations": tolerations,
			"provider": map[string]any{
				"clouds": map[string]any{"cloudsYaml": clouds, "cloud": "world-internal"},
				"config": map[string]any{"clusterName": w.Cluster, "refreshInterval": "2s", "nodeGroups": nodeGroups},
			},
		},
	}, nil
}

// InstallChart installs the chart with values as release rel in namespace ns (created if need
// be) and waits (helm --wait).
func InstallChart(w *World, helm, rel, ns string, values map[string]any) error {
	raw, err := yaml.Marshal(values)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "chart-values-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	valuesFile := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(valuesFile, raw, 0o600); err != nil {
		return err
	}
	if out, err := w.Helm(helm, "install", rel, ChartDir(), "-n", ns, "--create-namespace", "-f", valuesFile, "--wait", "--timeout", "3m"); err != nil {
		return fmt.Errorf("helm install %s: %v\n%s", rel, err, out)
	}
	return nil
}

// CloudConf is the world's "world-internal" cloud written as openstack-cloud-controller-manager's
// cloud.conf ([Global], with a section of the controller manager's own), as its Secret holds it.
func CloudConf(w *World) (string, error) {
	raw, err := InternalClouds(w)
	if err != nil {
		return "", err
	}
	var c struct {
		Clouds map[string]struct {
			Auth       map[string]string `json:"auth"`
			RegionName string            `json:"region_name"`
			Interface  string            `json:"interface"`
		} `json:"clouds"`
	}
	if err := yaml.Unmarshal([]byte(raw), &c); err != nil {
		return "", err
	}
	cloud := c.Clouds["world-internal"]
	return fmt.Sprintf("[Global]\nauth-url=%q\napplication-credential-id=%q\napplication-credential-secret=%q\nregion=%q\nos-endpoint-type=%q\n\n[LoadBalancer]\nuse-octavia=true\n",
		cloud.Auth["auth_url"], cloud.Auth["application_credential_id"], cloud.Auth["application_credential_secret"], cloud.RegionName, cloud.Interface), nil
}

// InstallProviderPod installs the chart as release rel in namespace ns with openstack-provider
// alone on the real node (NodeAutoscalingValues) and returns its pod, Ready. Its credentials come
// from an existing cloud-provider-openstack Secret: cloud-config, key cloud.conf (CloudConf), which
// it creates in ns first, as the controller manager's installation would have.
func InstallProviderPod(w *World, helm, rel, ns string, nodeGroups []any) (*ProviderPod, error) {
	values, err := NodeAutoscalingValues(w, nodeGroups, true)
	if err != nil {
		return nil, err
	}
	conf, err := CloudConf(w)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := ensureNamespace(ctx, w.Kube, ns); err != nil {
		return nil, err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cloud-config", Namespace: ns}, StringData: map[string]string{"cloud.conf": conf}}
	if _, err := w.Kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	values["nodeAutoscaling"].(map[string]any)["provider"].(map[string]any)["clouds"] = map[string]any{"existingSecret": "cloud-config", "cloudConfKey": "cloud.conf"}
	if err := InstallChart(w, helm, rel, ns, values); err != nil {
		return nil, err
	}
	p := &ProviderPod{Release: rel, Namespace: ns, Name: rel + "-openstack-autoscaler-cluster-autoscaler"}
	pods, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=cluster-autoscaler"})
	if err != nil {
		return nil, err
	}
	if len(pods.Items) != 1 {
		return nil, fmt.Errorf("%d provider pods in %s, want 1", len(pods.Items), ns)
	}
	p.Pod = pods.Items[0]
	if p.ClientSecret, err = w.Kube.CoreV1().Secrets(ns).Get(ctx, p.Name+"-provider-client-tls", metav1.GetOptions{}); err != nil {
		return nil, err
	}
	return p, nil
}

// Uninstall removes the release and waits for its objects to go.
func (p *ProviderPod) Uninstall(w *World, helm string) error {
	out, err := w.Helm(helm, "uninstall", p.Release, "-n", p.Namespace, "--wait", "--timeout", "2m")
	if err != nil {
		return fmt.Errorf("helm uninstall %s: %v\n%s", p.Release, err, out)
	}
	return nil
}

// Dial connects to the pod's gRPC port at its pod IP, verifying the server's certificate for the
// Service's name; withCert presents the chart's client certificate, as a cluster-autoscaler
// installed elsewhere would.
func (p *ProviderPod) Dial(withCert bool) (*grpc.ClientConn, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.ClientSecret.Data["ca.crt"]) {
		return nil, fmt.Errorf("secret %s: ca.crt holds no certificate", p.ClientSecret.Name)
	}
	conf := &tls.Config{RootCAs: roots, ServerName: p.Name + "." + p.Namespace + ".svc", MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.X509KeyPair(p.ClientSecret.Data["tls.crt"], p.ClientSecret.Data["tls.key"])
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", p.ClientSecret.Name, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return grpc.NewClient(net.JoinHostPort(p.Pod.Status.PodIP, "8086"), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
}

// Client is Dial(true) as a CloudProvider client.
func (p *ProviderPod) Client() (pb.CloudProviderClient, *grpc.ClientConn, error) {
	conn, err := p.Dial(true)
	if err != nil {
		return nil, nil, err
	}
	return pb.NewCloudProviderClient(conn), conn, nil
}
