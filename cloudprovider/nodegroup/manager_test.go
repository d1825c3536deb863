package nodegroup

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
)

type snapshots struct{ err error }

func (s snapshots) Snapshot(context.Context) (*Snapshot, error) {
	return &Snapshot{Started: time.Now()}, s.err
}

// fakeGroup counts its refreshes and stops, and fails its refreshes when told.
type fakeGroup struct {
	id        string
	err       error
	observed  atomic.Int32
	stopped   atomic.Int32
	onObserve func()
}

func (g *fakeGroup) ID() string                                      { return g.id }
func (g *fakeGroup) Config() config.NodeGroup                        { return config.NodeGroup{Name: g.id} }
func (g *fakeGroup) TargetSize() int                                 { return 0 }
func (g *fakeGroup) IncreaseSize(context.Context, int) error         { return nil }
func (g *fakeGroup) DeleteInstances(context.Context, []string) error { return nil }
func (g *fakeGroup) DecreaseTargetSize(int) error                    { return nil }
func (g *fakeGroup) Instances() []Instance                           { return nil }
func (g *fakeGroup) HasServer(string) bool                           { return false }
func (g *fakeGroup) FlavorName() string                              { return "" }
func (g *fakeGroup) Debug() string                                   { return g.id }
func (g *fakeGroup) Stop()                                           { g.stopped.Add(1) }
func (g *fakeGroup) Observe(context.Context, *Snapshot) error {
	if g.onObserve != nil {
		g.onObserve()
	}
	g.observed.Add(1)
	return g.err
}

// One group's failure (its stack is missing) does not fail the refresh: the other groups are
// refreshed, the autoscaler's Refresh succeeds (it would skip whole loops, scale-down included),
// and the failing group's error is kept for it alone.
func TestOneGroupsFailureDoesNotStopTheOthers(t *testing.T) {
	broken := &fakeGroup{id: "heat-pool", err: errors.New(`stack "heat-pool" not found in the project`)}
	healthy := &fakeGroup{id: "general"}
	m := NewManager(snapshots{}, time.Hour, []Group{broken, healthy})
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start with one broken group: %v", err)
	}
	if err := m.Refresh(); err != nil {
		t.Errorf("Refresh = %v, want nil: only one group failed", err)
	}
	if healthy.observed.Load() != 1 || broken.observed.Load() != 1 {
		t.Errorf("observed: healthy %d, broken %d; want 1 each", healthy.observed.Load(), broken.observed.Load())
	}
	if err := m.GroupError("heat-pool"); err == nil {
		t.Error("the broken group's error is not kept")
	}
	if err := m.GroupError("general"); err != nil {
		t.Errorf("the healthy group has error %v", err)
	}
	if m.LastRefresh().IsZero() {
		t.Error("the refresh is not recorded as done")
	}
}

// A snapshot that cannot be taken fails the refresh: every answer would be stale.
func TestSnapshotFailureFailsTheRefresh(t *testing.T) {
	m := NewManager(snapshots{err: errors.New("listing servers: 503")}, time.Hour, []Group{&fakeGroup{id: "general"}})
	if err := m.Start(context.Background()); err == nil {
		t.Fatal("start without a snapshot succeeded")
	}
	if err := m.Refresh(); err == nil {
		t.Error("Refresh after a failed snapshot = nil")
	}
}

// A group discovery no longer returns is stopped (its stack updates end with it); one it
// returns again as a new object replaces the old, which is stopped before the new one is first
// refreshed: a stack never has two writers. Dropped groups kept running.
func TestDroppedDiscoveredGroupIsStopped(t *testing.T) {
	var found []Group
	m := NewManager(snapshots{}, time.Hour, []Group{&fakeGroup{id: "general"}})
	m.Discover = func(context.Context, *Snapshot, map[string]Group) []Group { return found }
	refresh := func() {
		t.Helper()
		if err := m.refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	first := &fakeGroup{id: "prod-pool"}
	found = []Group{first}
	refresh()
	refresh()
	if first.stopped.Load() != 0 {
		t.Fatal("a group discovery keeps was stopped")
	}
	found = nil
	refresh()
	if first.stopped.Load() != 1 {
		t.Errorf("the dropped group was stopped %d times, want once", first.stopped.Load())
	}
	if _, err := m.Group("prod-pool"); err == nil {
		t.Error("the dropped group is still served")
	}
	second := &fakeGroup{id: "prod-pool"}
	found = []Group{second}
	refresh()
	third := &fakeGroup{id: "prod-pool"}
	third.onObserve = func() {
		if second.stopped.Load() != 1 {
			t.Error("the group replaced was not stopped before its successor was refreshed")
		}
	}
	found = []Group{third}
	refresh()
	if second.stopped.Load() != 1 || third.stopped.Load() != 0 || first.stopped.Load() != 1 {
		t.Errorf("stops: first %d, second %d, third %d; want 1, 1, 0", first.stopped.Load(), second.stopped.Load(), third.stopped.Load())
	}
}

// A replica that starts leading answers nothing from state read before it led (the other
// replica acted since): Refresh fails, and so ends the autoscaler's loop, until a snapshot
// begun after that moment has been observed.
func TestNewLeaderRefreshesBeforeItAnswers(t *testing.T) {
	m := NewManager(snapshots{}, time.Hour, []Group{&fakeGroup{id: "general"}})
	if err := m.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(); err != nil {
		t.Fatalf("fresh state: %v", err)
	}
	m.RequireFresherThan(time.Now())
	if err := m.Refresh(); err == nil {
		t.Fatal("Refresh right after this replica started leading = nil: it would answer from what it saw before")
	}
	if err := m.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(); err != nil {
		t.Errorf("after a snapshot begun since: %v", err)
	}
}
