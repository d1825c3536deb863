package sandbox

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// PortsAnnotation asks for a sandbox: the pod's listening ports, comma separated ("8080,9090").
const PortsAnnotation = "e2e.openstack-autoscaler.io/sandbox-ports"

// Controller gives every running pod that carries PortsAnnotation a sandbox, and removes the
// sandbox when the pod goes away or changes IP.
type Controller struct {
	Kube     kubernetes.Interface
	Manager  *Manager
	Interval time.Duration

	sandboxes map[string]*Sandbox // by pod UID
}

// Run syncs until ctx ends, then destroys every sandbox it made.
func (c *Controller) Run(ctx context.Context) error {
	c.sandboxes = map[string]*Sandbox{}
	factory := informers.NewSharedInformerFactory(c.Kube, 0)
	pods := factory.Core().V1().Pods().Lister()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	defer func() {
		for uid, sb := range c.sandboxes {
			c.Manager.Destroy(sb)
			delete(c.sandboxes, uid)
		}
	}()
	// Namespaces of a run that ended without cleaning up belong to no live sandbox.
	_ = c.Manager.CleanupStale()
	ticker := time.NewTicker(c.Interval)
	defer ticker.Stop()
	for {
		all, err := pods.List(labels.Everything())
		if err != nil {
			return err
		}
		wanted := map[string]Spec{}
		for _, p := range all {
			if spec, ok := specFor(p); ok {
				wanted[spec.PodUID] = spec
			}
		}
		c.sync(wanted)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (c *Controller) sync(wanted map[string]Spec) {
	for uid, sb := range c.sandboxes {
		if spec, ok := wanted[uid]; ok && spec.PodIP == sb.PodIP {
			continue
		}
		c.Manager.Destroy(sb)
		delete(c.sandboxes, uid)
		klog.InfoS("sandbox removed", "podUID", uid, "ip", sb.PodIP)
	}
	for uid, spec := range wanted {
		if _, ok := c.sandboxes[uid]; ok {
			continue
		}
		sb, err := c.Manager.Create(spec)
		if err != nil {
			klog.ErrorS(err, "creating sandbox", "podUID", uid)
			continue
		}
		c.sandboxes[uid] = sb
		klog.InfoS("sandbox ready", "podUID", uid, "ip", spec.PodIP, "ports", spec.Ports, "netns", sb.Netns, "pids", sb.PIDs())
	}
}

func specFor(p *corev1.Pod) (Spec, bool) {
	raw, ok := p.Annotations[PortsAnnotation]
	if !ok || p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Spec.HostNetwork ||
		p.Status.Phase != corev1.PodRunning {
		return Spec{}, false
	}
	ports, err := ParsePorts(raw)
	if err != nil {
		klog.ErrorS(err, "pod annotation", "pod", p.Namespace+"/"+p.Name)
		return Spec{}, false
	}
	return Spec{PodUID: string(p.UID), PodIP: p.Status.PodIP, Ports: ports, QOSClass: string(p.Status.QOSClass)}, true
}

// ParsePorts parses "8080,9090".
func ParsePorts(raw string) ([]int, error) {
	var ports []int
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s %q: %q is not a port (want comma-separated numbers 1-65535)", PortsAnnotation, raw, f)
		}
		ports = append(ports, p)
	}
	return ports, nil
}
