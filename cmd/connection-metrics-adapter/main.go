// Command connection-metrics-adapter serves custom.metrics.k8s.io (v1beta2 and v1beta1) with the
// pods' TCP connections that connection-agents count: tcp_connections (averaged over a sliding
// window), tcp_connections_max, tcp_new_connections_per_second, tcp_syn_backlog and
// tcp_outbound_connections. It is an aggregated API server (delegated authentication and
// authorization) built on sigs.k8s.io/custom-metrics-apiserver. With --rabbitmq-config it also
// serves external.metrics.k8s.io (v1beta1) with the configured RabbitMQ queues' depth,
// unacknowledged count and publish/deliver rates. With --custom-metrics-delegate (and
// --external-metrics-delegate) it stands in front of the server that had the group before
// (prometheus-adapter, KEDA) and hands it every metric it does not serve, and discovery.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/util/sets"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/delegate"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/externalapi"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/metricsapi"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/puller"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/buildinfo"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/certs"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/logging"
)

func main() {
	logs.InitLogs()
	defer logs.FlushLogs()
	cmd := &basecmd.AdapterBase{Name: "connection-metrics-adapter"}
	var (
		agents                         []string
		agentService, agentPort        string
		clientCert, clientKey, agentCA string
		agentServerName                string
		interval, timeout, window, ttl time.Duration
		metricsListen, rabbitmqConfig  string
		delegates                      = map[string]*delegateFlags{customGroup: {}, externalGroup: {}}
	)
	fs := cmd.Flags()
	fs.StringArrayVar(&agents, "agent", nil, "an agent's base URL (https://host:port); repeat for more")
	fs.StringVar(&agentService, "agent-service", "", "namespace/name of the agents' Service: agents are found in its EndpointSlices")
	fs.StringVar(&agentPort, "agent-port-name", "https", "name of the agents' port in the EndpointSlices")
	fs.StringVar(&clientCert, "agent-client-cert", "", "client certificate (PEM) the agents accept")
	fs.StringVar(&clientKey, "agent-client-key", "", "its key (PEM)")
	fs.StringVar(&agentCA, "agent-ca", "", "CA (PEM) of the agents' serving certificates")
	fs.StringVar(&agentServerName, "agent-server-name", "", "name the agents' serving certificates are checked against (e.g. connection-agent.<namespace>.svc); empty: the address pulled (pod IP), and a renewed --agent-ca is then read only at start")
	fs.DurationVar(&interval, "pull-interval", 5*time.Second, "how often every agent is pulled (each on its own loop: an agent that hangs delays only its node's values)")
	fs.DurationVar(&timeout, "pull-timeout", 3*time.Second, "timeout of one pull")
	fs.DurationVar(&window, "window", 30*time.Second, "sliding window tcp_connections is averaged over")
	fs.DurationVar(&ttl, "ttl", 30*time.Second, "a pod's values are withdrawn when the adapter has received no new sample of it for this long; a sample stamped further than this from its receipt (its node's clock is off) is refused")
	fs.StringVar(&metricsListen, "metrics-listen", "127.0.0.1:10262", "HTTP address of the adapter's own /metrics")
	fs.StringVar(&rabbitmqConfig, "rabbitmq-config", "", "YAML file of RabbitMQ brokers and queues to serve as external metrics (absent: no external metrics)")
	for group, d := range delegates {
		p := strings.Split(group, ".")[0] + "-metrics-delegate"
		fs.StringVar(&d.service, p, "", "namespace/name[:port] (443) of the Service that served "+group+" before this adapter: every metric this adapter does not serve, and discovery, is handed to it unchanged (prometheus-adapter, KEDA)")
		fs.StringVar(&d.ca, p+"-ca", "", "CA (PEM) of that Service's serving certificate (its APIService's caBundle)")
		fs.BoolVar(&d.insecure, p+"-insecure-skip-tls-verify", false, "do not check that Service's certificate (only as its APIService had insecureSkipTLSVerify): the adapter's credentials then go to an unverified peer, so only EndpointSlices written by the EndpointSlice controller are used; prefer the CA")
	}
	logOpts := logging.AddFlags(fs)
	printVersion := buildinfo.AddFlag(fs, "connection-metrics-adapter")
	fs.AddGoFlagSet(flag.CommandLine)
	if err := fs.Parse(os.Args); err != nil {
		klog.ErrorS(err, "flags")
		os.Exit(2)
	}
	printVersion.ExitIfSet()
	if err := logOpts.Apply(); err != nil {
		klog.ErrorS(err, "flags")
		os.Exit(2)
	}
	brokers, err := queueBrokers(rabbitmqConfig)
	if err != nil {
		klog.ErrorS(err, "--rabbitmq-config")
		os.Exit(2)
	}
	if len(brokers) > 0 {
		cmd.WithExternalMetrics(&externalapi.Provider{Brokers: brokers})
	}
	for group, d := range delegates {
		if err := d.check(group); err != nil {
			klog.ErrorS(err, "flags")
			os.Exit(2)
		}
	}
	if err := run(cmd, agents, agentService, agentPort, clientCert, clientKey, agentCA, agentServerName, interval, timeout, window, ttl, metricsListen, brokers, delegates); err != nil {
		klog.ErrorS(err, "connection-metrics-adapter stopped")
		os.Exit(1)
	}
}

