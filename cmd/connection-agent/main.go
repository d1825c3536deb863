// Command connection-agent counts the TCP connections of every pod of its node inside the pod's
// own network namespace (no sidecar) and serves them to connection-metrics-adapter over HTTPS
// with client certificates. It runs as a DaemonSet with hostPID and the host's /proc.
//
// Counting (--counter): "ebpf" keeps each namespace's counts from kernel events (a BPF program
// on inet_sock_set_state), so a scrape costs the same whatever the number of sockets on the node;
// sock_diag counts a namespace once when it is first seen and every --check-interval to correct
// drift. "sock_diag" dumps every pod namespace's sockets at every scrape (and also counts
// half-open handshakes, tcp_syn_backlog). "auto" (the default) uses ebpf where the kernel and
// the agent's capabilities allow it, else sock_diag, and says which in its log, in
// connection_agent_counter_info and on /healthz.
package main

import (
	"context"
	"errors"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/agent"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/bpfcount"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/netns"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/sockdiag"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/buildinfo"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/certs"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/logging"
)

func main() {
	logOpts := logging.AddGoFlags(flag.CommandLine)
	printVersion := buildinfo.AddGoFlag(flag.CommandLine, "connection-agent")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig (default: in-cluster)")
	node := flag.String("node-name", os.Getenv("NODE_NAME"), "this node's name (the DaemonSet passes spec.nodeName)")
	allNodes := flag.Bool("all-nodes", false, "count pods of every node (only for test topologies where every pod's namespace is on this host)")
	listen := flag.String("listen", ":10260", "HTTPS address of "+"/connections")
	metricsListen := flag.String("metrics-listen", "127.0.0.1:10261", "HTTP address of /metrics and /healthz")
	tlsCert := flag.String("tls-cert", "", "serving certificate (PEM)")
	tlsKey := flag.String("tls-key", "", "serving key (PEM)")
	clientCA := flag.String("client-ca", "", "CA (PEM) of the client certificates allowed to read (the adapter's)")
	clientName := flag.String("client-name", "connection-metrics-adapter", "the only client allowed to read: the common name (or a DNS name) of the adapter's client certificate")
	interval := flag.Duration("interval", 5*time.Second, "how often connections are counted")
	procRoot := flag.String("proc", "/proc", "the host's /proc")
	loopback := flag.Bool("include-loopback-peers", false, "count connections whose peer is loopback (a mesh sidecar's)")
	unsupported := flag.String("unsupported-runtime-classes", "gvisor,kata,kata-qemu,kata-clh,runsc", "RuntimeClasses whose pods' sockets are outside the node's kernel")
	podSeries := flag.Bool("pod-series", true, "expose each pod's connection counts on /metrics (connection_agent_pod_*: labels namespace, pod, port)")
	counterMode := flag.String("counter", "auto", "how connections are counted: ebpf (kernel events; needs BTF, kernel 5.11+, CAP_BPF and CAP_PERFMON), sock_diag (a dump per scrape; also counts half-open handshakes), or auto (ebpf where possible)")
	checkInterval := flag.Duration("check-interval", 5*time.Minute, "with the ebpf counter: how often sock_diag re-counts each namespace to measure and correct drift")
	setHostSysctl := flag.String("set-host-sysctl", "", "set this net.* sysctl (name=value) in the host's network namespace (PID 1's, else the kubelet's: needs hostPID and privilege), then exit: the DaemonSet's init container")
	flag.Parse()
	printVersion.ExitIfSet()
	if err := logOpts.Apply(); err != nil {
		fmt.Fprintln(os.Stderr, "connection-agent:", err)
		os.Exit(2)
	}

	if *setHostSysctl != "" {
		name, value, ok := strings.Cut(*setHostSysctl, "=")
		if !ok {
			klog.ErrorS(nil, "--set-host-sysctl takes name=value, e.g. net.ipv4.tcp_child_ehash_entries=65536", "got", *setHostSysctl)
			os.Exit(2)
		}
		host, err := netns.HostPath("/proc")
		if err != nil {
			klog.ErrorS(err, "finding the host's network namespace")
			os.Exit(1)
		}
		previous, err := netns.SetSysctl(host, name, value)
		if err != nil {
			klog.ErrorS(err, "setting the host's sysctl (the init container needs hostPID and privileged: true)")
			os.Exit(1)
		}
		klog.InfoS("host sysctl set", "name", name, "value", value, "previous", previous, "namespace", host)
		return
	}

	if err := run(*kubeconfig, *node, *allNodes, *listen, *metricsListen, *tlsCert, *tlsKey, *clientCA, *clientName, *interval, *procRoot, *loopback, *unsupported, *podSeries,
		*counterMode, *checkInterval); err != nil {
		klog.ErrorS(err, "connection-agent stopped")
		os.Exit(1)
	}
}

