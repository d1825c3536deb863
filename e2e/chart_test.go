//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"sigs.k8s.io/yaml"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// manifest is one object of `helm template` output.
type manifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	raw []byte
}

type rendered []manifest

// get decodes the object of that kind and name into out; the test fails if there is none.
func (r rendered) get(t *testing.T, kind, name string, out any) {
	t.Helper()
	for _, m := range r {
		if m.Kind == kind && m.Metadata.Name == name {
			if err := yaml.UnmarshalStrict(m.raw, out); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s in the rendered chart (have: %s)", kind, name, r.names())
}

func (r rendered) has(kind, name string) bool {
	return slices.ContainsFunc(r, func(m manifest) bool { return m.Kind == kind && m.Metadata.Name == name })
}

func (r rendered) count(kind string) int {
	n := 0
	for _, m := range r {
		if m.Kind == kind {
			n++
		}
	}
	return n
}

func (r rendered) names() string {
	var s []string
	for _, m := range r {
		s = append(s, m.Kind+"/"+m.Metadata.Name)
	}
	return strings.Join(s, " ")
}

func parseManifests(t *testing.T, out string) rendered {
	t.Helper()
	var r rendered
	for _, doc := range strings.Split(out, "\n---") {
		var m manifest
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("helm output is not YAML: %v\n%s", err, doc)
		}
		if m.Kind == "" {
			continue
		}
		m.raw = []byte(doc)
		r = append(r, m)
	}
	return r
}

// helmRun runs helm against the world's cluster (KUBECONFIG), returning combined output.
func helmRun(w *framework.World, helm string, args ...string) (string, error) {
	cmd := exec.Command(helm, args...)
	cmd.Env = os.Environ()
	if w != nil {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+w.Env["KUBECONFIG"])
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func helmTemplate(t *testing.T, helm, release, namespace string, args ...string) rendered {
	t.Helper()
	out, err := helmRun(nil, helm, append([]string{"template", release, framework.ChartDir(), "--namespace", namespace, "--kube-version", "1.36.0"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	return parseManifests(t, out)
}

func containerArgs(c corev1.Container) string { return strings.Join(c.Args, " ") }

func requireArgs(t *testing.T, what string, c corev1.Container, want ...string) {
	t.Helper()
	for _, a := range want {
		if !slices.Contains(c.Args, a) {
			t.Errorf("%s: argument %q missing from %s", what, a, containerArgs(c))
		}
	}
}

// tlsSecret decodes a kubernetes.io/tls Secret with ca.crt.
func tlsSecret(t *testing.T, r rendered, name string) (cert *x509.Certificate, pool *x509.CertPool) {
	t.Helper()
	var s corev1.Secret
	r.get(t, "Secret", name, &s)
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		t.Fatalf("Secret %s: tls.crt is not PEM", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("Secret %s: %v", name, err)
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatalf("Secret %s: ca.crt is not a PEM certificate", name)
	}
	if len(s.Data["tls.key"]) == 0 {
		t.Fatalf("Secret %s: no tls.key", name)
	}
	return cert, pool
}

func verifyCert(t *testing.T, what string, cert *x509.Certificate, roots *x509.CertPool, dnsName string, usage x509.ExtKeyUsage) {
	t.Helper()
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// The chart lints, renders with its defaults and with every part on, and the objects carry what
// the components need: flags, mounts, certificates that verify against each other, the
// provider configuration in a form openstack-provider accepts.
func TestChartTemplates(t *testing.T) {
	helm := framework.HelmBinary(t)
	full := filepath.Join(framework.ChartDir(), "ci", "full-values.yaml")
	for _, args := range [][]string{{"lint", framework.ChartDir()}, {"lint", framework.ChartDir(), "-f", full}} {
		if out, err := helmRun(nil, helm, args...); err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
	}

	const rel, ns = "osa", "ops"
	t.Run("defaults", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns)
		if r.has("Deployment", "osa-openstack-autoscaler-cluster-autoscaler") {
			t.Errorf("node autoscaling is on by default; it needs a cloud, so it must be off")
		}
		var ds appsv1.DaemonSet
		r.get(t, "DaemonSet", "osa-openstack-autoscaler-connection-agent", &ds)
		pod := ds.Spec.Template.Spec
		agent := pod.Containers[0]
		// Not privileged: the capabilities its counter needs (auto: sock_diag's and ebpf's).
		if sc := agent.SecurityContext; !pod.HostPID || sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil ||
			fmt.Sprint(sc.Capabilities.Add) != "[SYS_ADMIN SYS_PTRACE BPF PERFMON]" || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
			t.Errorf("agent: want hostPID and only SYS_ADMIN, SYS_PTRACE, BPF, PERFMON, got hostPID=%v securityContext=%+v", pod.HostPID, sc)
		}
		requireArgs(t, "agent", agent, "--counter=auto", "--check-interval=5m")
		var sockDiag appsv1.DaemonSet
		helmTemplate(t, helm, rel, ns, "--set", "connectionMetrics.agent.counter=sock_diag").get(t, "DaemonSet", "osa-openstack-autoscaler-connection-agent", &sockDiag)
		if c := sockDiag.Spec.Template.Spec.Containers[0]; fmt.Sprint(c.SecurityContext.Capabilities.Add) != "[SYS_ADMIN SYS_PTRACE]" {
			t.Errorf("counter sock_diag: capabilities %v, want SYS_ADMIN and SYS_PTRACE only", c.SecurityContext.Capabilities.Add)
		}
		requireArgs(t, "agent", agent, "--node-name=$(NODE_NAME)", "--proc=/host/proc", "--listen=:10260",
			"--client-ca=/etc/connection-agent/tls/ca.crt")
		if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists {
			t.Errorf("agent tolerations %+v: want every taint tolerated", pod.Tolerations)
		}
		if len(pod.InitContainers) != 0 {
			t.Errorf("agent: the sysctl init container is opt-in, got %d init containers", len(pod.InitContainers))
		}

		var dep appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-connection-metrics-adapter", &dep)
		if *dep.Spec.Replicas != 2 || dep.Spec.Template.Spec.Affinity.PodAntiAffinity == nil {
			t.Errorf("adapter: want 2 replicas with pod anti-affinity, got %d %+v", *dep.Spec.Replicas, dep.Spec.Template.Spec.Affinity)
		}
		adapter := dep.Spec.Template.Spec.Containers[0]
		requireArgs(t, "adapter", adapter, "--agent-service=ops/osa-openstack-autoscaler-connection-agent", "--agent-port-name=https",
			"--secure-port=6443")
		if strings.Contains(containerArgs(adapter), "rabbitmq") {
			t.Errorf("adapter: queue metrics are off by default: %s", containerArgs(adapter))
		}
		if !r.has("PodDisruptionBudget", "osa-openstack-autoscaler-connection-metrics-adapter") {
			t.Errorf("no PodDisruptionBudget for the adapter")
		}

		// The APIServices trust the CA that signed the adapter's serving certificate, for the
		// name the aggregator dials (<service>.<namespace>.svc).
		servingCert, servingCA := tlsSecret(t, r, "osa-openstack-autoscaler-connection-metrics-adapter-serving-tls")
		verifyCert(t, "adapter serving certificate", servingCert, servingCA, "osa-openstack-autoscaler-connection-metrics-adapter.ops.svc", x509.ExtKeyUsageServerAuth)
		for _, v := range []string{"v1beta1", "v1beta2"} {
			var api apiregv1.APIService
			r.get(t, "APIService", v+".custom.metrics.k8s.io", &api)
			bundle := x509.NewCertPool()
			if !bundle.AppendCertsFromPEM(api.Spec.CABundle) {
				t.Fatalf("APIService %s: caBundle is not PEM", api.Name)
			}
			verifyCert(t, "APIService "+api.Name+" caBundle", servingCert, bundle, "osa-openstack-autoscaler-connection-metrics-adapter.ops.svc", x509.ExtKeyUsageServerAuth)
			if api.Spec.Service.Name != "osa-openstack-autoscaler-connection-metrics-adapter" || api.Spec.Service.Namespace != ns || api.Spec.Version != v {
				t.Errorf("APIService %s: %+v", api.Name, api.Spec)
			}
		}
		if r.has("APIService", "v1beta1.external.metrics.k8s.io") {
			t.Errorf("external.metrics.k8s.io is registered with queue metrics off")
		}
		// Agents ↔ adapter: each side trusts the other's certificate.
		agentCert, agentTrusts := tlsSecret(t, r, "osa-openstack-autoscaler-connection-agent-tls")
		clientCert, clientTrusts := tlsSecret(t, r, "osa-openstack-autoscaler-connection-metrics-adapter-client-tls")
		verifyCert(t, "adapter client certificate, as the agents check it", clientCert, agentTrusts, "", x509.ExtKeyUsageClientAuth)
		verifyCert(t, "agent certificate, as the adapter checks it", agentCert, clientTrusts, "osa-openstack-autoscaler-connection-agent.ops.svc", x509.ExtKeyUsageServerAuth)
		t.Logf("defaults render %d objects: %s", len(r), r.names())
	})

	t.Run("full", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full)
		var dep appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-cluster-autoscaler", &dep)
		pod := dep.Spec.Template.Spec
		ca := pod.Containers[0]
		if ca.Image != "registry.k8s.io/autoscaling/cluster-autoscaler:v1.36.1" {
			t.Errorf("cluster-autoscaler image %s", ca.Image)
		}
		requireArgs(t, "cluster-autoscaler", ca, "--cloud-provider=externalgrpc", "--cloud-config=/etc/cluster-autoscaler/cloud-config.yaml",
			"--leader-elect=true", "--leader-elect-resource-lock=leases", "--leader-elect-resource-name=osa-openstack-autoscaler-cluster-autoscaler",
			"--leader-elect-resource-namespace=ops", "--expander=price,least-waste", "--scale-down-unneeded-time=5m",
			"--scale-down-delay-after-add=5m", "--balance-similar-node-groups=true", "--max-node-provision-time=10m", "--max-nodes-total=50",
			// A list in extraArgs repeats the flag, as --balancing-ignore-label is given.
			"--balancing-ignore-label=topology.cinder.csi.openstack.org/zone", "--balancing-ignore-label=example.com/rack")
		if *dep.Spec.Replicas != 2 {
			t.Errorf("cluster-autoscaler replicas %d, want 2", *dep.Spec.Replicas)
		}
		if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "openstack-provider" || pod.InitContainers[0].RestartPolicy == nil ||
			*pod.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("openstack-provider must be a native sidecar (init container, restartPolicy Always): %+v", pod.InitContainers)
		}
		provider := pod.InitContainers[0]
		if provider.Image != "ghcr.io/openstack-autoscaler/openstack-provider:0.1.0" {
			t.Errorf("provider image %s: want the name `make images` builds", provider.Image)
		}
		requireArgs(t, "openstack-provider", provider, "--listen=127.0.0.1:8086", "--tls-cert=/etc/openstack-provider/tls/tls.crt",
			"--tls-client-ca=/etc/openstack-provider/tls/ca.crt", "--config=/etc/openstack-provider/provider.yaml",
			"--leader-elect-namespace=ops", "--leader-elect-lease=osa-openstack-autoscaler-cluster-autoscaler-node-repair")

		// The provider's configuration holds user-data (a bootstrap token, for a node to join):
		// a Secret, never a ConfigMap.
		if r.has("ConfigMap", "osa-openstack-autoscaler-cluster-autoscaler") {
			t.Error("the provider's configuration (with its user-data) is rendered into a ConfigMap: it must be a Secret")
		}
		var cfgSecret corev1.Secret
		r.get(t, "Secret", "osa-openstack-autoscaler-cluster-autoscaler", &cfgSecret)
		cm := struct{ Data map[string]string }{Data: map[string]string{}}
		for k, v := range cfgSecret.Data {
			cm.Data[k] = string(v)
		}
		if !strings.Contains(cm.Data["provider.yaml"], "kubeadm join") {
			t.Errorf("the full values' user-data is not in the provider's Secret:\n%s", cm.Data["provider.yaml"])
		}
		for _, want := range []string{"address: 127.0.0.1:8086", "cert: /etc/cluster-autoscaler/tls/tls.crt", "key: /etc/cluster-autoscaler/tls/tls.key", "cacert: /etc/cluster-autoscaler/tls/ca.crt"} {
			if !strings.Contains(cm.Data["cloud-config.yaml"], want) {
				t.Errorf("cloud-config.yaml lacks %q:\n%s", want, cm.Data["cloud-config.yaml"])
			}
		}
		for _, v := range pod.Volumes {
			if v.Name == "clouds" && (v.Secret == nil || len(v.Secret.Items) != 0) {
				t.Errorf("the clouds Secret must be mounted whole (a CA file clouds.yaml's cacert names sits beside it): %+v", v.VolumeSource)
			}
		}
		clouds := filepath.Join(t.TempDir(), "clouds.yaml")
		if err := os.WriteFile(clouds, []byte("clouds: {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse([]byte(strings.ReplaceAll(cm.Data["provider.yaml"], "/etc/openstack/clouds.yaml", clouds)))
		if err != nil {
			t.Fatalf("the rendered provider.yaml is refused by the provider's parser: %v\n%s", err, cm.Data["provider.yaml"])
		}
		if cfg.ClusterName != "prod" || len(cfg.NodeGroups) != 2 || cfg.Cloud.Name != "prod" || !cfg.AutoDiscovery.HeatStacks || !cfg.Repair.Enabled {
			t.Errorf("provider.yaml: %+v", cfg)
		}
		// gRPC mTLS: the autoscaler checks the provider's certificate for 127.0.0.1 and the
		// provider checks the autoscaler's client certificate.
		serverCert, serverTrusts := tlsSecret(t, r, "osa-openstack-autoscaler-cluster-autoscaler-provider-server-tls")
		clientCert, clientTrusts := tlsSecret(t, r, "osa-openstack-autoscaler-cluster-autoscaler-provider-client-tls")
		if _, err := serverCert.Verify(x509.VerifyOptions{Roots: clientTrusts}); err != nil || serverCert.VerifyHostname("127.0.0.1") != nil {
			t.Errorf("provider server certificate: verify %v, 127.0.0.1: %v", err, serverCert.VerifyHostname("127.0.0.1"))
		}
		verifyCert(t, "autoscaler client certificate", clientCert, serverTrusts, "", x509.ExtKeyUsageClientAuth)

		var adapter appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-connection-metrics-adapter", &adapter)
		requireArgs(t, "adapter", adapter.Spec.Template.Spec.Containers[0], "--rabbitmq-config=/etc/openstack-autoscaler/rabbitmq.yaml", "--window=60s")
		if adapter.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			t.Errorf("adapter: podAntiAffinity hard did not render a required term")
		}
		var queues corev1.ConfigMap
		r.get(t, "ConfigMap", "osa-openstack-autoscaler-connection-metrics-adapter-queues", &queues)
		qc, err := rabbitmq.Parse([]byte(queues.Data["rabbitmq.yaml"]))
		if err != nil {
			t.Fatalf("the rendered rabbitmq.yaml is refused by the adapter's parser: %v\n%s", err, queues.Data["rabbitmq.yaml"])
		}
		if len(qc.Brokers) != 1 || qc.Brokers[0].UsernameFile != "/etc/openstack-autoscaler/rabbitmq/main/username" ||
			qc.Brokers[0].CAFile != "/etc/openstack-autoscaler/rabbitmq-ca/main/ca.crt" || len(qc.Brokers[0].Queues) != 2 {
			t.Errorf("rabbitmq.yaml: %+v", qc)
		}
		if !r.has("APIService", "v1beta1.external.metrics.k8s.io") {
			t.Errorf("queue metrics on, but no APIService v1beta1.external.metrics.k8s.io")
		}
		var ds appsv1.DaemonSet
		r.get(t, "DaemonSet", "osa-openstack-autoscaler-connection-agent", &ds)
		if ic := ds.Spec.Template.Spec.InitContainers; len(ic) != 1 || ic[0].Image != ds.Spec.Template.Spec.Containers[0].Image ||
			!slices.Contains(ic[0].Args, "--set-host-sysctl=net.ipv4.tcp_child_ehash_entries=65536") {
			t.Errorf("agent sysctl init container: %+v", ic)
		}
		var pc schedulingv1.PriorityClass
		r.get(t, "PriorityClass", "osa-openstack-autoscaler-spare-capacity", &pc)
		var spare appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-spare-general", &spare)
		if pc.Value >= 0 || spare.Spec.Template.Spec.PriorityClassName != pc.Name || spare.Spec.Template.Spec.NodeSelector["openstack-autoscaler.io/node-group"] != "general" {
			t.Errorf("spare capacity: priority %d, pod %+v", pc.Value, spare.Spec.Template.Spec)
		}
		for kind, want := range map[string]int{"ServiceMonitor": 3, "NetworkPolicy": 3, "APIService": 3, "PodDisruptionBudget": 2} {
			if got := r.count(kind); got != want {
				t.Errorf("%d %s objects, want %d", got, kind, want)
			}
		}
		for _, m := range r {
			if m.Metadata.Labels["app.kubernetes.io/instance"] != rel || m.Metadata.Labels["team"] != "platform" {
				t.Errorf("%s/%s lacks the release's labels: %v", m.Kind, m.Metadata.Name, m.Metadata.Labels)
			}
		}
		t.Logf("full values render %d objects", len(r))
	})

	// What operators add to every component: environment (proxies to reach OpenStack or the
	// broker), volumes and their mounts (a CA bundle), spread across zones.
	t.Run("extras", func(t *testing.T) {
		extras := filepath.Join(t.TempDir(), "extras.yaml")
		env := `[{name: HTTPS_PROXY, value: "http://proxy.example:3128"}]`
		vols := `[{name: corp-ca, configMap: {name: corp-ca}}]`
		mounts := `[{name: corp-ca, mountPath: /etc/corp-ca, readOnly: true}]`
		spread := `[{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}]`
		if err := os.WriteFile(extras, []byte(fmt.Sprintf(`nodeAutoscaling:
  extraEnv: %[1]s
  extraVolumes: %[2]s
  extraVolumeMounts: %[3]s
  topologySpreadConstraints: %[4]s
  provider: {extraEnv: %[1]s, extraVolumeMounts: %[3]s}
connectionMetrics:
  agent: {extraEnv: %[1]s, extraVolumes: %[2]s, extraVolumeMounts: %[3]s}
  adapter: {extraEnv: %[1]s, extraVolumes: %[2]s, extraVolumeMounts: %[3]s, topologySpreadConstraints: %[4]s}
`, env, vols, mounts, spread)), 0o600); err != nil {
			t.Fatal(err)
		}
		r := helmTemplate(t, helm, rel, ns, "-f", full, "-f", extras)
		autoscalerDep, adapterDep, agentDS := r.workloads(t, "osa")
		pods := map[string]corev1.PodSpec{"autoscaler": autoscalerDep.Spec.Template.Spec, "adapter": adapterDep.Spec.Template.Spec,
			"agent": agentDS.Spec.Template.Spec}
		containers := map[string]corev1.Container{"cluster-autoscaler": pods["autoscaler"].Containers[0],
			"openstack-provider": pods["autoscaler"].InitContainers[0], "connection-agent": pods["agent"].Containers[0],
			"connection-metrics-adapter": pods["adapter"].Containers[0]}
		for name, c := range containers {
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "HTTPS_PROXY" && e.Value == "http://proxy.example:3128" }) {
				t.Errorf("%s: extraEnv missing: %+v", name, c.Env)
			}
			if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "corp-ca" && m.MountPath == "/etc/corp-ca" }) {
				t.Errorf("%s: extraVolumeMounts missing: %+v", name, c.VolumeMounts)
			}
		}
		if c := containers["connection-agent"]; !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" }) {
			t.Errorf("connection-agent: extraEnv replaced NODE_NAME: %+v", c.Env)
		}
		for name, pod := range pods {
			if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == "corp-ca" && v.ConfigMap != nil }) {
				t.Errorf("%s pod: extraVolumes missing", name)
			}
		}
		for _, name := range []string{"autoscaler", "adapter"} {
			if c := pods[name].TopologySpreadConstraints; len(c) != 1 || c[0].TopologyKey != "topology.kubernetes.io/zone" {
				t.Errorf("%s pod: topologySpreadConstraints %+v", name, c)
			}
		}
	})

	// OpenShift's restricted profile assigns UIDs and refuses fixed ones: the pod and container
	// security contexts are values (the defaults pin 65532, as the images' nonroot user).
	t.Run("security contexts", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full)
		var dep appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-connection-metrics-adapter", &dep)
		if sc := dep.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
			t.Errorf("adapter pod securityContext by default %+v: want runAsUser 65532", sc)
		}
		openshift := filepath.Join(t.TempDir(), "openshift.yaml")
		noUID := `{runAsUser: null, runAsGroup: null, fsGroup: null}`
		if err := os.WriteFile(openshift, []byte(fmt.Sprintf(`nodeAutoscaling:
  podSecurityContext: %[1]s
connectionMetrics:
  adapter:
    podSecurityContext: %[1]s
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}, runAsNonRoot: true}
`, noUID)), 0o600); err != nil {
			t.Fatal(err)
		}
		r = helmTemplate(t, helm, rel, ns, "-f", full, "-f", openshift)
		autoscalerDep, adapterDep, _ := r.workloads(t, "osa")
		for name, pod := range map[string]corev1.PodSpec{"autoscaler": autoscalerDep.Spec.Template.Spec, "adapter": adapterDep.Spec.Template.Spec} {
			sc := pod.SecurityContext
			if sc == nil || sc.RunAsUser != nil || sc.RunAsGroup != nil || sc.FSGroup != nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s pod securityContext %+v: want no fixed IDs, runAsNonRoot kept", name, sc)
			}
		}
		if c := adapterDep.Spec.Template.Spec.Containers[0].SecurityContext; c == nil || c.RunAsNonRoot == nil || !*c.RunAsNonRoot {
			t.Errorf("adapter container securityContext %+v: want the one given", c)
		}
	})

	// rbac.additionalRules extend the pod's ClusterRole (a custom expander or a processor
	// reading more objects), as the cluster-autoscaler chart's do.
	t.Run("rbac.additionalRules", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full, "--set-json", `rbac.additionalRules=[{"apiGroups":["example.com"],"resources":["quotas"],"verbs":["get","list"]}]`)
		var role rbacv1.ClusterRole
		r.get(t, "ClusterRole", "osa-openstack-autoscaler-cluster-autoscaler", &role)
		if !slices.ContainsFunc(role.Rules, func(p rbacv1.PolicyRule) bool {
			return slices.Equal(p.APIGroups, []string{"example.com"}) && slices.Equal(p.Resources, []string{"quotas"})
		}) {
			t.Errorf("ClusterRole rules %+v: the additional rule is missing", role.Rules)
		}
	})

	// The priority expander reads its priorities from the ConfigMap
	// cluster-autoscaler-priority-expander in the autoscaler's namespace, which it lists and
	// watches: the chart renders it from nodeAutoscaling.priorities and grants that.
	t.Run("priority expander", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full, "--set", "nodeAutoscaling.expander=priority\\,least-waste",
			"--set-json", `nodeAutoscaling.priorities={"50":["general"],"10":[".*"]}`)
		var cm corev1.ConfigMap
		r.get(t, "ConfigMap", "cluster-autoscaler-priority-expander", &cm)
		var prios map[int][]string
		if err := yaml.Unmarshal([]byte(cm.Data["priorities"]), &prios); err != nil || len(prios[50]) != 1 || prios[50][0] != "general" || prios[10][0] != ".*" {
			t.Errorf("priorities %q: %v", cm.Data["priorities"], err)
		}
		var role rbacv1.Role
		r.get(t, "Role", "osa-openstack-autoscaler-cluster-autoscaler", &role)
		if !slices.ContainsFunc(role.Rules, func(p rbacv1.PolicyRule) bool {
			return slices.Contains(p.Resources, "configmaps") && slices.Contains(p.Verbs, "list") && slices.Contains(p.Verbs, "watch") && len(p.ResourceNames) == 0
		}) {
			t.Errorf("Role rules %+v: the priority expander lists and watches ConfigMaps", role.Rules)
		}
		out, err := helmRun(nil, helm, "template", rel, framework.ChartDir(), "--kube-version", "1.36.0", "-f", full, "--set", "nodeAutoscaling.expander=priority")
		if err == nil || !strings.Contains(out, "nodeAutoscaling.priorities") {
			t.Errorf("expander=priority without priorities: want a failure naming nodeAutoscaling.priorities, got %v\n%s", err, framework.Tail(out, 300))
		}
	})

	// logFormat: json gives the product's three binaries JSON logs, for log pipelines.
	t.Run("logFormat", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full, "--set", "logFormat=json")
		autoscalerDep, adapterDep, agentDS := r.workloads(t, "osa")
		requireArgs(t, "openstack-provider", autoscalerDep.Spec.Template.Spec.InitContainers[0], "--logging-format=json")
		requireArgs(t, "connection-agent", agentDS.Spec.Template.Spec.Containers[0], "--logging-format=json")
		requireArgs(t, "connection-metrics-adapter", adapterDep.Spec.Template.Spec.Containers[0], "--logging-format=json")
		if out, err := helmRun(nil, helm, "template", rel, framework.ChartDir(), "--kube-version", "1.36.0", "--set", "logFormat=xml"); err == nil || !strings.Contains(out, "/logFormat") {
			t.Errorf("logFormat=xml: want a failure naming /logFormat, got %v\n%s", err, framework.Tail(out, 300))
		}
	})

	// openstack-cloud-controller-manager's Secret reused: the provider reads its cloud.conf from
	// the Secret mounted whole; clouds.yaml settings and a missing Secret name are refused.
	t.Run("cloud.conf", func(t *testing.T) {
		base := "nodeAutoscaling.enabled=true,nodeAutoscaling.provider.config.clusterName=prod,nodeAutoscaling.provider.config.autoDiscovery.heatStacks=true"
		r := helmTemplate(t, helm, rel, ns, "--set", base+",nodeAutoscaling.provider.clouds.existingSecret=cloud-config,nodeAutoscaling.provider.clouds.cloudConfKey=cloud.conf")
		var sec corev1.Secret
		r.get(t, "Secret", "osa-openstack-autoscaler-cluster-autoscaler", &sec)
		var cfg struct {
			Cloud map[string]string `json:"cloud"`
		}
		if err := yaml.Unmarshal(sec.Data["provider.yaml"], &cfg); err != nil {
			t.Fatal(err)
		}
		if len(cfg.Cloud) != 1 || cfg.Cloud["cloudConfFile"] != "/etc/openstack/cloud.conf" {
			t.Errorf("provider config cloud %v, want cloudConfFile /etc/openstack/cloud.conf alone", cfg.Cloud)
		}
		var dep appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-cluster-autoscaler", &dep)
		mounted := false
		for _, v := range dep.Spec.Template.Spec.Volumes {
			mounted = mounted || (v.Secret != nil && v.Secret.SecretName == "cloud-config" && len(v.Secret.Items) == 0)
		}
		if !mounted {
			t.Errorf("Secret cloud-config not mounted whole: %+v", dep.Spec.Template.Spec.Volumes)
		}
		for set, want := range map[string]string{
			base + ",nodeAutoscaling.provider.clouds.cloudConfKey=cloud.conf":                                                                                             "set existingSecret to the Secret holding cloud-provider-openstack's cloud.conf",
			base + ",nodeAutoscaling.provider.clouds.existingSecret=c,nodeAutoscaling.provider.clouds.cloudConfKey=cloud.conf,nodeAutoscaling.provider.clouds.cloud=prod": "set one of them",
		} {
			if out, err := helmRun(nil, helm, "template", rel, framework.ChartDir(), "--kube-version", "1.36.0", "--set", set); err == nil || !strings.Contains(out, want) {
				t.Errorf("--set %s: want a failure with %q, got %v\n%s", set, want, err, framework.Tail(out, 300))
			}
		}
	})

	// Beside prometheus-adapter and KEDA: the adapter hands their groups on (flags, their CA
	// mounted, RBAC to read their Services and their groups), registers external.metrics.k8s.io
	// without queues of its own, and inconsistent values fail naming the field and the fix.
	t.Run("delegate", func(t *testing.T) {
		const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
		r := helmTemplate(t, helm, rel, ns, "--set", "connectionMetrics.delegate.customMetrics.service=monitoring/prometheus-adapter:443",
			"--set-string", "connectionMetrics.delegate.customMetrics.caBundle="+pem,
			"--set", "connectionMetrics.delegate.externalMetrics.service=keda/keda-operator-metrics-apiserver",
			"--set", "connectionMetrics.delegate.externalMetrics.insecureSkipTLSVerify=true")
		var dep appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-connection-metrics-adapter", &dep)
		adapter := dep.Spec.Template.Spec.Containers[0]
		requireArgs(t, "adapter", adapter, "--custom-metrics-delegate=monitoring/prometheus-adapter:443",
			"--custom-metrics-delegate-ca=/etc/connection-metrics-adapter/delegate/custom-ca.crt",
			"--external-metrics-delegate=keda/keda-operator-metrics-apiserver", "--external-metrics-delegate-insecure-skip-tls-verify")
		if strings.Contains(containerArgs(adapter), "external-metrics-delegate-ca") {
			t.Errorf("insecureSkipTLSVerify and a CA flag: %s", containerArgs(adapter))
		}
		var cm corev1.ConfigMap
		r.get(t, "ConfigMap", "osa-openstack-autoscaler-connection-metrics-adapter-delegate-ca", &cm)
		if cm.Data["custom-ca.crt"] != pem || len(cm.Data) != 1 {
			t.Errorf("delegate CA ConfigMap %v, want custom-ca.crt only", cm.Data)
		}
		if !slices.ContainsFunc(adapter.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/connection-metrics-adapter/delegate" }) ||
			dep.Spec.Template.Annotations["checksum/delegate-ca"] == "" {
			t.Errorf("delegate CA not mounted, or no checksum restarting the pods when it changes: %+v %v", adapter.VolumeMounts, dep.Spec.Template.Annotations)
		}
		if !r.has("APIService", "v1beta1.external.metrics.k8s.io") {
			t.Errorf("external.metrics.k8s.io handed to KEDA but not registered")
		}
		var cr rbacv1.ClusterRole
		r.get(t, "ClusterRole", "osa-openstack-autoscaler-connection-metrics-adapter-delegate", &cr)
		if len(cr.Rules) != 1 || strings.Join(cr.Rules[0].APIGroups, ",") != "custom.metrics.k8s.io,external.metrics.k8s.io" || slices.Contains(cr.Rules[0].Verbs, "create") {
			t.Errorf("the backends must let the adapter read both groups, no more: %+v", cr.Rules)
		}
		for _, backendNs := range []string{"monitoring", "keda"} {
			found := false
			for _, m := range r {
				if m.Kind == "Role" && m.Metadata.Namespace == backendNs {
					var role rbacv1.Role
					if err := yaml.Unmarshal(m.raw, &role); err != nil {
						t.Fatal(err)
					}
					found = len(role.Rules) == 2 && role.Rules[0].Resources[0] == "services" && role.Rules[1].Resources[0] == "endpointslices" &&
						!slices.Contains(role.Rules[0].Verbs, "update")
				}
			}
			if !found {
				t.Errorf("no Role reading the Service and EndpointSlices in namespace %s", backendNs)
			}
		}
		for _, c := range []struct {
			set  []string
			want string
		}{
			{[]string{"connectionMetrics.delegate.customMetrics.service=monitoring/prometheus-adapter"}, "set caBundle"},
			{[]string{"connectionMetrics.delegate.customMetrics.service=monitoring/prometheus-adapter", "connectionMetrics.delegate.customMetrics.caBundle=x",
				"connectionMetrics.delegate.customMetrics.insecureSkipTLSVerify=true"}, "caBundle and insecureSkipTLSVerify both set"},
			{[]string{"connectionMetrics.delegate.externalMetrics.insecureSkipTLSVerify=true"}, "without service"},
			{[]string{"connectionMetrics.delegate.customMetrics.service=prometheus-adapter"}, "/connectionMetrics/delegate/customMetrics/service"},
			{[]string{"connectionMetrics.delegate.customMetrics.sevice=monitoring/x"}, "sevice"},
		} {
			args := []string{"template", rel, framework.ChartDir(), "--kube-version", "1.36.0"}
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			if out, err := helmRun(nil, helm, args...); err == nil || !strings.Contains(out, c.want) {
				t.Errorf("--set %v: want a failure naming %q, got %v\n%s", c.set, c.want, err, framework.Tail(out, 300))
			}
		}
	})

	// Each component's image.pullPolicy wins over images.pullPolicy (the schema took them and the
	// templates ignored them).
	t.Run("pullPolicy per component", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full, "--set", "images.pullPolicy=IfNotPresent,nodeAutoscaling.provider.image.pullPolicy=Always,"+
			"connectionMetrics.agent.image.pullPolicy=Never,connectionMetrics.adapter.image.pullPolicy=Always")
		autoscalerDep, adapterDep, agentDS := r.workloads(t, "osa")
		for _, c := range []struct {
			name string
			got  corev1.PullPolicy
			want corev1.PullPolicy
		}{
			{"openstack-provider", autoscalerDep.Spec.Template.Spec.InitContainers[0].ImagePullPolicy, corev1.PullAlways},
			{"connection-agent", agentDS.Spec.Template.Spec.Containers[0].ImagePullPolicy, corev1.PullNever},
			{"connection-agent's init container", agentDS.Spec.Template.Spec.InitContainers[0].ImagePullPolicy, corev1.PullNever},
			{"connection-metrics-adapter", adapterDep.Spec.Template.Spec.Containers[0].ImagePullPolicy, corev1.PullAlways},
		} {
			if c.got != c.want {
				t.Errorf("%s imagePullPolicy %s, want %s", c.name, c.got, c.want)
			}
		}
	})

	// cert-manager: Certificates for every link, a private CA when no issuer is named, and the
	// APIServices' caBundle injected by cert-manager's cainjector.
	t.Run("certManager", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full, "--set", "certificates.mode=certManager")
		if n := r.count("Certificate"); n != 6 { // 5 leaf certificates + the release's CA
			t.Errorf("%d Certificates, want 6: %s", n, r.names())
		}
		if r.count("Issuer") != 2 || r.count("Secret") != 2 { // only the clouds.yaml and provider configuration Secrets are the chart's own
			t.Errorf("Issuers %d, Secrets %d: %s", r.count("Issuer"), r.count("Secret"), r.names())
		}
		var api apiregv1.APIService
		r.get(t, "APIService", "v1beta2.custom.metrics.k8s.io", &api)
		if len(api.Spec.CABundle) != 0 || !strings.Contains(string(r[slices.IndexFunc(r, func(m manifest) bool {
			return m.Kind == "APIService" && m.Metadata.Name == "v1beta2.custom.metrics.k8s.io"
		})].raw), "cert-manager.io/inject-ca-from: ops/osa-openstack-autoscaler-connection-metrics-adapter-serving-tls") {
			t.Errorf("APIService with cert-manager: want no caBundle and the inject-ca-from annotation")
		}
	})
	// Existing Secrets: the pods mount the Secrets named in the values; the adapter's serving CA
	// must be readable at install time (helm template has no cluster, so it says so).
	t.Run("existingSecret", func(t *testing.T) {
		r := helmTemplate(t, helm, rel, ns, "-f", full, "--set", "certificates.mode=existingSecret,connectionMetrics.enabled=false,queueMetrics.enabled=false",
			"--set", "nodeAutoscaling.tls.serverSecret=my-provider-tls,nodeAutoscaling.tls.clientSecret=my-autoscaler-tls")
		var dep appsv1.Deployment
		r.get(t, "Deployment", "osa-openstack-autoscaler-cluster-autoscaler", &dep)
		var secrets []string
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				secrets = append(secrets, v.Secret.SecretName)
			}
		}
		if !slices.Contains(secrets, "my-provider-tls") || !slices.Contains(secrets, "my-autoscaler-tls") || r.count("Secret") != 2 { // clouds.yaml and the provider's configuration
			t.Errorf("volumes from Secrets %v (chart Secrets %d): want the existing ones, and no generated ones", secrets, r.count("Secret"))
		}
		out, err := helmRun(nil, helm, "template", rel, framework.ChartDir(), "--kube-version", "1.36.0", "--namespace", ns,
			"--set", "certificates.mode=existingSecret,connectionMetrics.tls.agentSecret=a,connectionMetrics.tls.adapterClientSecret=b,connectionMetrics.tls.adapterServingSecret=c")
		if err == nil || !strings.Contains(out, "Secret ops/c not found") || !strings.Contains(out, "connectionMetrics.tls.caBundle") {
			t.Errorf("existing serving Secret missing: want a failure naming it and the caBundle way out, got err=%v\n%s", err, out)
		}
		// GitOps (helm template, Argo CD): with the CA given as a value, rendering needs no cluster
		// and gives the same objects every time.
		caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: framework.NewPKI(t, "gitops-ca").CA.Raw}))
		caFile := filepath.Join(t.TempDir(), "ca.yaml")
		if err := os.WriteFile(caFile, []byte("connectionMetrics:\n  tls:\n    caBundle: |\n"+indent(caPEM, "      ")), 0o600); err != nil {
			t.Fatal(err)
		}
		render := func() string {
			out, err := helmRun(nil, helm, "template", rel, framework.ChartDir(), "--kube-version", "1.36.0", "--namespace", ns, "-f", caFile,
				"--set", "certificates.mode=existingSecret,connectionMetrics.tls.agentSecret=a,connectionMetrics.tls.adapterClientSecret=b,connectionMetrics.tls.adapterServingSecret=c")
			if err != nil {
				t.Fatalf("existingSecret with connectionMetrics.tls.caBundle, no cluster: %v\n%s", err, framework.Tail(out, 500))
			}
			return out
		}
		first := render()
		if render() != first {
			t.Error("two renders without a cluster differ: the objects would churn on every GitOps sync")
		}
		r = parseManifests(t, first)
		var api apiregv1.APIService
		r.get(t, "APIService", "v1beta1.custom.metrics.k8s.io", &api)
		if string(api.Spec.CABundle) != caPEM {
			t.Errorf("APIService caBundle %q, want the given CA", api.Spec.CABundle)
		}
	})

	// Bad values fail before anything is created, with a message naming the field.
	t.Run("bad values", func(t *testing.T) {
		for _, c := range []struct{ set, want string }{
			{"nodeAutoscaling.expander=fastest", "/nodeAutoscaling/expander"},
			{"certificates.mode=vault", "/certificates/mode"},
			{"connectionMetrics.adapter.window=30 seconds", "/connectionMetrics/adapter/window"},
			{"connectionMetrics.adapter.podAntiAffinty=hard", "podAntiAffinty"},
			{"spareCapacity.priorityClass.value=100", "/spareCapacity/priorityClass/value"},
			{"nodeAutoscaling.enabled=true", "/nodeAutoscaling/provider/config/clusterName"},
			{"nodeAutoscaling.enabled=true,nodeAutoscaling.provider.config.clusterName=prod", "nodeAutoscaling.provider.clouds: set existingSecret"},
		} {
			out, err := helmRun(nil, helm, "template", rel, framework.ChartDir(), "--kube-version", "1.36.0", "--set", c.set)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("--set %s: want a failure naming %q, got err=%v:\n%s", c.set, c.want, err, out)
				continue
			}
			t.Logf("--set %s → %s", c.set, strings.TrimSpace(framework.Tail(out, 400)))
		}
		// A typo in a node group fails at install, not when the provider starts in the pod.
		for _, c := range []struct{ set, want string }{
			{"nodeAutoscaling.provider.config.nodeGroups[0].nova.flavour=m1.large", "flavour"},
			{"nodeAutoscaling.provider.config.nodeGroups[1].heat.countParam=n", "countParam"},
			{"nodeAutoscaling.provider.config.nodeGroups[0].minsize=1", "minsize"},
			{"nodeAutoscaling.provider.config.nodeGroups[0].nova.networks[0].uid=x", "uid"},
			{"nodeAutoscaling.provider.config.nodeGroups[0].options.scaleDownUnneededTme=5m", "scaleDownUnneededTme"},
		} {
			out, err := helmRun(nil, helm, "template", rel, framework.ChartDir(), "--kube-version", "1.36.0", "-f", full, "--set", c.set)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("--set %s: want a failure naming %q, got err=%v:\n%s", c.set, c.want, err, framework.Tail(out, 600))
				continue
			}
			t.Logf("--set %s → %s", c.set, strings.TrimSpace(framework.Tail(out, 400)))
		}
	})
}

