// Command openstack-provider is cluster-autoscaler's cloud provider for OpenStack, served over
// the externalgrpc contract: run a stock cluster-autoscaler with --cloud-provider=externalgrpc and
// a cloud-config naming this server's address.
//
//	openstack-provider --config provider.yaml --listen 127.0.0.1:8086 [--tls-cert … --tls-key … --tls-client-ca …]
//	openstack-provider validate --config provider.yaml
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/grpcserver"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/leader"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/provider"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/repair"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/buildinfo"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/certs"
	"github.com/openstack-autoscaler/openstack-autoscaler/cmd/internal/logging"
)

func main() {
	validate := len(os.Args) > 1 && os.Args[1] == "validate"
	args := os.Args[1:]
	if validate {
		args = os.Args[2:]
	}
	fs := flag.NewFlagSet("openstack-provider", flag.ExitOnError)
	logOpts := logging.AddGoFlags(fs)
	printVersion := buildinfo.AddGoFlag(fs, "openstack-provider")
	configPath := fs.String("config", "", "provider configuration file (YAML)")
	listen := fs.String("listen", "127.0.0.1:8086", "gRPC address cluster-autoscaler connects to")
	httpAddr := fs.String("http-listen", "127.0.0.1:8087", "address of /healthz, /readyz and /metrics")
	tlsCert := fs.String("tls-cert", "", "server certificate (PEM) for gRPC; with --tls-key")
	tlsKey := fs.String("tls-key", "", "server key (PEM)")
	clientCA := fs.String("tls-client-ca", "", "CA (PEM) client certificates must be signed by: mutual TLS (required with TLS: whoever can call this server can create and delete servers)")
	anyClient := fs.Bool("tls-allow-any-client", false, "serve TLS without checking client certificates (not recommended: anyone who reaches the port can create and delete servers)")
	allowPlaintext := fs.Bool(allowPlaintextFlag, false, "serve gRPC without TLS on a --listen address other than loopback (127.0.0.0/8, ::1, localhost); refused without this flag, as anyone who reaches the port could create and delete servers")
	var rl rateFlags
	fs.Float64Var(&rl.limit, "openstack-rate-limit", 50, "most OpenStack API requests per second this process makes (authentication included), shared by all calls; 0: no limit")
	fs.IntVar(&rl.burst, "openstack-burst", 100, "requests that may go at once above --openstack-rate-limit before it applies (at least 1)")
	var rf repairFlags
	fs.StringVar(&rf.kubeconfig, "kubeconfig", "", "kubeconfig for node repair (repair.enabled in the config); empty: the in-cluster service account")
	fs.StringVar(&rf.namespace, "leader-elect-namespace", envOr("POD_NAMESPACE", "kube-system"), "namespace of the Lease that elects the replica running node repair")
	fs.StringVar(&rf.lease, "leader-elect-lease", "openstack-provider-repair", "name of that Lease")
	fs.StringVar(&rf.autoscalerLease, "autoscaler-lease", "", "namespace/name of cluster-autoscaler's Lease: while the autoscaler of this pod (--identity) does not hold it, this provider is a standby that writes nothing to OpenStack on its own (no resumed deletions or replacements, no stack updates, no repair); empty: a single replica, always writing")
	fs.StringVar(&rf.identity, "identity", "", "this pod's name, as cluster-autoscaler writes it in its Lease (default: the hostname)")
	fs.StringVar(&rf.autoscalerLease, "repair-with-autoscaler-lease", "", "deprecated: --autoscaler-lease")
	fs.StringVar(&rf.identity, "repair-identity", "", "deprecated: --identity")
	_ = fs.Parse(args)
	printVersion.ExitIfSet()
	if err := logOpts.Apply(); err != nil {
		fmt.Fprintln(os.Stderr, "openstack-provider:", err)
		os.Exit(2)
	}

	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "--config is required: the provider configuration file (see README, \"Configure node groups\")")
		os.Exit(2)
	}
	if err := rl.check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if validate {
		os.Exit(runValidate(*configPath, rl))
	}
	tf := tlsFlags{cert: *tlsCert, key: *tlsKey, clientCA: *clientCA, anyClient: *anyClient}
	if err := checkPlaintextGRPC(*listen, tf, *allowPlaintext); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := run(*configPath, *listen, *httpAddr, tf, rf, rl); err != nil {
		klog.ErrorS(err, "openstack-provider stopped")
		os.Exit(1)
	}
}

