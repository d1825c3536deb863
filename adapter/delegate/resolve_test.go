package delegate

import (
	"context"
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

func TestParseService(t *testing.T) {
	for in, want := range map[string]Service{
		"monitoring/prometheus-adapter":      {"monitoring", "prometheus-adapter", 443},
		"keda/keda-operator-metrics:6443":    {"keda", "keda-operator-metrics", 6443},
		"monitoring/prometheus-adapter:443/": {},
	} {
		got, err := ParseService(in)
		if want.Name == "" {
			if err == nil {
				t.Errorf("%q: no error", in)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"prometheus-adapter", "/x", "a/", "a/b:0", "a/b:http", "a/b:70000"} {
		_, err := ParseService(in)
		if err == nil || !strings.Contains(err.Error(), "namespace/name") && !strings.Contains(err.Error(), "port") {
			t.Errorf("%q: %v, want an error saying how to write it", in, err)
		}
	}
	if h := (Service{"monitoring", "prometheus-adapter", 443}).Host(); h != "prometheus-adapter.monitoring.svc" {
		t.Errorf("Host %q", h)
	}
}

func dialer(t *testing.T, slices ...*discoveryv1.EndpointSlice) *Dialer {
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	sl := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = svcs.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: "prometheus-adapter"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt(9090)},
			{Name: "https", Port: 443, TargetPort: intstr.FromInt(6443)},
			{Name: "quic", Port: 443, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(8443)}}}})
	for _, s := range slices {
		_ = sl.Add(s)
	}
	return &Dialer{Service: Service{"monitoring", "prometheus-adapter", 443}, Services: corelisters.NewServiceLister(svcs),
		Slices: discoverylisters.NewEndpointSliceLister(sl)}
}

func slice(name, service string, ready *bool, addr string, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service,
			discoveryv1.LabelManagedBy: controllerName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}},
		Ports:       ports,
	}
}

func TestDialerPicksAReadyEndpointOfTheServicesPort(t *testing.T) {
	https := discoveryv1.EndpointPort{Name: ptr.To("https"), Port: ptr.To(int32(6443))}
	metrics := discoveryv1.EndpointPort{Name: ptr.To("metrics"), Port: ptr.To(int32(9090))}
	d := dialer(t,
		slice("a", "prometheus-adapter", ptr.To(false), "198.51.100.21", https),
		slice("b", "prometheus-adapter", ptr.To(true), "198.51.100.22", metrics, https),
		slice("c", "other", ptr.To(true), "198.51.100.23", https))
	for range 20 {
		addr, err := d.Resolve()
		if err != nil || addr != "198.51.100.22:6443" {
			t.Fatalf("Resolve = %q, %v; want the one ready endpoint's https port", addr, err)
		}
	}
	var dialed string
	d.Dial = func(_ context.Context, _, addr string) (net.Conn, error) { dialed = addr; return nil, nil }
	_, _ = d.DialContext(context.Background(), "tcp", "prometheus-adapter.monitoring.svc:443")
	if dialed != "198.51.100.22:6443" {
		t.Fatalf("dialed %q", dialed)
	}
}

func TestDialerSaysWhatIsMissing(t *testing.T) {
	d := dialer(t, slice("a", "prometheus-adapter", ptr.To(false), "198.51.100.21", discoveryv1.EndpointPort{Name: ptr.To("https"), Port: ptr.To(int32(6443))}))
	if _, err := d.Resolve(); err == nil || !strings.Contains(err.Error(), "no ready endpoint for port 443") {
		t.Errorf("all unready: %v", err)
	}
	d.Service.Port = 8443
	if _, err := d.Resolve(); err == nil || !strings.Contains(err.Error(), "has no port 8443") {
		t.Errorf("wrong port: %v", err)
	}
	d.Service.Name = "gone"
	if _, err := d.Resolve(); err == nil || !strings.Contains(err.Error(), "monitoring/gone:8443") {
		t.Errorf("no Service: %v", err)
	}
}

// With the backend's certificate unchecked, only the EndpointSlice controller's slices are
// trusted: a slice planted by someone who may write EndpointSlices in the namespace is not
// dialed (it would receive the adapter's token).
func TestDialerWithoutCertificateCheckTrustsOnlyTheControllersSlices(t *testing.T) {
	https := discoveryv1.EndpointPort{Name: ptr.To("https"), Port: ptr.To(int32(6443))}
	planted := slice("planted", "prometheus-adapter", ptr.To(true), "198.51.100.66", https)
	planted.Labels[discoveryv1.LabelManagedBy] = "someone"
	d := dialer(t, planted)
	if addr, err := d.Resolve(); err != nil || addr != "198.51.100.66:6443" {
		t.Fatalf("with the certificate checked, any slice: %q, %v", addr, err)
	}
	d.ControllerSlicesOnly = true
	if addr, err := d.Resolve(); err == nil || !strings.Contains(err.Error(), "managed by endpointslice-controller.k8s.io") {
		t.Fatalf("planted slice dialed without a certificate check: %q, %v", addr, err)
	}
}