// access is one `kubectl auth can-i` question: verb, group, resource, subresource, namespace, name.
type access struct{ verb, group, resource, sub, ns, name string }

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.sub != "" {
		r += "/" + a.sub
	}
	if a.name != "" {
		r += " " + a.name
	}
	if a.ns != "" {
		r += " -n " + a.ns
	}
	return a.verb + " " + r
}

// canI asks the API server's authorizer, as `kubectl auth can-i --as=<service account>` does,
// with a SubjectAccessReview (kubectl cannot map the resources of an aggregated API whose
// backend is not running, and kwok runs none).
func canI(t *testing.T, w *framework.World, saNamespace, sa string, a access) bool {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + saNamespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNamespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource,
			Subresource: a.sub, Namespace: a.ns, Name: a.name},
	}}
	got, err := w.Kube.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), review, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got.Status.Allowed
}

// waitMetricsAPIsFree waits until no other test (connections, queues, examples) holds the
// metrics APIServices: they are cluster-wide, one owner at a time.
func waitMetricsAPIsFree(t *testing.T, w *framework.World) {
	t.Helper()
	agg := aggregator.NewForConfigOrDie(w.RestConfig)
	framework.Eventually(t, 5*time.Minute, 2*time.Second, "the metrics APIServices free of other tests' registrations", func() (bool, error) {
		for _, n := range []string{"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
			if _, err := agg.ApiregistrationV1().APIServices().Get(context.Background(), n, metav1.GetOptions{}); err == nil {
				return false, fmt.Errorf("APIService %s is registered (by a test running now?)", n)
			}
		}
		if _, err := w.Kube.CoreV1().Namespaces().Get(context.Background(), framework.MetricsNamespace, metav1.GetOptions{}); err == nil {
			return false, fmt.Errorf("namespace %s exists (a test running now?)", framework.MetricsNamespace)
		}
		return true, nil
	})
}