// runValidate checks the file and the cloud: credentials, flavors and images.
func runValidate(path string, rl rateFlags) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clients, err := openstack.Connect(ctx, rl.cloudRef(cfg), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := provider.New(ctx, cfg, clients, provider.NewMetrics(prometheus.NewRegistry())); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Printf("warning: %s\n", w)
	}
	cloud := cfg.Cloud.Name
	if cfg.Cloud.CloudConfFile != "" {
		cloud = cfg.Cloud.CloudConfFile
	}
	fmt.Printf("%s: valid; cloud %q (region %s) reached; %d node group(s) checked\n", path, cloud, clients.Region, len(cfg.NodeGroups))
	return 0
}

type repairFlags struct{ kubeconfig, namespace, lease, autoscalerLease, identity string }

func kubeClient(kubeconfig, userAgent string) (kubernetes.Interface, error) {
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %q: %w", kubeconfig, err)
	}
	restConfig.UserAgent = userAgent
	return kubernetes.NewForConfig(restConfig)
}

// startLeaderGate follows cluster-autoscaler's Lease when --autoscaler-lease names it (nil
// otherwise: a single replica always writes).
func startLeaderGate(ctx context.Context, rf repairFlags) (*leader.Lease, error) {
	if rf.autoscalerLease == "" {
		return nil, nil
	}
	ns, name, ok := strings.Cut(rf.autoscalerLease, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("--autoscaler-lease %q: write it as namespace/name", rf.autoscalerLease)
	}
	kube, err := kubeClient(rf.kubeconfig, "openstack-provider/leader")
	if err != nil {
		return nil, fmt.Errorf("--autoscaler-lease needs the Kubernetes API: %w", err)
	}
	host, _ := os.Hostname()
	gate := leader.NewLease(ns, name, cmp.Or(rf.identity, host))
	gate.Start(ctx, kube)
	return gate, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// startRepair runs node repair in the background while this replica holds the Lease; the
// returned channel closes once it has stopped (and released the Lease) after ctx ends.
func startRepair(ctx context.Context, cfg *config.Config, p *provider.Provider, reg prometheus.Registerer, rf repairFlags, gate *leader.Lease) (<-chan struct{}, error) {
	done := make(chan struct{})
	if !cfg.Repair.Enabled {
		close(done)
		return done, nil
	}
	kube, err := kubeClient(rf.kubeconfig, "openstack-provider/repair")
	if err != nil {
		return nil, fmt.Errorf("node repair needs the Kubernetes API (repair.enabled is true): %w", err)
	}
	host, _ := os.Hostname()
	loop := &repair.Loop{Cloud: p, PolicyFor: p.RepairPolicy, Stale: p.RepairStale, Interval: cfg.Repair.Interval.Duration,
		MaxClusterUnhealthy: float64(cfg.Repair.MaxClusterUnhealthyPercent) / 100, MaxZoneUnhealthy: float64(cfg.Repair.MaxZoneUnhealthyPercent) / 100,
		DrainTimeout: cfg.Repair.DrainTimeout.Duration, DryRun: cfg.Repair.DryRun, Metrics: repair.NewMetrics(reg)}
	if gate != nil {
		// The autoscaler's Lease elects the pod that repairs: see repair.RunWithAutoscaler.
		loop.Gate = func(context.Context) (bool, string) { return gate.Leads() }
		go func() {
			defer close(done)
			repair.RunWithAutoscaler(ctx, kube, loop)
		}()
		return done, nil
	}
	election := repair.Election{Namespace: rf.namespace, Name: rf.lease, Identity: fmt.Sprintf("%s_%d", host, os.Getpid())}
	go func() {
		defer close(done)
		repair.RunElected(ctx, kube, election, loop)
	}()
	return done, nil
}

func run(configPath, listen, httpAddr string, tf tlsFlags, rf repairFlags, rl rateFlags) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("openstack_autoscaler"))
	osMetrics := openstack.NewMetrics(reg)
	clients, err := openstack.Connect(ctx, rl.cloudRef(cfg), osMetrics.Transport)
	if err != nil {
		return err
	}
	p, err := provider.New(ctx, cfg, clients, provider.NewMetrics(reg))
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		klog.InfoS("configuration warning: " + w)
	}
	gate, err := startLeaderGate(ctx, rf)
	if err != nil {
		return err
	}
	if gate != nil {
		p.SetLeader(gate)
		gate.OnGain(func() { p.Manager.RequireFresherThan(time.Now()) })
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "openstack_autoscaler_provider_leader",
			Help: "1 while the autoscaler of this pod holds its Lease and this provider writes to OpenStack on its own; 0 while it is a standby"},
			func() float64 {
				if ok, _ := gate.Leads(); ok {
					return 1
				}
				return 0
			}))
	}
	if err := p.Manager.Start(ctx); err != nil {
		return err
	}
	repairDone, err := startRepair(ctx, cfg, p, reg, rf, gate)
	if err != nil {
		return err
	}

	var opts []grpc.ServerOption
	if tf.set() {
		creds, err := serverTLS(ctx, tf)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(creds))
	} else {
		klog.InfoS("gRPC without TLS: anyone who can reach " + listen + " can create and delete servers; use --tls-cert, --tls-key and --tls-client-ca outside tests")
	}
	srv := grpcserver.NewGRPC(&grpcserver.Server{Provider: p}, reg, opts...)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthSrv)
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", listen, err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Ready while the state is fresh: a few intervals without a successful refresh means
		// OpenStack is unreachable and answers would be stale.
		if age := time.Since(p.Manager.LastRefresh()); age > 3*cfg.RefreshInterval.Duration+30*time.Second {
			http.Error(w, fmt.Sprintf("no successful refresh from OpenStack for %s", age.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	httpSrv := &http.Server{Addr: httpAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errs := make(chan error, 2)
	go func() { errs <- srv.Serve(lis) }()
	go func() {
		if err := httpSrv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("--http-listen %s: %w", httpAddr, err)
		}
	}()
	klog.InfoS("serving", "grpc", listen, "http", httpAddr, "cluster", cfg.ClusterName, "groups", len(p.Manager.Groups()))
	select {
	case <-ctx.Done():
		klog.InfoS("shutting down: finishing calls in flight")
	case err := <-errs:
		return err
	}
	healthSrv.Shutdown()
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		srv.Stop()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = httpSrv.Shutdown(shutdownCtx)
	select {
	case <-repairDone:
	case <-time.After(10 * time.Second):
		klog.InfoS("node repair did not stop within 10s; leaving its steps to the next leader")
	}
	return nil
}

type tlsFlags struct {
	cert, key, clientCA string
	anyClient           bool
}

func (f tlsFlags) set() bool { return f.cert != "" || f.key != "" || f.clientCA != "" || f.anyClient }

// serverTLS is the gRPC server's TLS: mutual unless --tls-allow-any-client says otherwise, with
// the certificate, key and client CA re-read when their files are renewed.
func serverTLS(ctx context.Context, f tlsFlags) (credentials.TransportCredentials, error) {
	if f.cert == "" || f.key == "" {
		return nil, errors.New("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
	}
	if f.clientCA == "" && !f.anyClient {
		return nil, errors.New("--tls-client-ca is missing: without it any client that reaches the port can create and delete servers; " +
			"name the CA of the autoscaler's client certificate, or pass --tls-allow-any-client to accept that risk")
	}
	if f.clientCA != "" && f.anyClient {
		return nil, errors.New("--tls-client-ca and --tls-allow-any-client contradict each other: drop one")
	}
	conf, err := certs.ServerConfig(ctx, "--tls-cert/--tls-key", f.cert, f.key, "--tls-client-ca", f.clientCA)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(conf), nil
}

const allowPlaintextFlag = "allow-plaintext-grpc-on-non-loopback"

// checkPlaintextGRPC refuses gRPC without TLS on an address other than loopback unless
// --allow-plaintext-grpc-on-non-loopback says so: the CloudProvider service creates and deletes
// servers for whoever calls it, and a forgotten TLS flag must not open that to the network.
func checkPlaintextGRPC(listen string, tf tlsFlags, allow bool) error {
	if tf.set() || allow || isLoopback(listen) {
		return nil
	}
	return fmt.Errorf("--listen %s would serve gRPC without TLS beyond loopback, where anyone who reaches the port can create and delete servers: "+
		"give --tls-cert, --tls-key and --tls-client-ca (mutual TLS), or listen on 127.0.0.1 (cluster-autoscaler in the same pod), "+
		"or pass --%s to accept that risk", listen, allowPlaintextFlag)
}

// isLoopback says whether a host:port only accepts connections from this host. A name other
// than localhost is not, whatever it resolves to today.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

type rateFlags struct {
	limit float64
	burst int
}

func (f rateFlags) check() error {
	if f.limit < 0 {
		return fmt.Errorf("--openstack-rate-limit %g: give requests per second, or 0 for no limit", f.limit)
	}
	if f.limit > 0 && f.burst < 1 {
		return fmt.Errorf("--openstack-burst %d: at least 1 request must be able to go (or --openstack-rate-limit 0 for no limit)", f.burst)
	}
	return nil
}

func (f rateFlags) cloudRef(cfg *config.Config) openstack.CloudRef {
	return openstack.CloudRef{CloudsFile: cfg.Cloud.CloudsFile, Cloud: cfg.Cloud.Name, CloudConfFile: cfg.Cloud.CloudConfFile, Region: cfg.Cloud.Region,
		RateLimit: f.limit, Burst: f.burst}
}
