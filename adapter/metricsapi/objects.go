package metricsapi

import (
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// podsOf returns the pods behind an object: a Service's ready endpoints, or the pods a
// Deployment's or StatefulSet's selector matches.
func (p *Provider) podsOf(name types.NamespacedName, gr schema.GroupResource) (kind, apiVersion string, pods []*corev1.Pod, err error) {
	notServed := func() error {
		return statusError(http.StatusNotFound, metav1.StatusReasonNotFound, "%s are not served by this adapter (no lister)", gr.String())
	}
	var selector *metav1.LabelSelector
	switch gr {
	case servicesResource:
		if p.Slices == nil {
			return "", "", nil, notServed()
		}
		slices, err := p.Slices.EndpointSlices(name.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name.Name}))
		if err != nil {
			return "", "", nil, err
		}
		seen := map[string]bool{} // a dual-stack Service lists each pod in one slice per family
		for _, s := range slices {
			for _, e := range s.Endpoints {
				if e.TargetRef == nil || e.TargetRef.Kind != "Pod" || (e.Conditions.Ready != nil && !*e.Conditions.Ready) || seen[e.TargetRef.Name] {
					continue
				}
				seen[e.TargetRef.Name] = true
				if pod, err := p.Pods.Pods(name.Namespace).Get(e.TargetRef.Name); err == nil {
					pods = append(pods, pod)
				}
			}
		}
		return "Service", "v1", pods, nil
	case deploymentsResource:
		if p.Deployments == nil {
			return "", "", nil, notServed()
		}
		d, err := p.Deployments.Deployments(name.Namespace).Get(name.Name)
		if err != nil {
			return "", "", nil, provider.NewMetricNotFoundForError(gr, "", name.Name)
		}
		kind, apiVersion, selector = "Deployment", "apps/v1", d.Spec.Selector
	case statefulSetsResource:
		if p.StatefulSets == nil {
			return "", "", nil, notServed()
		}
		s, err := p.StatefulSets.StatefulSets(name.Namespace).Get(name.Name)
		if err != nil {
			return "", "", nil, provider.NewMetricNotFoundForError(gr, "", name.Name)
		}
		kind, apiVersion, selector = "StatefulSet", "apps/v1", s.Spec.Selector
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return "", "", nil, err
	}
	pods, err = p.Pods.Pods(name.Namespace).List(sel)
	return kind, apiVersion, pods, err
}

// objectValue sums the object's pods' values (for a Service: the connections it serves in total;
// an HPA's AverageValue target divides it by the replicas). A sum over some of the pods would
// understate the load and scale down: when a running pod has no fresh value, there is no sum
// (as the queue metrics refuse partial answers) and the HPA holds. A running pod not listening
// on the port asked for (yet: a rollout or scale-up of a slow-starting app) holds 0 connections
// on it and adds 0; only a port no pod of the object listens on is an error (a typo).
func (p *Provider) objectValue(name types.NamespacedName, info provider.CustomMetricInfo, port uint16, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	kind, apiVersion, pods, err := p.podsOf(name, info.GroupResource)
	if err != nil {
		return nil, err
	}
	var sum *custom_metrics.MetricValue
	var missing []string
	l := listeners{port: port}
	for _, pod := range pods {
		if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil || pod.Spec.HostNetwork {
			continue // holds no connections of its own: not measured
		}
		mv, ports, why := p.value(pod, info, port, metricSelector)
		if mv == nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", pod.Name, why))
			continue
		}
		l.add(ports)
		if sum == nil {
			sum = mv
			sum.DescribedObject = custom_metrics.ObjectReference{Kind: kind, APIVersion: apiVersion, Namespace: name.Namespace, Name: name.Name}
			continue
		}
		sum.Value.Add(mv.Value)
		if mv.Timestamp.After(sum.Timestamp.Time) {
			sum.Timestamp = mv.Timestamp
		}
		if *mv.WindowSeconds > *sum.WindowSeconds {
			sum.WindowSeconds = mv.WindowSeconds
		}
	}
	if len(missing) > 0 {
		return nil, statusError(http.StatusNotFound, metav1.StatusReasonNotFound,
			"no complete %s for %s %s/%s: running pod(s) have no fresh value: %s; a sum over the others would understate it",
			info.Metric, kind, name.Namespace, name.Name, strings.Join(missing, "; "))
	}
	if sum == nil {
		return nil, statusError(http.StatusNotFound, metav1.StatusReasonNotFound,
			"no fresh %s for %s %s/%s: it has no running pod with a value", info.Metric, kind, name.Namespace, name.Name)
	}
	if err := l.err(); err != nil {
		return nil, notListening(err, info, fmt.Sprintf("%s %s/%s", kind, name.Namespace, name.Name))
	}
	return sum, nil
}

// objectsMatching lists the names of the objects of a kind matching selector.
func (p *Provider) objectsMatching(namespace string, gr schema.GroupResource, selector labels.Selector) ([]string, error) {
	var names []string
	switch gr {
	case deploymentsResource:
		if p.Deployments != nil {
			list, err := p.Deployments.Deployments(namespace).List(selector)
			if err != nil {
				return nil, err
			}
			for _, d := range list {
				names = append(names, d.Name)
			}
		}
	case statefulSetsResource:
		if p.StatefulSets != nil {
			list, err := p.StatefulSets.StatefulSets(namespace).List(selector)
			if err != nil {
				return nil, err
			}
			for _, s := range list {
				names = append(names, s.Name)
			}
		}
	case servicesResource:
		if p.Slices != nil {
			seen := map[string]bool{}
			slices, err := p.Slices.EndpointSlices(namespace).List(labels.Everything())
			if err != nil {
				return nil, err
			}
			for _, s := range slices {
				if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" && !seen[svc] && selector.Matches(labels.Set(s.Labels)) {
					seen[svc] = true
					names = append(names, svc)
				}
			}
		}
	}
	return names, nil
}