// The chart installs into the world's real API server with every part on: objects accepted,
// pods scheduled (kwok runs them), APIServices registered; each service account can do what its
// component needs and not more; a second release is refused the APIServices; uninstall leaves
// nothing behind.
func TestChartInstall(t *testing.T) {
	w := framework.Connect(t)
	helm := framework.HelmBinary(t)
	ctx := context.Background()
	const rel, ns = "osa-chart", "osa-chart-e2e"
	agg := aggregator.NewForConfigOrDie(w.RestConfig)

	waitMetricsAPIsFree(t, w)
	kwokNode(t, w, "chart-node-a", "16")
	kwokNode(t, w, "chart-node-b", "16")
	// As kubelets label their nodes; chart-node-a is in the node group the spare capacity keeps room in.
	for _, l := range [][]string{{"chart-node-a", "kubernetes.io/os=linux", "openstack-autoscaler.io/node-group=general"}, {"chart-node-b", "kubernetes.io/os=linux"}} {
		if out := kubectl(t, w, append([]string{"label", "node", "--overwrite"}, l...)...); !strings.Contains(out, "labeled") {
			t.Fatalf("label node: %s", out)
		}
	}
	testNamespace(t, w, ns)
	testNamespace(t, w, ns+"-other")
	// Runs before the namespaces are deleted (cleanups run last-in first-out).
	t.Cleanup(func() { _, _ = helmRun(w, helm, "uninstall", rel, "-n", ns, "--wait", "--timeout", "2m") })

	// The full values, with the world's cloud and no ServiceMonitors (no Prometheus Operator CRDs here).
	cloudsFile := w.Env["OS_CLIENT_CONFIG_FILE"]
	clouds, err := os.ReadFile(cloudsFile)
	if err != nil {
		t.Fatal(err)
	}
	override := map[string]any{
		"serviceMonitors": map[string]any{"enabled": false},
		"nodeAutoscaling": map[string]any{"provider": map[string]any{
			"clouds": map[string]any{"cloudsYaml": string(clouds), "cloud": "world"},
			"config": map[string]any{"clusterName": "chart-e2e", "autoDiscovery": map[string]any{"heatStacks": false},
				"nodeGroups": []any{map[string]any{"name": "general", "backend": "nova", "minSize": 0, "maxSize": 3,
					"nova": map[string]any{"flavor": "m1.small", "image": "world-node-image"}}}},
		}},
	}
	raw, err := yaml.Marshal(override)
	if err != nil {
		t.Fatal(err)
	}
	overrideFile := filepath.Join(t.TempDir(), "world-values.yaml")
	if err := os.WriteFile(overrideFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := helmRun(w, helm, "install", rel, framework.ChartDir(), "-n", ns, "-f", filepath.Join(framework.ChartDir(), "ci", "full-values.yaml"),
		"-f", overrideFile, "--wait", "--timeout", "4m")
	for attempt := 1; err != nil && strings.Contains(out, "belongs to no Helm release") && attempt < 4; attempt++ {
		// Another test registered the APIServices between our check and the install, and the
		// chart refused to take them over: wait for that test to end, then install again.
		t.Logf("install refused while another test holds the APIServices (%s); waiting", strings.TrimSpace(framework.Tail(out, 200)))
		waitMetricsAPIsFree(t, w)
		start = time.Now()
		out, err = helmRun(w, helm, "install", rel, framework.ChartDir(), "-n", ns, "-f", filepath.Join(framework.ChartDir(), "ci", "full-values.yaml"),
			"-f", overrideFile, "--wait", "--timeout", "4m")
	}
	if err != nil {
		t.Logf("pods:\n%s", kubectl(t, w, "get", "pods", "-n", ns, "-o", "wide"))
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install --wait: %s", time.Since(start).Round(time.Second))

	// Workloads: every pod scheduled and running (kwok plays the kubelet).
	var ds *appsv1.DaemonSet
	framework.Eventually(t, 90*time.Second, 2*time.Second, "the agent on every node", func() (bool, error) {
		ds, err = w.Kube.AppsV1().DaemonSets(ns).Get(ctx, rel+"-openstack-autoscaler-connection-agent", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ds.Status.DesiredNumberScheduled >= 2 && ds.Status.NumberReady == ds.Status.DesiredNumberScheduled,
			fmt.Errorf("desired %d ready %d", ds.Status.DesiredNumberScheduled, ds.Status.NumberReady)
	})
	for _, name := range []string{"cluster-autoscaler", "connection-metrics-adapter", "spare-general"} {
		d, err := w.Kube.AppsV1().Deployments(ns).Get(ctx, rel+"-openstack-autoscaler-"+name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != *d.Spec.Replicas {
			t.Errorf("Deployment %s: %d of %d ready", d.Name, d.Status.ReadyReplicas, *d.Spec.Replicas)
		}
	}
	pods, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=connection-metrics-adapter"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 2 || pods.Items[0].Spec.NodeName == pods.Items[1].Spec.NodeName {
		t.Errorf("adapter replicas must sit on two nodes (hard anti-affinity): %d pods", len(pods.Items))
	}

	// APIServices registered, pointing at the release's Service with its CA.
	for _, n := range []string{"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
		api, err := agg.ApiregistrationV1().APIServices().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("APIService %s: %v", n, err)
		}
		if api.Spec.Service == nil || api.Spec.Service.Namespace != ns || len(api.Spec.CABundle) == 0 {
			t.Errorf("APIService %s: %+v", n, api.Spec)
		}
	}

	// A second release may not take the APIServices over.
	out, err = helmRun(w, helm, "install", rel+"-other", framework.ChartDir(), "-n", ns+"-other")
	if err == nil || !strings.Contains(out, `belongs to Helm release "osa-chart" in namespace "osa-chart-e2e"`) {
		t.Errorf("a second release was not refused the APIServices (err %v):\n%s", err, out)
	} else {
		t.Logf("second release refused: %s", strings.TrimSpace(out))
	}
	if !strings.Contains(out, "connectionMetrics.delegate.customMetrics.service="+ns+"/"+rel+"-openstack-autoscaler-connection-metrics-adapter:<port>") {
		t.Errorf("the refusal does not say how to serve beside the existing adapter:\n%s", out)
	}
	// Told to serve beside it, a second release says how to take the APIService over.
	out, err = helmRun(w, helm, "install", rel+"-beside", framework.ChartDir(), "-n", ns+"-beside",
		"--set", "connectionMetrics.delegate.customMetrics.service="+ns+"/"+rel+"-openstack-autoscaler-connection-metrics-adapter:443",
		"--set", "connectionMetrics.delegate.customMetrics.insecureSkipTLSVerify=true")
	if err == nil || !strings.Contains(out, "kubectl annotate apiservice v1beta1.custom.metrics.k8s.io meta.helm.sh/release-name="+rel+"-beside meta.helm.sh/release-namespace="+ns+"-beside") {
		t.Errorf("a release delegating to the existing adapter was not told how to take its APIService over (err %v):\n%s", err, out)
	} else {
		t.Logf("delegating release told: %s", strings.TrimSpace(framework.Tail(out, 600)))
	}

	// An upgrade keeps the generated CAs (the APIServices' caBundle stays valid).
	secretCA := func() string {
		s, err := w.Kube.CoreV1().Secrets(ns).Get(ctx, rel+"-openstack-autoscaler-connection-metrics-adapter-serving-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["ca.crt"])
	}
	before := secretCA()
	if out, err := helmRun(w, helm, "upgrade", rel, framework.ChartDir(), "-n", ns, "--reuse-values", "--set", "connectionMetrics.adapter.window=45s"); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	if secretCA() != before {
		t.Errorf("helm upgrade replaced the adapter's serving CA")
	}
	api, err := agg.ApiregistrationV1().APIServices().Get(ctx, "v1beta2.custom.metrics.k8s.io", metav1.GetOptions{})
	if err != nil || string(api.Spec.CABundle) != before {
		t.Errorf("after upgrade the APIService's caBundle is not the serving CA (err %v)", err)
	}

	// RBAC: enough and no more, checked by the API server's authorizer.
	name := func(component string) string { return rel + "-openstack-autoscaler-" + component }
	const all = "" // every namespace
	checks := []struct {
		saNamespace, sa string
		access
		want bool
	}{
		{ns, name("connection-agent"), access{"list", "", "pods", "", all, ""}, true},
		{ns, name("connection-agent"), access{"watch", "", "pods", "", all, ""}, true},
		{ns, name("connection-agent"), access{"delete", "", "pods", "", "default", ""}, false},
		{ns, name("connection-agent"), access{"list", "", "secrets", "", all, ""}, false},
		{ns, name("connection-agent"), access{"get", "", "nodes", "", all, ""}, false},
		{ns, name("connection-metrics-adapter"), access{"list", "", "pods", "", all, ""}, true},
		{ns, name("connection-metrics-adapter"), access{"watch", "discovery.k8s.io", "endpointslices", "", all, ""}, true},
		{ns, name("connection-metrics-adapter"), access{"watch", "apps", "deployments", "", all, ""}, true},
		{ns, name("connection-metrics-adapter"), access{"list", "apps", "statefulsets", "", all, ""}, true},
		{ns, name("connection-metrics-adapter"), access{"create", "authentication.k8s.io", "tokenreviews", "", all, ""}, true},
		{ns, name("connection-metrics-adapter"), access{"create", "authorization.k8s.io", "subjectaccessreviews", "", all, ""}, true},
		{ns, name("connection-metrics-adapter"), access{"get", "", "configmaps", "", "kube-system", "extension-apiserver-authentication"}, true},
		{ns, name("connection-metrics-adapter"), access{"get", "", "configmaps", "", "kube-system", "kube-root-ca.crt"}, false},
		{ns, name("connection-metrics-adapter"), access{"list", "", "secrets", "", all, ""}, false},
		{ns, name("connection-metrics-adapter"), access{"delete", "", "pods", "", "default", ""}, false},
		{ns, name("connection-metrics-adapter"), access{"update", "apps", "deployments", "", "default", ""}, false},
		{ns, name("cluster-autoscaler"), access{"update", "", "nodes", "", all, ""}, true},
		{ns, name("cluster-autoscaler"), access{"create", "", "pods", "eviction", "default", ""}, true},
		{ns, name("cluster-autoscaler"), access{"watch", "policy", "poddisruptionbudgets", "", all, ""}, true},
		{ns, name("cluster-autoscaler"), access{"list", "storage.k8s.io", "csinodes", "", all, ""}, true},
		{ns, name("cluster-autoscaler"), access{"create", "", "events", "", "default", ""}, true},
		{ns, name("cluster-autoscaler"), access{"update", "coordination.k8s.io", "leases", "", ns, name("cluster-autoscaler")}, true},
		{ns, name("cluster-autoscaler"), access{"update", "coordination.k8s.io", "leases", "", "kube-system", "kube-controller-manager"}, false},
		{ns, name("cluster-autoscaler"), access{"update", "", "configmaps", "", ns, name("cluster-autoscaler") + "-status"}, true},
		{ns, name("cluster-autoscaler"), access{"update", "", "configmaps", "", ns, name("cluster-autoscaler")}, false},
		{ns, name("cluster-autoscaler"), access{"list", "", "secrets", "", all, ""}, false},
		{ns, name("cluster-autoscaler"), access{"delete", "", "pods", "", "default", ""}, false},
		// openstack-provider shares the pod's ServiceAccount: Nodes, Events, the node-repair Lease,
		// and, as node repair is on in the full values, deleting a replaced server's Node.
		{ns, name("cluster-autoscaler"), access{"delete", "", "nodes", "", all, ""}, true},
		{ns, name("cluster-autoscaler"), access{"list", "", "pods", "", all, ""}, true},
		{ns, name("cluster-autoscaler"), access{"watch", "", "nodes", "", all, ""}, true},
		{ns, name("cluster-autoscaler"), access{"update", "coordination.k8s.io", "leases", "", ns, name("cluster-autoscaler") + "-node-repair"}, true},
		// The HPA controller reads custom and external metrics; nobody else gets them from the chart.
		{"kube-system", "horizontal-pod-autoscaler", access{"get", "custom.metrics.k8s.io", "pods", "", "default", ""}, true},
		{"kube-system", "horizontal-pod-autoscaler", access{"list", "external.metrics.k8s.io", "rabbitmq_queue_messages_ready", "", "default", ""}, true},
		{"default", "default", access{"get", "custom.metrics.k8s.io", "pods", "", "default", ""}, false},
	}
	for _, c := range checks {
		if got := canI(t, w, c.saNamespace, c.sa, c.access); got != c.want {
			t.Errorf("can %s:%s %s? %v, want %v", c.saNamespace, c.sa, c.access, got, c.want)
		}
	}
	t.Logf("%d RBAC checks as the service accounts", len(checks))

	// The provider configuration the chart rendered is valid for the world's cloud.
	cfgSecret, err := w.Kube.CoreV1().Secrets(ns).Get(ctx, rel+"-openstack-autoscaler-cluster-autoscaler", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	providerYAML := filepath.Join(t.TempDir(), "provider.yaml")
	if err := os.WriteFile(providerYAML, []byte(strings.ReplaceAll(string(cfgSecret.Data["provider.yaml"]), "/etc/openstack/clouds.yaml", cloudsFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(framework.ProviderBinary(t), "validate", "--config", providerYAML).CombinedOutput(); err != nil {
		t.Errorf("openstack-provider validate of the chart's provider.yaml: %v\n%s", err, out)
	}

	// Uninstall leaves nothing with the release's labels, no APIService, no cluster-scoped RBAC.
	if out, err := helmRun(w, helm, "uninstall", rel, "-n", ns, "--wait", "--timeout", "2m"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	sel := "app.kubernetes.io/instance=" + rel
	framework.Eventually(t, 90*time.Second, 2*time.Second, "nothing left of the release", func() (bool, error) {
		left := strings.TrimSpace(kubectl(t, w, "get", "-A", "-l", sel, "-o", "name",
			"pods,deployments,daemonsets,services,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies,"+
				"clusterroles,clusterrolebindings,apiservices,priorityclasses"))
		return left == "", fmt.Errorf("left: %s", left)
	})
	for _, n := range []string{"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
		if _, err := agg.ApiregistrationV1().APIServices().Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("APIService %s still there after uninstall (err %v)", n, err)
		}
	}
	for _, kind := range []string{"clusterroles", "clusterrolebindings"} {
		if out := kubectl(t, w, "get", kind, "-o", "name"); strings.Contains(out, rel+"-openstack-autoscaler") {
			t.Errorf("%s left after uninstall:\n%s", kind, out)
		}
	}
}

// Every flag the chart passes to the product's binaries exists: each binary is run with the
// rendered arguments followed by --help, which parses all of them first.
func TestChartArgsAreFlags(t *testing.T) {
	helm := framework.HelmBinary(t)
	r := helmTemplate(t, helm, "osa", "ops", "-f", filepath.Join(framework.ChartDir(), "ci", "full-values.yaml"),
		"--set", "connectionMetrics.adapter.extraArgs.authentication-skip-lookup=true",
		"--set", "connectionMetrics.delegate.customMetrics.service=monitoring/prometheus-adapter:443,connectionMetrics.delegate.customMetrics.caBundle=x",
		"--set", "connectionMetrics.delegate.externalMetrics.service=keda/keda-metrics,connectionMetrics.delegate.externalMetrics.insecureSkipTLSVerify=true")
	ca, adapter, agent := r.workloads(t, "osa")
	for _, c := range []struct {
		binary string
		args   []string
	}{
		{"openstack-provider", ca.Spec.Template.Spec.InitContainers[0].Args},
		{"connection-agent", agent.Spec.Template.Spec.Containers[0].Args},
		{"connection-metrics-adapter", adapter.Spec.Template.Spec.Containers[0].Args},
	} {
		out, _ := exec.Command(framework.Binary(t, c.binary), append(slices.Clone(c.args), "--help")...).CombinedOutput()
		for _, bad := range []string{"flag provided but not defined", "unknown flag", "unknown shorthand", "invalid argument"} {
			if strings.Contains(string(out), bad) {
				t.Errorf("%s refuses the chart's arguments %v:\n%s", c.binary, c.args, framework.Tail(string(out), 1500))
			}
		}
		if !strings.Contains(string(out), "Usage") && !strings.Contains(string(out), "usage") {
			t.Errorf("%s --help printed no usage:\n%s", c.binary, framework.Tail(string(out), 500))
		}
		t.Logf("%s accepts the chart's %d arguments", c.binary, len(c.args))
	}
}

// writeMounts writes the data of the rendered Secret or ConfigMap named name into dir, as the
// pod would see it mounted there, and returns dir.
func writeMounts(t *testing.T, r rendered, kind, name, dir string, edit func(key string, b []byte) []byte) string {
	t.Helper()
	data := map[string][]byte{}
	if kind == "Secret" {
		var s corev1.Secret
		r.get(t, kind, name, &s)
		data = s.Data
	} else {
		var cm corev1.ConfigMap
		r.get(t, kind, name, &cm)
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if edit != nil {
			v = edit(k, v)
		}
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rewriteArgs maps the pod's mount paths to local directories and replaces the listen flags.
func rewriteArgs(args []string, mounts map[string]string, flags map[string]string) []string {
	var out []string
	for _, a := range args {
		for from, to := range mounts {
			a = strings.ReplaceAll(a, from, to)
		}
		name, _, _ := strings.Cut(a, "=")
		if v, ok := flags[name]; ok {
			a = name + "=" + v
		}
		out = append(out, a)
	}
	return out
}

// The chart's certificates and arguments work with the real binaries: openstack-provider, run
// with the chart's arguments, configuration and server certificate, answers a gRPC client
// holding the chart's cluster-autoscaler client certificate (as externalgrpc dials 127.0.0.1) and
// refuses one without; connection-metrics-adapter, run with the chart's arguments and serving
// certificate, passes its probes over HTTPS for the name the aggregator checks, with the
// APIService's caBundle. With CLUSTER_AUTOSCALER_BIN, the stock autoscaler runs with the chart's
// arguments too.
func TestChartCertificatesWithTheBinaries(t *testing.T) {
	w := framework.Connect(t)
	helm := framework.HelmBinary(t)
	const rel, ns = "osa", "ops"
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`nodeAutoscaling:
  enabled: true
  provider:
    clouds: {existingSecret: clouds, cloud: world}
    config:
      clusterName: chart-certs
      nodeGroups:
      - name: general
        backend: nova
        minSize: 0
        maxSize: 2
        nova: {flavor: m1.small, image: world-node-image}
        # No pod tolerates this: a cluster-autoscaler run with these values (below) never grows
        # the group.
        taints: [{key: e2e-chart-certs, value: only, effect: NoSchedule}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := helmTemplate(t, helm, rel, ns, "-f", values)
	dir := t.TempDir()
	var dep appsv1.Deployment
	r.get(t, "Deployment", rel+"-openstack-autoscaler-cluster-autoscaler", &dep)
	mounts := map[string]string{
		"/etc/openstack-provider/tls": writeMounts(t, r, "Secret", rel+"-openstack-autoscaler-cluster-autoscaler-provider-server-tls", filepath.Join(dir, "provider-tls"), nil),
		"/etc/openstack-provider/provider.yaml": filepath.Join(writeMounts(t, r, "Secret", rel+"-openstack-autoscaler-cluster-autoscaler", filepath.Join(dir, "provider"),
			func(_ string, b []byte) []byte {
				return []byte(strings.ReplaceAll(string(b), "/etc/openstack/clouds.yaml", w.Env["OS_CLIENT_CONFIG_FILE"]))
			}), "provider.yaml"),
	}
	grpcAddr, httpAddr := framework.FreeAddr(t), framework.FreeAddr(t)
	args := rewriteArgs(dep.Spec.Template.Spec.InitContainers[0].Args, mounts, map[string]string{"--listen": grpcAddr, "--http-listen": httpAddr})
	// In its pod the provider reaches the API server in-cluster (it follows the autoscaler's
	// Lease); here, through the world's kubeconfig.
	args = append(args, "--kubeconfig", w.Env["KUBECONFIG"])
	framework.Start(t, "openstack-provider", framework.ProviderBinary(t), args...)
	framework.Eventually(t, time.Minute, 500*time.Millisecond, "openstack-provider ready", func() (bool, error) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("readyz %d", resp.StatusCode)
	})

	// cluster-autoscaler's side: the client Secret, the cloud-config's address (127.0.0.1).
	client := writeMounts(t, r, "Secret", rel+"-openstack-autoscaler-cluster-autoscaler-provider-client-tls", filepath.Join(dir, "autoscaler-tls"), nil)
	call := func(withCert bool) ([]string, error) {
		roots := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(client, "ca.crt"))
		if err != nil || !roots.AppendCertsFromPEM(ca) {
			t.Fatalf("client ca.crt: %v", err)
		}
		conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if withCert {
			cert, err := tls.LoadX509KeyPair(filepath.Join(client, "tls.crt"), filepath.Join(client, "tls.key"))
			if err != nil {
				t.Fatal(err)
			}
			conf.Certificates = []tls.Certificate{cert}
		}
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := pb.NewCloudProviderClient(conn).NodeGroups(ctx, &pb.NodeGroupsRequest{})
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, g := range resp.NodeGroups {
			ids = append(ids, g.Id)
		}
		return ids, nil
	}
	if ids, err := call(true); err != nil || !slices.Contains(ids, "general") {
		t.Errorf("NodeGroups with the chart's client certificate: %v, %v", ids, err)
	} else {
		t.Logf("openstack-provider with the chart's arguments and certificates: NodeGroups %v over mutual TLS", ids)
	}
	if _, err := call(false); err == nil {
		t.Errorf("a client without the chart's client certificate got an answer")
	}
	if bin := stockAutoscalerBin(); bin != "" {
		chartAutoscalerRuns(t, w, r, bin, dep, client, grpcAddr, filepath.Join(dir, "autoscaler"))
	}

	// The adapter: the chart's arguments and certificates, out of the cluster (kubeconfig flags
	// added), probes over HTTPS as the kubelet sends them (anonymous), checked as the aggregator does.
	var adapter appsv1.Deployment
	r.get(t, "Deployment", rel+"-openstack-autoscaler-connection-metrics-adapter", &adapter)
	port := strings.TrimPrefix(framework.FreeAddr(t), "127.0.0.1:")
	args = rewriteArgs(adapter.Spec.Template.Spec.Containers[0].Args, map[string]string{
		"/etc/connection-metrics-adapter/serving":      writeMounts(t, r, "Secret", rel+"-openstack-autoscaler-connection-metrics-adapter-serving-tls", filepath.Join(dir, "serving"), nil),
		"/etc/connection-metrics-adapter/agent-client": writeMounts(t, r, "Secret", rel+"-openstack-autoscaler-connection-metrics-adapter-client-tls", filepath.Join(dir, "agent-client"), nil),
	}, map[string]string{"--secure-port": port, "--metrics-listen": framework.FreeAddr(t)})
	kubeconfig := w.Env["KUBECONFIG"]
	args = append(args, "--bind-address=127.0.0.1", "--lister-kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig)
	framework.Start(t, "connection-metrics-adapter", framework.Binary(t, "connection-metrics-adapter"), args...)
	var api apiregv1.APIService
	r.get(t, "APIService", "v1beta2.custom.metrics.k8s.io", &api)
	bundle := x509.NewCertPool()
	bundle.AppendCertsFromPEM(api.Spec.CABundle)
	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: bundle, ServerName: api.Spec.Service.Name + "." + api.Spec.Service.Namespace + ".svc", MinVersion: tls.VersionTLS12}}}
	for _, probe := range []string{adapter.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Path, adapter.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path} {
		framework.Eventually(t, time.Minute, time.Second, "adapter "+probe, func() (bool, error) {
			resp, err := httpsClient.Get("https://127.0.0.1:" + port + probe)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, fmt.Errorf("%s: %d", probe, resp.StatusCode)
		})
	}
	t.Logf("connection-metrics-adapter with the chart's arguments and serving certificate: probes answer, verified with the APIService caBundle")
}

// chartAutoscalerRuns runs a stock cluster-autoscaler with the chart's container arguments and
// cloud-config (mount paths mapped to local files, out of the cluster: kubeconfig added, the
// namespace the world's default): it takes the leader Lease and writes its status ConfigMap
// naming the group it got from openstack-provider over the chart's mutual TLS.
func chartAutoscalerRuns(t *testing.T, w *framework.World, r rendered, bin string, dep appsv1.Deployment, clientTLS, grpcAddr, dir string) {
	ctx := context.Background()
	container := dep.Spec.Template.Spec.Containers[0]
	configDir := writeMounts(t, r, "Secret", dep.Name, dir, func(_ string, b []byte) []byte {
		text := strings.ReplaceAll(string(b), "/etc/cluster-autoscaler/tls", clientTLS)
		return []byte(regexp.MustCompile(`(?m)^address: \S+$`).ReplaceAllString(text, "address: "+grpcAddr))
	})
	args := rewriteArgs(container.Args, map[string]string{"/etc/cluster-autoscaler/cloud-config.yaml": filepath.Join(configDir, "cloud-config.yaml")},
		map[string]string{"--address": framework.FreeAddr(t), "--namespace": "default", "--leader-elect-resource-namespace": "default"})
	args = append(args, "--kubeconfig="+w.Env["KUBECONFIG"])
	flag := func(name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
		}
		t.Fatalf("the chart's cluster-autoscaler has no %s", name)
		return ""
	}
	statusName, leaseName := flag("--status-config-map-name"), flag("--leader-elect-resource-name")
	t.Cleanup(func() {
		_ = w.Kube.CoreV1().ConfigMaps("default").Delete(context.Background(), statusName, metav1.DeleteOptions{})
		_ = w.Kube.CoordinationV1().Leases("default").Delete(context.Background(), leaseName, metav1.DeleteOptions{})
	})
	framework.Start(t, "cluster-autoscaler", bin, args...)
	framework.Eventually(t, 90*time.Second, time.Second, "cluster-autoscaler's status naming group general", func() (bool, error) {
		cm, err := w.Kube.CoreV1().ConfigMaps("default").Get(ctx, statusName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return strings.Contains(cm.Data["status"], "name: general"), fmt.Errorf("status: %.300s", cm.Data["status"])
	})
	lease, err := w.Kube.CoordinationV1().Leases("default").Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("leader Lease %s: %v, %v", leaseName, lease, err)
	}
	t.Logf("stock cluster-autoscaler with the chart's arguments and cloud-config: leader on Lease %s, status names the provider's group", leaseName)
}

func indent(text, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if line != "" {
			b.WriteString(prefix + line)
		}
	}
	return b.String()
}

// workloads are the release's three workloads as rendered: the node autoscaling Deployment, the
// adapter's Deployment and the agent's DaemonSet.
func (r rendered) workloads(t *testing.T, release string) (autoscaler, adapter appsv1.Deployment, agent appsv1.DaemonSet) {
	t.Helper()
	r.get(t, "Deployment", release+"-openstack-autoscaler-cluster-autoscaler", &autoscaler)
	r.get(t, "Deployment", release+"-openstack-autoscaler-connection-metrics-adapter", &adapter)
	r.get(t, "DaemonSet", release+"-openstack-autoscaler-connection-agent", &agent)
	return autoscaler, adapter, agent
}
