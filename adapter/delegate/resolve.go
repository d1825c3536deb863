package delegate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// Service names a backend as an APIService does: namespace, name and the Service's port.
type Service struct {
	Namespace, Name string
	Port            int32
}

// ParseService reads namespace/name[:port] (port 443 when left out).
func ParseService(s string) (Service, error) {
	nsName, port, hasPort := strings.Cut(s, ":")
	ns, name, ok := strings.Cut(nsName, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return Service{}, fmt.Errorf("%q: write the backend's Service as namespace/name[:port], e.g. monitoring/prometheus-adapter:443", s)
	}
	out := Service{Namespace: ns, Name: name, Port: 443}
	if hasPort {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return Service{}, fmt.Errorf("%q: port %q is not a port number (1-65535)", s, port)
		}
		out.Port = int32(p)
	}
	return out, nil
}

// Host is the name the backend's serving certificate is checked against, as the aggregator
// checks it: <name>.<namespace>.svc.
func (s Service) Host() string { return s.Name + "." + s.Namespace + ".svc" }

func (s Service) String() string { return fmt.Sprintf("%s/%s:%d", s.Namespace, s.Name, s.Port) }

// Dialer reaches a Service's ready endpoints from its EndpointSlices, as the aggregator does
// with --enable-aggregator-routing: no cluster DNS or kube-proxy is needed.
type Dialer struct {
	Service  Service
	Services corelisters.ServiceLister
	Slices   discoverylisters.EndpointSliceLister
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error) // net.Dialer's when nil
	// ControllerSlicesOnly takes only EndpointSlices the control plane's EndpointSlice
	// controller wrote for the Service's selector, not ones anyone allowed to create
	// EndpointSlices in the namespace wrote: when the backend's certificate is not checked,
	// a planted slice would otherwise receive the adapter's token.
	ControllerSlicesOnly bool
}

// controllerName is the EndpointSlice controller's value of the managed-by label.
const controllerName = "endpointslice-controller.k8s.io"

// DialContext ignores addr (the Service's name) and dials one of its ready endpoints.
func (d *Dialer) DialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	addr, err := d.Resolve()
	if err != nil {
		return nil, err
	}
	dial := d.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return dial(ctx, network, addr)
}

// Resolve picks one ready endpoint (address:port) of the Service's port at random.
func (d *Dialer) Resolve() (string, error) {
	svc, err := d.Services.Services(d.Service.Namespace).Get(d.Service.Name)
	if err != nil {
		return "", fmt.Errorf("backend Service %s: %w", d.Service, err)
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if p := &svc.Spec.Ports[i]; p.Port == d.Service.Port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			port = p
			break
		}
	}
	if port == nil {
		return "", fmt.Errorf("backend Service %s has no port %d", d.Service, d.Service.Port)
	}
	slices, err := d.Slices.EndpointSlices(d.Service.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: d.Service.Name}))
	if err != nil {
		return "", err
	}
	var ready []string
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		if d.ControllerSlicesOnly && sl.Labels[discoveryv1.LabelManagedBy] != controllerName {
			continue
		}
		for _, p := range sl.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != port.Name) || (p.Name == nil && port.Name != "") ||
				(p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
				continue
			}
			for _, e := range sl.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					ready = append(ready, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	if len(ready) == 0 {
		if d.ControllerSlicesOnly {
			return "", fmt.Errorf("backend Service %s has no ready endpoint for port %d in EndpointSlices managed by %s (its certificate is not checked: slices written by others are not trusted)", d.Service, d.Service.Port, controllerName)
		}
		return "", fmt.Errorf("backend Service %s has no ready endpoint for port %d", d.Service, d.Service.Port)
	}
	return ready[rand.IntN(len(ready))], nil
}