func run(cmd *basecmd.AdapterBase, agents []string, agentService, agentPort, clientCert, clientKey, agentCA, agentServerName string,
	interval, timeout, window, ttl time.Duration, metricsListen string, brokers []*rabbitmq.Broker, delegates map[string]*delegateFlags) error {
	if len(agents) == 0 && agentService == "" {
		return fmt.Errorf("no agents: set --agent-service namespace/name (or --agent URLs)")
	}
	if clientCert == "" || clientKey == "" || agentCA == "" {
		return fmt.Errorf("--agent-client-cert, --agent-client-key and --agent-ca are required: agents serve only clients with a certificate")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	httpClient, err := agentClient(ctx, clientCert, clientKey, agentCA, agentServerName)
	if err != nil {
		return err
	}
	factory, err := cmd.Informers()
	if err != nil {
		return err
	}
	st := store.New(window, ttl)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("openstack_autoscaler"))
	if len(brokers) > 0 {
		queueMetrics := rabbitmq.NewMetrics(reg)
		for _, b := range brokers {
			b.Metrics = queueMetrics
		}
	}
	// One clock: the puller stamps every sample's receipt with it, the provider judges
	// freshness with it.
	clk := clock.RealClock{}
	pl := &puller.Puller{Client: httpClient, Store: st, Interval: interval, Timeout: timeout, Clock: clk, Static: agents,
		Metrics: puller.NewMetrics(reg, func() float64 { return float64(st.Len()) })}
	if agentService != "" {
		ns, name, ok := strings.Cut(agentService, "/")
		if !ok {
			return fmt.Errorf("--agent-service %q: write it as namespace/name", agentService)
		}
		pl.Slices, pl.Namespace, pl.Service, pl.Port = factory.Discovery().V1().EndpointSlices().Lister(), ns, name, agentPort
	}
	// Only what the adapter reads of each pod is kept (measured: 4.3× less memory at 30,000 pods).
	if err := factory.Core().V1().Pods().Informer().SetTransform(metricsapi.TrimPod); err != nil {
		return err
	}
	pods := factory.Core().V1().Pods().Lister()
	pl.PodNode = func(namespace, name string) (string, string, bool) {
		pod, err := pods.Pods(namespace).Get(name)
		if err != nil {
			return "", "", false
		}
		return pod.Spec.NodeName, string(pod.UID), true
	}
	cmd.WithCustomMetrics(&metricsapi.Provider{Store: st, Pods: pods, Now: clk.Now,
		Slices:       factory.Discovery().V1().EndpointSlices().Lister(),
		Deployments:  factory.Apps().V1().Deployments().Lister(),
		StatefulSets: factory.Apps().V1().StatefulSets().Lister()})

	ours := map[string]sets.Set[string]{customGroup: sets.New(metricsapi.MetricNames()...), externalGroup: sets.New[string]()}
	if len(brokers) > 0 {
		ours[externalGroup] = sets.New(externalapi.MetricNames()...)
	}
	backends, err := delegateBackends(ctx, cmd, delegates, ours)
	if err != nil {
		return err
	}
	if len(backends) > 0 {
		config, err := cmd.Config()
		if err != nil {
			return err
		}
		m := delegate.NewMetrics(reg)
		// Inside authentication and authorization: a caller reaches the backend only with a
		// request the cluster allowed it.
		config.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
			return genericapiserver.DefaultBuildHandlerChain(delegate.Wrap(h, backends, m), c)
		}
	}

	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go pl.Run(ctx)
	for _, b := range brokers {
		go b.Run(ctx)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	metricsSrv := &http.Server{Addr: metricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := metricsSrv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			klog.ErrorS(err, "--metrics-listen")
		}
	}()
	defer metricsSrv.Close()
	var handedTo []string
	for _, b := range backends {
		handedTo = append(handedTo, b.Group+"="+b.URL.Host)
	}
	klog.InfoS("serving custom.metrics.k8s.io", "agents", len(agents), "agentService", agentService, "window", window, "ttl", ttl,
		"rabbitmqBrokers", len(brokers), "otherMetricsHandedTo", handedTo)
	return cmd.Run(ctx)
}

