package autoscaler

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
)

// ToBeDeletedTaint is the taint cluster-autoscaler 1.36.1 puts on a node before it deletes it
// (utils/taints/taints.go: ToBeDeletedTaint, effect NoSchedule, the time as its value).
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// DeleteNodesAsStock deletes nodes of one group the way cluster-autoscaler 1.36.1 does with its
// default --node-deletion-batcher-interval=0 (config/flags/flags.go;
// core/scaledown/actuation/actuator.go and delete_in_batch.go): every node is tainted
// ToBeDeletedByClusterAutoscaler, drained when it holds pods (evictions), then deleted by its
// own goroutine with a single-node NodeGroupDeleteNodes call under its own grpc_timeout, all at
// the same moment. When a call fails, a deadline included, the taint is taken off
// (taints.CleanToBeDeleted) and the node takes pods again. It returns each node's outcome.
func (d *Driver) DeleteNodesAsStock(ctx context.Context, group string, nodes ...corev1.Node) map[string]error {
	out := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.deleteOneAsStock(ctx, group, n)
			mu.Lock()
			out[n.Name] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (d *Driver) deleteOneAsStock(ctx context.Context, group string, n corev1.Node) error {
	registered := n.Name != "" && n.UID != ""
	if registered {
		if err := d.Taint(ctx, n.Name, true); err != nil {
			return fmt.Errorf("tainting %s: %w", n.Name, err)
		}
		if err := d.drain(ctx, n.Name); err != nil {
			_ = d.Taint(context.Background(), n.Name, false)
			return fmt.Errorf("draining %s: %w", n.Name, err)
		}
	}
	err := d.DeleteNodes(ctx, group, n)
	if err != nil && registered {
		if untaintErr := d.Taint(context.Background(), n.Name, false); untaintErr != nil && !apierrors.IsNotFound(untaintErr) {
			return fmt.Errorf("%w (and taking the taint off: %v)", err, untaintErr)
		}
	}
	return err
}

// Taint puts the ToBeDeletedByClusterAutoscaler taint on the node, or takes it off.
func (d *Driver) Taint(ctx context.Context, name string, on bool) error {
	node, err := d.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var taints []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Key != ToBeDeletedTaint {
			taints = append(taints, t)
		}
	}
	if on {
		taints = append(taints, corev1.Taint{Key: ToBeDeletedTaint, Value: strconv.FormatInt(time.Now().Unix(), 10), Effect: corev1.TaintEffectNoSchedule})
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": node.ResourceVersion},
		"spec": map[string]any{"taints": taints}})
	_, err = d.Kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// Tainted says whether the node carries ToBeDeletedByClusterAutoscaler.
func Tainted(n corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == ToBeDeletedTaint {
			return true
		}
	}
	return false
}

