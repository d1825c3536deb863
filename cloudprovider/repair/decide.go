// Package repair decides how to mend nodes that registered and later broke: NotReady for too
// long, or their server SHUTOFF or ERROR. It escalates one step at a time — start a stopped
// server; replace a server in ERROR; otherwise soft reboot, then hard reboot, then replace — and
// holds back when repairing would make things worse: young nodes, groups in the middle of a scale
// operation, and groups where too many nodes are unhealthy at once (a network or control-plane
// problem).
//
// decide.go is the decision table: pure, with every input explicit, so it can be tested case by
// case. loop.go gathers the inputs and carries the actions out.
package repair

import (
	"fmt"
	"time"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
)

// Action is one repair step.
type Action string

const (
	None       Action = ""
	Start      Action = "start"
	SoftReboot Action = "soft-reboot"
	HardReboot Action = "hard-reboot"
	Replace    Action = "replace"
)

// Policy is a group's repair settings.
type Policy struct {
	// UnhealthyAfter: Ready False/Unknown this long makes a node unhealthy (default 5m).
	UnhealthyAfter time.Duration
	// Grace: nodes younger than this are left alone (default 10m).
	Grace time.Duration
	// EscalateAfter: a node still unhealthy this long after a step gets the next (default 5m).
	EscalateAfter time.Duration
	// MaxUnhealthyFraction: above this share of unhealthy nodes the group is not repaired
	// (default 0.4), unless only one node is unhealthy.
	MaxUnhealthyFraction float64
}

// PolicyFrom converts a group's configured repair policy (defaults already applied).
func PolicyFrom(c config.RepairPolicy) Policy {
	return Policy{UnhealthyAfter: c.UnhealthyAfter.Duration, Grace: c.Grace.Duration, EscalateAfter: c.EscalateAfter.Duration,
		MaxUnhealthyFraction: float64(c.MaxUnhealthyPercent) / 100}
}

// DefaultPolicy is the defaults.
var DefaultPolicy = Policy{UnhealthyAfter: 5 * time.Minute, Grace: 10 * time.Minute, EscalateAfter: 5 * time.Minute, MaxUnhealthyFraction: 0.4}

// NodeState is what is known of one node and its server.
type NodeState struct {
	Created time.Time
	// Ready is the node's Ready condition status ("True", "False", "Unknown") since ReadySince.
	Ready      string
	ReadySince time.Time
	// ServerStatus is Nova's status of the node's server (ACTIVE, SHUTOFF, ERROR, …).
	ServerStatus string
	// LastStep and LastStepAt are the repair step already taken (remembered on the Node).
	LastStep   Action
	LastStepAt time.Time
	// Removing: cluster-autoscaler is removing the node (its ToBeDeletedByClusterAutoscaler
	// taint): it is drained and deleted, not repaired.
	Removing bool
}

// GroupState is what is known of the node's group.
type GroupState struct {
	Nodes, Unhealthy int
	// Scaling is true while the group has a scale operation in flight (target ≠ members).
	Scaling bool
	// Stale says why the provider's view of OpenStack cannot be trusted now (its last refresh is
	// old, or the group's failed); "" when it is fresh. Nothing is repaired on a stale view.
	Stale string
	// WideFault says why the node's zone, or the whole cluster, has too many unhealthy nodes
	// across groups ("" when it has not): a zone or network fault, not one broken node per group.
	WideFault string
}

// Unhealthy says whether the node needs repair, ignoring the group.
func (p Policy) Unhealthy(n NodeState, now time.Time) bool {
	if n.ServerStatus == "SHUTOFF" || n.ServerStatus == "ERROR" {
		return true
	}
	return n.Ready != "True" && now.Sub(n.ReadySince) >= p.UnhealthyAfter
}

// Hold is why an unhealthy node is left alone for now.
type Hold string

const (
	NotHeld      Hold = ""
	HoldGrace    Hold = "grace"
	HoldScaling  Hold = "scaling"
	HoldTooMany  Hold = "too-many-unhealthy"
	HoldWaiting  Hold = "waiting"
	HoldDisabled Hold = "disabled"
	HoldRemoving Hold = "removing"
	HoldStale    Hold = "stale"
	HoldWide     Hold = "wide-fault"
)

// Decide returns the step to take now, why, and — for an unhealthy node given no step — what
// holds it back.
func (p Policy) Decide(n NodeState, g GroupState, now time.Time) (Action, string, Hold) {
	if !p.Unhealthy(n, now) {
		return None, "healthy", NotHeld
	}
	if n.Removing {
		return None, "cluster-autoscaler is removing the node (ToBeDeletedByClusterAutoscaler)", HoldRemoving
	}
	if g.Stale != "" {
		return None, "the view of OpenStack is stale: " + g.Stale, HoldStale
	}
	if age := now.Sub(n.Created); age < p.Grace {
		return None, fmt.Sprintf("node is %s old, within the %s grace period after creation", age.Round(time.Second), p.Grace), HoldGrace
	}
	if g.Scaling {
		return None, "the group has a scale operation in flight", HoldScaling
	}
	if g.WideFault != "" {
		return None, g.WideFault, HoldWide
	}
	// A lone unhealthy node says nothing of the network: it is repaired even in a group of one.
	if g.Unhealthy > 1 && float64(g.Unhealthy)/float64(g.Nodes) > p.MaxUnhealthyFraction {
		return None, fmt.Sprintf("%d of %d nodes of the group are unhealthy (more than %.0f%%): that is a network or control-plane problem, replacing nodes would make it worse",
			g.Unhealthy, g.Nodes, p.MaxUnhealthyFraction*100), HoldTooMany
	}
	if n.LastStep != None && now.Sub(n.LastStepAt) < p.EscalateAfter {
		return None, fmt.Sprintf("%s done %s ago: waiting %s before the next step", n.LastStep, now.Sub(n.LastStepAt).Round(time.Second), p.EscalateAfter), HoldWaiting
	}
	action, reason := p.nextStep(n, now)
	return action, reason, NotHeld
}

func (p Policy) nextStep(n NodeState, now time.Time) (Action, string) {
	if n.ServerStatus == "SHUTOFF" && n.LastStep != Start {
		return Start, "server is SHUTOFF"
	}
	if n.ServerStatus == "ERROR" {
		// Nova puts a server in ERROR when an operation on it failed at the hypervisor; a reboot
		// may bring it back in an unknown state, a new server is certain.
		return Replace, "server is in ERROR"
	}
	switch n.LastStep {
	case None, Start:
		return SoftReboot, "node NotReady for " + now.Sub(n.ReadySince).Round(time.Second).String()
	case SoftReboot:
		return HardReboot, "still unhealthy after a soft reboot"
	case HardReboot:
		return Replace, "still unhealthy after a hard reboot"
	}
	// A replacement normally deletes the node; one still here after the delay failed.
	return Replace, "still here " + now.Sub(n.LastStepAt).Round(time.Second).String() + " after its replacement was started"
}

// WideFault says whether unhealthy of nodes, across groups, is too many (more than one, and a
// share above max), and how to say so; scope names them ("the cluster", "zone nova-a").
func WideFault(scope string, unhealthy, nodes int, max float64) string {
	if unhealthy <= 1 || float64(unhealthy)/float64(nodes) <= max {
		return ""
	}
	return fmt.Sprintf("%d of %d nodes of %s are unhealthy (more than %.0f%%): a zone or network fault, not one broken node per group",
		unhealthy, nodes, scope, max*100)
}