const (
	customGroup   = "custom.metrics.k8s.io"
	externalGroup = "external.metrics.k8s.io"
)

// delegateFlags name the server a group is handed on to.
type delegateFlags struct {
	service, ca string
	insecure    bool
}

func (d *delegateFlags) check(group string) error {
	p := "--" + strings.Split(group, ".")[0] + "-metrics-delegate"
	if d.service == "" {
		if d.ca != "" || d.insecure {
			return fmt.Errorf("%s-ca / %s-insecure-skip-tls-verify given without %s", p, p, p)
		}
		return nil
	}
	if _, err := delegate.ParseService(d.service); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if (d.ca == "") == !d.insecure {
		return fmt.Errorf("%s %s: give the CA of its serving certificate with %s-ca (its APIService's caBundle), or %s-insecure-skip-tls-verify if its APIService has insecureSkipTLSVerify (one of the two)", p, d.service, p, p)
	}
	return nil
}

// delegateBackends makes the backends the flags name. Each is reached at its Service's ready
// endpoints with the adapter's own credentials (the backend authorizes the adapter's service
// account to read the group).
func delegateBackends(ctx context.Context, cmd *basecmd.AdapterBase, delegates map[string]*delegateFlags, ours map[string]sets.Set[string]) ([]*delegate.Backend, error) {
	var out []*delegate.Backend
	var base *rest.Config
	var kube kubernetes.Interface
	for _, group := range []string{customGroup, externalGroup} {
		d := delegates[group]
		if d.service == "" {
			continue
		}
		svc, _ := delegate.ParseService(d.service)
		if base == nil {
			var err error
			if base, err = cmd.ClientConfig(); err != nil {
				return nil, err
			}
			if kube, err = kubernetes.NewForConfig(base); err != nil {
				return nil, err
			}
		}
		// Only the backend's namespace is watched (a Role there suffices).
		f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(svc.Namespace))
		dialer := &delegate.Dialer{Service: svc, Services: f.Core().V1().Services().Lister(), Slices: f.Discovery().V1().EndpointSlices().Lister(),
			ControllerSlicesOnly: d.insecure}
		f.Start(ctx.Done())
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return nil, fmt.Errorf("%s: could not list %v in namespace %s", group, typ, svc.Namespace)
			}
		}
		cfg := rest.CopyConfig(base)
		cfg.Host = "https://" + net.JoinHostPort(svc.Host(), strconv.Itoa(int(svc.Port)))
		cfg.APIPath = ""
		cfg.TLSClientConfig.ServerName = svc.Host()
		cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.CAData = d.ca, nil
		cfg.TLSClientConfig.Insecure = d.insecure
		if d.insecure {
			cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.ServerName = "", ""
		}
		cfg.Dial = dialer.DialContext
		// No proxy: the dialer reaches the endpoint itself (client-go's nil means the environment's).
		cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
		rt, err := rest.TransportFor(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s delegate %s: %w", group, svc, err)
		}
		u, _ := url.Parse(cfg.Host)
		out = append(out, &delegate.Backend{Group: group, Ours: ours[group], URL: u, Transport: rt})
	}
	return out, nil
}

// queueBrokers loads --rabbitmq-config (none when unset).
func queueBrokers(path string) ([]*rabbitmq.Broker, error) {
	if path == "" {
		return nil, nil
	}
	cfg, err := rabbitmq.Load(path)
	if err != nil {
		return nil, err
	}
	var out []*rabbitmq.Broker
	for _, c := range cfg.Brokers {
		b, err := rabbitmq.NewBroker(c)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// agentClient pulls agents with the adapter's client certificate; the certificate, key and the
// agents' CA are re-read when renewed.
func agentClient(ctx context.Context, certFile, keyFile, caFile, serverName string) (*http.Client, error) {
	// Agents are pulled at their pod IPs; a certificate made before the pods exist (the Helm
	// chart's) names the Service instead, which serverName checks it against.
	conf, err := certs.ClientConfig(ctx, "--agent-client-cert/--agent-client-key", certFile, keyFile, "--agent-ca", caFile, serverName)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: puller.NewTransport(conf)}, nil
}
