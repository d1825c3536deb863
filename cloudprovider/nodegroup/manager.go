package nodegroup

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
)

// Source takes a snapshot of OpenStack: one server listing (and one stack listing when Heat is
// in use), whatever the number of nodes and groups.
type Source interface {
	Snapshot(ctx context.Context) (*Snapshot, error)
}

// Stopper is a group with work of its own in the background (a Heat group's stack updates).
// Stop returns once that work has ended.
type Stopper interface {
	Stop()
}

// Manager owns the node groups and refreshes them from OpenStack in the background.
type Manager struct {
	source   Source
	interval time.Duration
	// Discover, when set, returns groups found in a snapshot (tagged Heat stacks); groups it no
	// longer returns are dropped (and stopped, if they are Stoppers), configured groups are
	// never dropped.
	Discover func(ctx context.Context, snap *Snapshot, known map[string]Group) []Group
	// OnRefresh, when set, is called after each refresh with its outcome (metrics).
	OnRefresh func(took time.Duration, err error)

	mu          sync.RWMutex
	configured  map[string]Group
	discovered  map[string]Group
	servers     map[string]servers.Server // the last snapshot's servers, by ID
	lastRefresh time.Time
	// lastStarted is when the last good snapshot began; fresherThan, when the state must be
	// newer than to be answered from (set when this replica starts leading).
	lastStarted, fresherThan time.Time
	lastErr                  error
	// groupErrs holds each group's last failed Observe: that group serves its previous state
	// while the others go on.
	groupErrs map[string]error
	kick      chan struct{}
	refreshMu sync.Mutex
}

// NewManager manages the configured groups.
func NewManager(source Source, interval time.Duration, groups []Group) *Manager {
	m := &Manager{source: source, interval: interval, configured: map[string]Group{}, discovered: map[string]Group{},
		groupErrs: map[string]error{}, kick: make(chan struct{}, 1)}
	for _, g := range groups {
		m.configured[g.ID()] = g
	}
	return m
}

// Start makes the first refresh (so the first calls are answered from real state) and then
// refreshes every interval, or sooner when Refresh asks, until ctx ends.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.refresh(ctx); err != nil {
		return fmt.Errorf("first look at OpenStack: %w", err)
	}
	go func() {
		ticker := time.NewTicker(m.interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			case <-m.kick:
			}
			if err := m.refresh(ctx); err != nil {
				klog.ErrorS(err, "refreshing node groups from OpenStack; serving the previous state")
			}
		}
	}()
	return nil
}