// drain evicts the node's pods (not DaemonSet or mirror pods) through the eviction API, which
// respects PodDisruptionBudgets, and waits until they are gone.
func (d *Driver) drain(ctx context.Context, name string) error {
	pods, err := d.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		return err
	}
	var evicted []corev1.Pod
	for _, p := range pods.Items {
		if ownedByDaemonSet(p) || p.Annotations[corev1.MirrorPodAnnotationKey] != "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		err := d.Kube.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("evicting %s/%s: %w", p.Namespace, p.Name, err)
		}
		evicted = append(evicted, p)
	}
	for _, p := range evicted {
		for {
			got, err := d.Kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && got.UID != p.UID) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("pod %s/%s still on the node: %w", p.Namespace, p.Name, ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

func ownedByDaemonSet(p corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

// Housekeeping is what 1.36.1 does with a group's instances at the start of every loop, before
// any scale decision (core/static_autoscaler.go, clusterstate/clusterstate.go):
//   - deleteCreatedNodesWithErrors: every instance reported Creating with an error is deleted,
//     undrained, whether or not a node registered for it;
//   - removeOldUnregisteredNodes: an instance with no registered node for longer than the
//     group's max node provision time is deleted;
//   - a scale-up not fulfilled within the max node provision time is reverted with
//     DecreaseTargetSize(-increase), the whole increase at once.
type Housekeeping struct {
	// MaxNodeProvisionTime is --max-node-provision-time (15 minutes by default) unless the
	// group's options override it.
	MaxNodeProvisionTime time.Duration

	mu           sync.Mutex
	unregistered map[string]time.Time // instance id -> first seen without a node
	scaleUps     map[string][]scaleUp // group -> increases not fulfilled yet
}

type scaleUp struct {
	at       time.Time
	increase int
	expected int // target the group reaches with it
}

// Did says what housekeeping did in one loop.
type Did struct {
	DeletedFailed, DeletedUnregistered []string
	Reverted                           map[string]int
	Errors                             []error
}

// ScaledUp records an accepted IncreaseSize, as clusterstate's RegisterScaleUp does.
func (h *Housekeeping) ScaledUp(group string, increase, newTarget int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.scaleUps == nil {
		h.scaleUps = map[string][]scaleUp{}
	}
	h.scaleUps[group] = append(h.scaleUps[group], scaleUp{at: time.Now(), increase: increase, expected: newTarget})
}

func (h *Housekeeping) provisionTime(loop *Loop, group string) time.Duration {
	if o := loop.Options[group]; o != nil && o.GetMaxNodeProvisionDuration() != nil {
		return o.GetMaxNodeProvisionDuration().AsDuration()
	}
	if h.MaxNodeProvisionTime > 0 {
		return h.MaxNodeProvisionTime
	}
	return 15 * time.Minute
}

// Run does one loop's housekeeping for the groups of the loop.
func (h *Housekeeping) Run(ctx context.Context, d *Driver, loop *Loop) Did {
	did := Did{Reverted: map[string]int{}}
	h.mu.Lock()
	if h.unregistered == nil {
		h.unregistered = map[string]time.Time{}
	}
	if h.scaleUps == nil {
		h.scaleUps = map[string][]scaleUp{}
	}
	h.mu.Unlock()
	registered := map[string]corev1.Node{}
	for _, n := range loop.Nodes {
		if n.Spec.ProviderID != "" {
			registered[n.Spec.ProviderID] = n
		}
	}
	seen := map[string]bool{}
	for group, instances := range loop.Instances {
		var failed, old []corev1.Node
		registeredNodes := 0
		for _, inst := range instances {
			id := inst.GetId()
			seen[id] = true
			node, isNode := registered[id]
			if isNode {
				registeredNodes++
			}
			if inst.GetStatus().GetInstanceState() == pb.InstanceStatus_instanceCreating && inst.GetStatus().GetErrorInfo() != nil {
				if !isNode {
					// Named after its instance: the outcomes are told by node name.
					node = corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: corev1.NodeSpec{ProviderID: id}}
				}
				node.UID = "" // deleted without a drain
				failed = append(failed, node)
				continue
			}
			if isNode || inst.GetStatus().GetInstanceState() == pb.InstanceStatus_instanceDeleting {
				h.forget(id)
				continue
			}
			h.mu.Lock()
			since, ok := h.unregistered[id]
			if !ok {
				h.unregistered[id] = time.Now()
			}
			h.mu.Unlock()
			if ok && time.Since(since) > h.provisionTime(loop, group) {
				old = append(old, corev1.Node{Spec: corev1.NodeSpec{ProviderID: id}})
			}
		}
		outcomes := d.DeleteNodesAsStock(ctx, group, failed...)
		for _, n := range failed {
			if err := outcomes[n.Name]; err != nil {
				did.Errors = append(did.Errors, fmt.Errorf("deleting a failed creation of %s: %w", group, err))
				continue
			}
			did.DeletedFailed = append(did.DeletedFailed, n.Spec.ProviderID)
		}
		for _, n := range old {
			if err := d.DeleteNodes(ctx, group, n); err != nil {
				did.Errors = append(did.Errors, fmt.Errorf("deleting unregistered %s of %s: %w", n.Spec.ProviderID, group, err))
				continue
			}
			did.DeletedUnregistered = append(did.DeletedUnregistered, n.Spec.ProviderID)
			h.forget(n.Spec.ProviderID)
		}
		did.Reverted[group] = h.revert(ctx, d, loop, group, registeredNodes, &did)
	}
	h.mu.Lock()
	for id := range h.unregistered {
		if !seen[id] {
			delete(h.unregistered, id)
		}
	}
	h.mu.Unlock()
	return did
}

func (h *Housekeeping) forget(id string) {
	h.mu.Lock()
	delete(h.unregistered, id)
	h.mu.Unlock()
}

// revert undoes the scale-ups of the group whose nodes have not all registered within the
// provision time: clusterstate compares the registered nodes with the target the increase
// expected, and asks DecreaseTargetSize for the whole increase.
func (h *Housekeeping) revert(ctx context.Context, d *Driver, loop *Loop, group string, registeredNodes int, did *Did) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keep []scaleUp
	reverted := 0
	for _, s := range h.scaleUps[group] {
		switch {
		case registeredNodes >= s.expected:
			// fulfilled
		case time.Since(s.at) > h.provisionTime(loop, group):
			if err := d.DecreaseTargetSize(ctx, group, -s.increase); err != nil {
				did.Errors = append(did.Errors, fmt.Errorf("reverting a scale-up of %d of %s: %w", s.increase, group, err))
			} else {
				reverted += s.increase
			}
		default:
			keep = append(keep, s)
		}
	}
	h.scaleUps[group] = keep
	return reverted
}

// DecreaseTargetSize of a group.
func (d *Driver) DecreaseTargetSize(parent context.Context, group string, delta int) error {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	_, err := d.Client.NodeGroupDecreaseTargetSize(ctx, &pb.NodeGroupDecreaseTargetSizeRequest{Id: group, Delta: int32(delta)})
	return err
}
