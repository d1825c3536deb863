package framework

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"
)

// Where the connection metrics live in the world, as the chart would put them.
const (
	MetricsNamespace = "openstack-autoscaler"
	AdapterService   = "connection-metrics-adapter"
	AgentService     = "connection-agent"
	AdapterPort      = 6444
	// AgentServerName is the name the agents' serving certificate carries.
	AgentServerName = AgentService + "." + MetricsNamespace + ".svc"
)

// ConnectionMetrics is a running connection-agent (for every pod of this host: all the world's
// pod sandboxes live here) and connection-metrics-adapter, registered through APIServices.
type ConnectionMetrics struct {
	// AgentMetrics is the agent's /metrics URL.
	AgentMetrics string
	procs        []*exec.Cmd
	w            *World
	apis         []string // APIService names, removed by Stop
	lock         *os.File
}

// lockAPIServices waits (up to 10 minutes) for the exclusive lock on the metrics APIServices:
// they, the adapter's port and namespace exist once per cluster, so tests and the demo in
// different processes take turns. The kernel releases the lock if the holder dies.
func lockAPIServices() (*os.File, error) {
	path := filepath.Join(filepath.Dir(EnvFile()), "metrics-apiservices.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(time.Second) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s: another test or the demo has held the metrics APIServices for 10 minutes", path)
		}
	}
}

// Option changes what StartConnectionMetrics starts.
type Option func(*options)

type options struct {
	rabbitmqConfig string
	delegate       *OtherMetrics
	noBTF          bool
}

// WithoutKernelBTF starts the agent where /sys/kernel/btf/vmlinux is empty (a bind mount in a
// mount namespace of its own), as on a kernel built without BTF: it cannot load its BPF program
// and must fall back to sock_diag.
func WithoutKernelBTF() Option { return func(o *options) { o.noBTF = true } }

// WithDelegate has the adapter take over the APIServices other registered and hand it every
// metric it does not serve (--custom-metrics-delegate, --external-metrics-delegate), as the
// chart's connectionMetrics.delegate does.
func WithDelegate(other *OtherMetrics) Option { return func(o *options) { o.delegate = other } }

// WithRabbitMQConfig passes --rabbitmq-config to the adapter and registers
// v1beta1.external.metrics.k8s.io too.
func WithRabbitMQConfig(path string) Option { return func(o *options) { o.rabbitmqConfig = path } }