// Refresh asks for a background refresh if the state is older than the interval; it never
// waits for OpenStack. It returns the last refresh's error, if any: the snapshot could not be
// taken. One group's failure is not one (see GroupError).
func (m *Manager) Refresh() error {
	m.mu.RLock()
	stale, err := time.Since(m.lastRefresh) >= m.interval, m.lastErr
	behind, since := m.lastStarted.Before(m.fresherThan), m.fresherThan
	m.mu.RUnlock()
	if behind {
		m.kickNow()
		return fmt.Errorf("this replica began leading at %s and its state from OpenStack is older (another replica acted meanwhile): refreshing before it answers", since.Format(time.RFC3339Nano))
	}
	if stale {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// RequireFresherThan makes Refresh fail until a snapshot taken after t has been observed, and
// asks for one now: a replica that starts leading must not answer from what it saw before
// another replica's last actions.
func (m *Manager) RequireFresherThan(t time.Time) {
	m.mu.Lock()
	if t.After(m.fresherThan) {
		m.fresherThan = t
	}
	m.mu.Unlock()
	m.kickNow()
}

func (m *Manager) kickNow() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// LastRefresh is when the state was last refreshed.
func (m *Manager) LastRefresh() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.lastRefresh
}

func (m *Manager) refresh(ctx context.Context) error {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*m.interval+30*time.Second)
	defer cancel()
	snap, err := m.source.Snapshot(ctx)
	if err == nil {
		if m.Discover != nil {
			m.mu.RLock()
			known := map[string]Group{}
			for id, g := range m.discovered {
				known[id] = g
			}
			m.mu.RUnlock()
			found := map[string]Group{}
			var unused []Group
			for _, g := range m.Discover(ctx, snap, known) {
				if _, clash := m.configured[g.ID()]; clash {
					klog.InfoS("discovered stack has the name of a configured group; the configured one wins", "group", g.ID())
					unused = append(unused, g)
					continue
				}
				found[g.ID()] = g
			}
			m.mu.Lock()
			m.discovered = found
			m.mu.Unlock()
			// A dropped group would otherwise go on writing to its stack, beside the group made
			// for it if it is discovered again: it is stopped before any group is refreshed.
			kept := slices.Collect(maps.Values(found))
			for id, g := range known {
				if found[id] != g && !slices.Contains(kept, g) {
					klog.InfoS("node group no longer discovered: its stack updates stop", "group", id)
					unused = append(unused, g)
				}
			}
			for _, g := range unused {
				if s, ok := g.(Stopper); ok && !slices.Contains(kept, g) {
					s.Stop()
				}
			}
		}
		var wg sync.WaitGroup
		var errMu sync.Mutex
		groupErrs := map[string]error{}
		for _, g := range m.all() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if gErr := g.Observe(ctx, snap); gErr != nil {
					klog.ErrorS(gErr, "refreshing a node group; it serves its previous state, the others go on", "group", g.ID())
					errMu.Lock()
					groupErrs[g.ID()] = fmt.Errorf("node group %q: %w", g.ID(), gErr)
					errMu.Unlock()
				}
			}()
		}
		wg.Wait()
		m.mu.Lock()
		m.groupErrs = groupErrs
		m.mu.Unlock()
	}
	m.mu.Lock()
	if err == nil {
		m.lastRefresh, m.lastStarted = time.Now(), snap.Started
		m.servers = make(map[string]servers.Server, len(snap.Servers))
		for _, s := range snap.Servers {
			m.servers[s.ID] = s
		}
	}
	m.lastErr = err
	m.mu.Unlock()
	if m.OnRefresh != nil {
		m.OnRefresh(time.Since(start), err)
	}
	return err
}

func (m *Manager) all() []Group {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Group, 0, len(m.configured)+len(m.discovered))
	for _, g := range m.configured {
		out = append(out, g)
	}
	for _, g := range m.discovered {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// GroupError is the error of the group's last refresh, nil when it succeeded.
func (m *Manager) GroupError(id string) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.groupErrs[id]
}

// Server returns a server of the cluster as the last refresh saw it.
func (m *Manager) Server(serverID string) (servers.Server, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.servers[serverID]
	return s, ok
}

// Groups lists every group, configured and discovered, sorted by id.
func (m *Manager) Groups() []Group { return m.all() }

// Group finds a group by id.
func (m *Manager) Group(id string) (Group, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if g, ok := m.configured[id]; ok {
		return g, nil
	}
	if g, ok := m.discovered[id]; ok {
		return g, nil
	}
	return nil, fmt.Errorf("node group %q: %w", id, ErrNotFound)
}

// GroupForProviderID returns the group whose member the node is, or nil for nodes that are not
// ours (other clouds, the control plane, servers of other groups or clusters).
func (m *Manager) GroupForProviderID(providerID string) Group {
	serverID, ok := membership.ServerID(providerID)
	if !ok {
		return m.groupListing(providerID)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, g := range m.configured {
		if g.HasServer(serverID) {
			return g
		}
	}
	for _, g := range m.discovered {
		if g.HasServer(serverID) {
			return g
		}
	}
	return nil
}

// groupListing finds the group whose instance list holds id: a placeholder for a server being
// created or a failed creation. The autoscaler asks about these as "unregistered nodes" (to
// count them per group, and to delete those that never register within its provision time).
func (m *Manager) groupListing(id string) Group {
	if id == "" {
		return nil
	}
	for _, g := range m.all() {
		for _, inst := range g.Instances() {
			if inst.ID == id {
				return g
			}
		}
	}
	return nil
}
