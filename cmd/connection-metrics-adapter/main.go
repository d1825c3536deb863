// Command connection-metrics-adapter serves custom.metrics.k8s.io (v1beta2 and v1beta1) with the
// pods' TCP connections that connection-agents count: tcp_connections (averaged over a sliding
// window), tcp_connections_max, tcp_new_connections_per_second, tcp_syn_backlog and
// tcp_outbound_connections. It is an aggregated API server (delegated authentication and
// authorization) built on sigs.k8s.io/custom-metrics-apiserver. With --rabbitmq-config it also
// serves external.metrics.k8s.io (v1beta1) with the configured RabbitMQ queues' depth,
// unacknowledged count and publish/deliver rates.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/externalapi"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/metricsapi"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/puller"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/store"
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
	)
	fs := cmd.Flags()
	fs.StringArrayVar(&agents, "agent", nil, "an agent's base URL (https://host:port); repeat for more")
	fs.StringVar(&agentService, "agent-service", "", "namespace/name of the agents' Service: agents are found in its EndpointSlices")
	fs.StringVar(&agentPort, "agent-port-name", "https", "name of the agents' port in the EndpointSlices")
	fs.StringVar(&clientCert, "agent-client-cert", "", "client certificate (PEM) the agents accept")
	fs.StringVar(&clientKey, "agent-client-key", "", "its key (PEM)")
	fs.StringVar(&agentCA, "agent-ca", "", "CA (PEM) of the agents' serving certificates")
	fs.StringVar(&agentServerName, "agent-server-name", "", "name the agents' serving certificates are checked against (e.g. connection-agent.<namespace>.svc); empty: the address pulled (pod IP), and a renewed --agent-ca is then read only at start")
	fs.DurationVar(&interval, "pull-interval", 5*time.Second, "how often every agent is pulled")
	fs.DurationVar(&timeout, "pull-timeout", 3*time.Second, "timeout of one pull")
	fs.DurationVar(&window, "window", 30*time.Second, "sliding window tcp_connections is averaged over")
	fs.DurationVar(&ttl, "ttl", 30*time.Second, "a pod's values are withdrawn when its newest sample is older than this")
	fs.StringVar(&metricsListen, "metrics-listen", "127.0.0.1:10262", "HTTP address of the adapter's own /metrics")
	fs.StringVar(&rabbitmqConfig, "rabbitmq-config", "", "YAML file of RabbitMQ brokers and queues to serve as external metrics (absent: no external metrics)")
	logOpts := logging.AddFlags(fs)
	fs.AddGoFlagSet(flag.CommandLine)
	if err := fs.Parse(os.Args); err != nil {
		klog.ErrorS(err, "flags")
		os.Exit(2)
	}
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
	if err := run(cmd, agents, agentService, agentPort, clientCert, clientKey, agentCA, agentServerName, interval, timeout, window, ttl, metricsListen, brokers); err != nil {
		klog.ErrorS(err, "connection-metrics-adapter stopped")
		os.Exit(1)
	}
}

func run(cmd *basecmd.AdapterBase, agents []string, agentService, agentPort, clientCert, clientKey, agentCA, agentServerName string,
	interval, timeout, window, ttl time.Duration, metricsListen string, brokers []*rabbitmq.Broker) error {
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
	pl := &puller.Puller{Client: httpClient, Store: st, Interval: interval, Timeout: timeout, Static: agents,
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
	cmd.WithCustomMetrics(&metricsapi.Provider{Store: st, Pods: pods, Now: time.Now,
		Slices:       factory.Discovery().V1().EndpointSlices().Lister(),
		Deployments:  factory.Apps().V1().Deployments().Lister(),
		StatefulSets: factory.Apps().V1().StatefulSets().Lister()})

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
	klog.InfoS("serving custom.metrics.k8s.io", "agents", len(agents), "agentService", agentService, "window", window, "ttl", ttl,
		"rabbitmqBrokers", len(brokers))
	return cmd.Run(ctx)
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