// StartConnectionMetrics runs binDir/connection-agent and binDir/connection-metrics-adapter with
// certificates, logs and state in workDir, wires them as a cluster would (Services,
// EndpointSlices, APIServices for custom.metrics.k8s.io v1beta1 and v1beta2, and with
// WithRabbitMQConfig for external.metrics.k8s.io v1beta1), and waits until
// the API is available. window is the adapter's averaging window.
func StartConnectionMetrics(w *World, binDir, workDir, window string, opts ...Option) (*ConnectionMetrics, error) {
	ctx := context.Background()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	m := &ConnectionMetrics{w: w}
	if o.delegate == nil { // the other server holds the lock for both
		lock, err := lockAPIServices()
		if err != nil {
			return nil, err
		}
		m.lock = lock
	}
	apis := []apiregv1.APIServiceSpec{{Group: "custom.metrics.k8s.io", Version: "v1beta1"}, {Group: "custom.metrics.k8s.io", Version: "v1beta2"}}
	var extra []string
	if o.rabbitmqConfig != "" {
		extra = []string{"--rabbitmq-config", o.rabbitmqConfig}
	}
	if o.delegate != nil {
		for _, g := range []string{"custom", "external"} {
			extra = append(extra, "--"+g+"-metrics-delegate", o.delegate.Service, "--"+g+"-metrics-delegate-ca", o.delegate.CAFile)
		}
	}
	if o.rabbitmqConfig != "" || o.delegate != nil {
		apis = append(apis, apiregv1.APIServiceSpec{Group: "external.metrics.k8s.io", Version: "v1beta1"})
	}
	ok := false
	defer func() {
		if !ok {
			m.Stop()
		}
	}()
	kubeconfig, hostIP, nodeIP := w.Env["KUBECONFIG"], w.Env["OSA_WORLD_HOST_IP"], "198.51.100.11"
	var agentPKI, clientPKI, servingPKI *PKI
	var err error
	if agentPKI, err = CreatePKI(workDir, "agents"); err != nil {
		return nil, err
	}
	if clientPKI, err = CreatePKI(workDir, "adapter-clients"); err != nil {
		return nil, err
	}
	if servingPKI, err = CreatePKI(workDir, "adapter-serving"); err != nil {
		return nil, err
	}
	// As the Helm chart does: the agents' certificate names their Service, not an address (pod
	// IPs are not known when it is made), and the adapter checks it with --agent-server-name.
	agentCert, agentKey, err := agentPKI.IssueFiles("connection-agent", x509.ExtKeyUsageServerAuth, nil, AgentServerName)
	if err != nil {
		return nil, err
	}
	clientCert, clientKey, err := clientPKI.IssueFiles("connection-metrics-adapter", x509.ExtKeyUsageClientAuth, nil)
	if err != nil {
		return nil, err
	}
	servingCert, servingKey, err := servingPKI.IssueFiles("adapter-serving", x509.ExtKeyUsageServerAuth, []string{hostIP},
		AdapterService+"."+MetricsNamespace+".svc")
	if err != nil {
		return nil, err
	}
	agentPort, err := freePort()
	if err != nil {
		return nil, err
	}
	agentMetricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	m.AgentMetrics = "http://127.0.0.1:" + strconv.Itoa(agentMetricsPort) + "/metrics"
	// The agent listens on the node address: EndpointSlices take no loopback address. It counts
	// from kernel events where it can (this machine can), with sock_diag checks every 20 s.
	agentCmd := []string{filepath.Join(binDir, "connection-agent")}
	if o.noBTF {
		agentCmd = []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind /dev/null /sys/kernel/btf/vmlinux && exec "$0" "$@"`, agentCmd[0]}
	}
	if err := m.start(filepath.Join(workDir, "connection-agent.log"), agentCmd[0], append(agentCmd[1:],
		"--kubeconfig", kubeconfig, "--all-nodes", "--listen", net.JoinHostPort(nodeIP, strconv.Itoa(agentPort)),
		"--metrics-listen", "127.0.0.1:"+strconv.Itoa(agentMetricsPort), "--interval", "2s", "--check-interval", "20s",
		"--tls-cert", agentCert, "--tls-key", agentKey, "--client-ca", clientPKI.CAFile)...); err != nil {
		return nil, err
	}
	adapterArgs := append([]string{"--lister-kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--bind-address", hostIP, "--secure-port", strconv.Itoa(AdapterPort), "--tls-cert-file", servingCert, "--tls-private-key-file", servingKey,
		"--agent-service", MetricsNamespace + "/" + AgentService, "--agent-client-cert", clientCert, "--agent-client-key", clientKey,
		"--agent-ca", agentPKI.CAFile, "--agent-server-name", AgentServerName, "--pull-interval", "2s", "--window", window, "--ttl", "15s", "--metrics-listen", "127.0.0.1:0"}, extra...)
	if err := m.start(filepath.Join(workDir, "connection-metrics-adapter.log"), filepath.Join(binDir, "connection-metrics-adapter"), adapterArgs...); err != nil {
		return nil, err
	}

	// Selector-less Services with named ports and hand-made EndpointSlices, as the DaemonSet's and
	// the Deployment's would have: the adapter finds the agent through its Service's slices, and
	// the aggregator (with --enable-aggregator-routing) dials the adapter's endpoint.
	if err := selectorlessService(ctx, w, MetricsNamespace, AdapterService, hostIP, AdapterPort, 443); err != nil {
		return nil, err
	}
	if err := selectorlessService(ctx, w, MetricsNamespace, AgentService, nodeIP, agentPort, agentPort); err != nil {
		return nil, err
	}
	if m.apis, err = registerAPIServices(ctx, w, apis, MetricsNamespace, AdapterService, servingPKI.CAPEM()); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, workDir)
	}
	ok = true
	return m, nil
}

// selectorlessService makes a Service with one named port (https, front → port) and a hand-made
// EndpointSlice with ip, as a Deployment's or DaemonSet's would have: the adapter finds the
// agent through its Service's slices, and the aggregator (with --enable-aggregator-routing)
// dials the adapter's endpoint.
func selectorlessService(ctx context.Context, w *World, namespace, name, ip string, port, front int) error {
	kube := w.Kube
	if err := ensureNamespace(ctx, kube, namespace); err != nil {
		return err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: int32(front), TargetPort: intstr.FromInt(port)}}}}
	if _, err := kube.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port))}},
	}
	_ = kube.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, slice.Name, metav1.DeleteOptions{})
	_, err := kube.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{})
	return err
}

// registerAPIServices (re)creates the APIServices of specs, served by namespace/name:443 with
// caPEM, and waits (90 s) until the aggregator finds them available. It returns their names.
func registerAPIServices(ctx context.Context, w *World, specs []apiregv1.APIServiceSpec, namespace, name string, caPEM []byte) ([]string, error) {
	agg := aggregator.NewForConfigOrDie(w.RestConfig)
	var names []string
	for _, spec := range specs {
		api := &apiregv1.APIService{
			ObjectMeta: metav1.ObjectMeta{Name: spec.Version + "." + spec.Group},
			Spec: apiregv1.APIServiceSpec{Group: spec.Group, Version: spec.Version, CABundle: caPEM,
				Service:              &apiregv1.ServiceReference{Namespace: namespace, Name: name, Port: ptr.To(int32(443))},
				GroupPriorityMinimum: 100, VersionPriority: 200},
		}
		_ = agg.ApiregistrationV1().APIServices().Delete(ctx, api.Name, metav1.DeleteOptions{})
		if _, err := agg.ApiregistrationV1().APIServices().Create(ctx, api, metav1.CreateOptions{}); err != nil {
			return names, err
		}
		names = append(names, api.Name)
	}
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; i < len(names); {
		api, err := agg.ApiregistrationV1().APIServices().Get(ctx, names[i], metav1.GetOptions{})
		available := false
		if err == nil {
			for _, c := range api.Status.Conditions {
				available = available || (c.Type == apiregv1.Available && c.Status == apiregv1.ConditionTrue)
			}
		}
		if available {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return names, fmt.Errorf("%s not available after 90s", names[i])
		}
		time.Sleep(time.Second)
	}
	return names, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (m *ConnectionMetrics) start(logPath, bin string, args ...string) error {
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = ChildAttrs()
	if err := cmd.Start(); err != nil {
		return errors.Join(err, log.Close())
	}
	m.procs = append(m.procs, cmd)
	return nil
}

// KillAgent ends the connection-agent at once (SIGKILL, as a crashed or evicted agent), leaving
// the adapter running.
func (m *ConnectionMetrics) KillAgent() {
	if len(m.procs) == 0 {
		return
	}
	agent := m.procs[0] // started first
	_ = agent.Process.Kill()
	_ = agent.Wait()
	m.procs = m.procs[1:]
}

// Stop unregisters the APIServices, removes the namespace and ends both processes (by PID).
func (m *ConnectionMetrics) Stop() {
	ctx := context.Background()
	agg := aggregator.NewForConfigOrDie(m.w.RestConfig)
	for _, name := range m.apis {
		_ = agg.ApiregistrationV1().APIServices().Delete(ctx, name, metav1.DeleteOptions{})
	}
	_ = m.w.Kube.CoreV1().Namespaces().Delete(ctx, MetricsNamespace, metav1.DeleteOptions{})
	for _, cmd := range m.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	m.procs = nil
	if m.lock != nil {
		_ = m.lock.Close() // releases the flock
		m.lock = nil
	}
}