func run(kubeconfig, node string, allNodes bool, listen, metricsListen, tlsCert, tlsKey, clientCA, clientName string,
	interval time.Duration, procRoot string, loopback bool, unsupported string, podSeries bool, counterMode string, checkInterval time.Duration) error {
	if counterMode != "auto" && counterMode != "ebpf" && counterMode != "sock_diag" {
		return fmt.Errorf("--counter %q: use auto, ebpf or sock_diag", counterMode)
	}
	if node == "" && !allNodes {
		return errors.New("--node-name (or NODE_NAME) is required: the agent counts the pods of its node")
	}
	if tlsCert == "" || tlsKey == "" || clientCA == "" || clientName == "" {
		return errors.New("--tls-cert, --tls-key, --client-ca and --client-name are required: only the adapter may read pods' connections")
	}
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	opts := []informers.SharedInformerOption{}
	if !allNodes {
		opts = append(opts, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	}
	factory := informers.NewSharedInformerFactoryWithOptions(kubernetes.NewForConfigOrDie(cfg), 0, opts...)
	pods := factory.Core().V1().Pods().Lister()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("openstack_autoscaler"))
	classes := map[string]bool{}
	for _, c := range strings.Split(unsupported, ",") {
		if c = strings.TrimSpace(c); c != "" {
			classes[c] = true
		}
	}
	scraper := &agent.Scraper{Node: node, Pods: pods, ProcRoot: procRoot, RescanEvery: 30 * time.Second,
		Counter: sockdiag.NewCounter(sockdiag.Options{IncludeLoopbackPeers: loopback}), UnsupportedRuntimeClasses: classes,
		Metrics: agent.NewMetrics(reg)}
	if podSeries {
		reg.MustRegister(agent.NewPodCollector(scraper))
	}
	mode, why := "sock_diag", "--counter=sock_diag"
	if counterMode != "sock_diag" {
		prog, err := bpfcount.Load(bpfcount.Options{IncludeLoopbackPeers: loopback})
		switch {
		case err == nil:
			defer prog.Close()
			scraper.Events, scraper.CheckEvery = prog, checkInterval
			mode, why = "ebpf", ""
		case counterMode == "ebpf":
			return fmt.Errorf("--counter=ebpf: %w (use --counter=auto to fall back to sock_diag)", err)
		default:
			why = "eBPF unavailable: " + err.Error()
		}
	}
	klog.InfoS("counting connections with "+mode, "counter", mode, "reason", why)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "connection_agent_counter_info",
		Help: "How the agent counts connections (mode ebpf or sock_diag; reason why not ebpf)."}, []string{"mode", "reason"})
	info.WithLabelValues(mode, why).Set(1)
	reg.MustRegister(info)

	// The certificate, key and client CA are re-read when cert-manager (or the chart) renews them.
	tlsConfig, err := certs.ServerConfig(ctx, "--tls-cert/--tls-key", tlsCert, tlsKey, "--client-ca", clientCA)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: listen, Handler: agent.RequireClient(clientName, scraper.Handler()), TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if latest, ok := scraper.Latest(); !ok || time.Since(latest.Time) > 3*interval+10*time.Second {
			http.Error(w, "no recent scrape", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintf(w, "ok\ncounter: %s\n", strings.TrimSpace(mode+" "+why))
	})
	metricsSrv := &http.Server{Addr: metricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 2)
	go func() { errs <- fmt.Errorf("--listen: %w", srv.ListenAndServeTLS("", "")) }()
	go func() { errs <- fmt.Errorf("--metrics-listen: %w", metricsSrv.ListenAndServe()) }()
	klog.InfoS("counting connections", "node", node, "allNodes", allNodes, "interval", interval, "listen", listen)

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		scraper.Scrape()
		select {
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
			_ = metricsSrv.Shutdown(shutdown)
			return nil
		case err := <-errs:
			return err
		case <-ticker.C:
		}
	}
}
