//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/autoscaler"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/framework"
)

// examples/spare-capacity.yaml in the world: on a node of a Nova node group, its placeholder pods
// fill the room; a real pod of default priority preempts one at once (the real kube-scheduler);
// the recreated placeholder stays Pending without preempting anything, and that makes the
// autoscaler grow the group through openstack-provider: the headroom is back on a new node.
func TestSpareCapacityPlaceholdersArePreempted(t *testing.T) {
	w := framework.Connect(t)
	ctx := context.Background()
	const ns, group = "capacity-e2e", "spare-e2e"

	// The example, as shipped; only its names, namespace and node group are the test's own.
	raw, err := os.ReadFile("../examples/spare-capacity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pc *schedulingv1.PriorityClass
	var dep *appsv1.Deployment
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *schedulingv1.PriorityClass:
			pc = o
		case *appsv1.Deployment:
			dep = o
		}
	}
	if pc == nil || dep == nil {
		t.Fatal("examples/spare-capacity.yaml: want a PriorityClass and a Deployment")
	}
	if pc.Value >= 0 || pc.Value < -10 || pc.PreemptionPolicy == nil || *pc.PreemptionPolicy != corev1.PreemptNever || pc.GlobalDefault {
		t.Errorf("PriorityClass: value %d, preemptionPolicy %v, globalDefault %v; want -10 <= value < 0, Never, false", pc.Value, pc.PreemptionPolicy, pc.GlobalDefault)
	}
	podSpec := &dep.Spec.Template.Spec
	if podSpec.PriorityClassName != pc.Name || podSpec.NodeSelector[membership.NodeGroupLabel] == "" {
		t.Errorf("Deployment: priorityClassName %q, nodeSelector %v; want %q and %s", podSpec.PriorityClassName, podSpec.NodeSelector, pc.Name, membership.NodeGroupLabel)
	}
	pc.Name += "-e2e"
	podSpec.PriorityClassName = pc.Name
	podSpec.NodeSelector[membership.NodeGroupLabel] = group
	dep.Namespace = ns
	placeholders := *dep.Spec.Replicas
	requested := podSpec.Containers[0].Resources.Requests.Cpu()

	// A node of the group: a Nova server with the group's metadata, registered by the world
	// (m1.small: 2 CPUs, which the example's 2 x 1 CPU fill).
	name := fmt.Sprintf("spare-e2e-%d", time.Now().UnixNano()%100000)
	bootMemberServer(t, w, name, group)
	framework.Eventually(t, 90*time.Second, time.Second, "a Ready node for server "+name, func() (bool, error) {
		node, err := w.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return node.Labels[membership.NodeGroupLabel] == group, fmt.Errorf("labels %v", node.Labels)
			}
		}
		return false, fmt.Errorf("not Ready")
	})
	node, _ := w.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	capacity := node.Status.Allocatable.Cpu()
	if total := resource.NewMilliQuantity(requested.MilliValue()*int64(placeholders), resource.DecimalSI); total.Cmp(*capacity) != 0 {
		t.Fatalf("node allocatable CPU %s, placeholders request %s: the test wants them to fill it exactly", capacity, total)
	}

	w.Namespace(t, ns)
	if _, err := w.Kube.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Kube.SchedulingV1().PriorityClasses().Delete(context.Background(), pc.Name, metav1.DeleteOptions{})
	})
	if _, err := w.Kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	podsByState := func(selector string) (running, pending []corev1.Pod) {
		list, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, nil
		}
		for _, p := range list.Items {
			switch {
			case p.DeletionTimestamp != nil:
			case p.Spec.NodeName == name && p.Status.Phase == corev1.PodRunning:
				running = append(running, p)
			case p.Spec.NodeName == "" && p.Status.Phase == corev1.PodPending:
				pending = append(pending, p)
			}
		}
		return running, pending
	}
	selector := metav1.FormatLabelSelector(dep.Spec.Selector)
	framework.Eventually(t, 60*time.Second, time.Second, "the placeholders running on the group's node", func() (bool, error) {
		running, pending := podsByState(selector)
		return len(running) == int(placeholders), fmt.Errorf("%d running, %d pending", len(running), len(pending))
	})
	before, _ := podsByState(selector)

	// Real work of default priority needs room on the group's nodes.
	work := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "real-work", Namespace: ns, Labels: map[string]string{"app": "real-work"}},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{membership.NodeGroupLabel: group},
			Containers: []corev1.Container{{Name: "work", Image: "registry.invalid/work:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"),
					corev1.ResourceMemory: resource.MustParse("512Mi")}}}}},
	}
	created := time.Now()
	if _, err := w.Kube.CoreV1().Pods(ns).Create(ctx, work, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := framework.Eventually(t, 30*time.Second, 250*time.Millisecond, "the real pod running on the group's node", func() (bool, error) {
		running, _ := podsByState("app=real-work")
		return len(running) == 1, fmt.Errorf("real pod not running on %s", name)
	})
	t.Logf("real pod → running on %s in %s (preempting a placeholder)", name, took.Round(100*time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("preemption took %s, want it at once (≤ 15s)", took)
	}

	// One placeholder was preempted; its replacement is Pending as unschedulable.
	var pending []corev1.Pod
	framework.Eventually(t, 30*time.Second, 500*time.Millisecond, "one placeholder preempted and its replacement Pending", func() (bool, error) {
		var running []corev1.Pod
		running, pending = podsByState(selector)
		if len(running) != int(placeholders)-1 || len(pending) != 1 {
			return false, fmt.Errorf("%d running, %d pending", len(running), len(pending))
		}
		for _, c := range pending[0].Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, fmt.Errorf("pending placeholder's conditions: %+v", pending[0].Status.Conditions)
	})
	events, err := w.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Preempted"})
	if err != nil {
		t.Fatal(err)
	}
	victims := map[string]bool{}
	for _, e := range events.Items {
		victims[e.InvolvedObject.Name] = true
	}
	preempted := 0
	for _, p := range before {
		if victims[p.Name] {
			preempted++
		}
	}
	if preempted != 1 {
		t.Errorf("%d Preempted events for the placeholders (%d events in all), want 1", preempted, len(events.Items))
	}
	t.Logf("placeholder Pending (Unschedulable) %s after the real pod was created: the cluster-autoscaler's signal to add a node",
		time.Since(created).Round(100*time.Millisecond))

	// preemptionPolicy Never: the Pending placeholder pushes nothing out.
	time.Sleep(5 * time.Second)
	if running, _ := podsByState("app=real-work"); len(running) != 1 {
		t.Errorf("the real pod was pushed out by a placeholder")
	}

	// The autoscaler sees the Pending placeholder and grows the group through openstack-provider
	// (the server made above is a member: it carries the group's metadata). e2e/autoscaler's
	// stand-in makes the autoscaler's calls; the new node takes the placeholder, and the headroom
	// is back before any real pod had to wait.
	cfg := novaConfig(w, group, 0, 2)
	w.SetNodeGroups(t, cfg)
	t.Cleanup(func() { removeGroupServers(t, w, group) }) // the server made above included
	provider := framework.StartProvider(t, cfg)
	scaler := &autoscaler.Scaler{Driver: &autoscaler.Driver{Client: provider.Client, Kube: w.Kube}, Group: group, UnneededTime: time.Hour}
	grown := framework.Eventually(t, 120*time.Second, time.Second, "the Pending placeholder running on a new node of the group", func() (bool, error) {
		did, err := scaler.Step(ctx)
		if did != "" {
			t.Logf("autoscaler: %s", did)
		}
		if err != nil {
			return false, err
		}
		list, err := w.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		elsewhere := 0
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" && p.Spec.NodeName != name {
				elsewhere++
			}
		}
		return elsewhere == 1, fmt.Errorf("%d placeholders running on another node", elsewhere)
	})
	t.Logf("Pending placeholder → group grown, placeholder running on the new node in %s", grown.Round(time.Second))
	if nodes := groupNodes(t, w, group); len(nodes) != 2 {
		t.Errorf("%d nodes in the group, want 2 (one added for the placeholder)", len(nodes))
	}
}
