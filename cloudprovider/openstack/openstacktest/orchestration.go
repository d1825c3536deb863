package openstacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Stack is a Heat stack of the recorded cloud: one or more OS::Heat::ResourceGroups whose
// members are Nova servers of the Cloud (or nested stacks holding servers), resized by PATCH
// updates the way Heat does it: the names in a group's removal parameter go first, then the
// highest indices, and removed names are never used again.
type Stack struct {
	Name, ID string
	// Status is the stack_status; updates set UPDATE_COMPLETE unless Hold or FailUpdates is set.
	Status       string
	StatusReason string
	Params       map[string]string
	// Tags are the stack's tags, as the stack listing shows them.
	Tags   []string
	Groups []*StackGroup
	// Updates holds the parameters of every PATCH the stack received, in order.
	Updates []map[string]string
	// Hold leaves the next updates UPDATE_IN_PROGRESS (applied, not finished) until Finish.
	Hold bool
	// FailUpdates makes the next n updates end in UPDATE_FAILED with their parameters stored
	// and nothing removed (as when Heat fails to delete a member).
	FailUpdates int
	// Lag leaves the next updates UPDATE_IN_PROGRESS with their parameters stored and the
	// members untouched until Finish, as Heat's convergence engine shows a stack between the
	// accepted PATCH and its first resource action.
	Lag bool
	// violations describes the members updates removed without naming them (see Violations).
	violations []string
}

// StackGroup is one ResourceGroup of a Stack.
type StackGroup struct {
	Resource     string // the group's resource name
	CountParam   string
	RemovalParam string
	// RemovalPoliciesUpdate gives the group removal_policies_mode: update. Heat then skips only
	// the names the removal parameter lists now (with append, the default, every name it ever
	// listed), and the members are the first count names of 0, 1, 2, … not skipped: a name
	// dropped from the list is free again, and the members are renumbered onto it.
	RemovalPoliciesUpdate bool
	// AutoScaling makes the group an OS::Heat::AutoScalingGroup: no removal parameter; when it
	// shrinks it removes its failed members first (CHECK_FAILED after a mark-unhealthy), then
	// its oldest.
	AutoScaling bool
	// Nested members are stacks holding ServersPerMember servers (named "server", "server-1", …)
	// instead of being servers themselves.
	Nested           bool
	ServersPerMember int
	// Metadata is set on the members' servers.
	Metadata map[string]string
	Members  []*StackMember
	removed  map[string]bool
	next     int
	made     int // members ever created: their creation order
}

// StackMember is one member of a group.
type StackMember struct {
	Name     string
	Status   string // resource status
	Reason   string
	NestedID string   // the nested stack's ID (Nested groups)
	Servers  []string // server IDs: one, or ServersPerMember for Nested groups
	created  int      // creation order within its group (Heat lists it as creation_time)
	marked   bool     // marked unhealthy through the API, and not changed since
}

// AddStack creates a stack with its groups at the count their parameters give.
func (c *Cloud) AddStack(name string, params map[string]string, groups ...*StackGroup) *Stack {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	s := &Stack{Name: name, ID: fmt.Sprintf("5a5a5a5a-0000-4000-8000-%012d", c.nextID), Status: "CREATE_COMPLETE",
		Params: params, Groups: groups}
	for _, g := range groups {
		g.removed = map[string]bool{}
		c.resizeLocked(s, g, false)
	}
	c.stacks = append(c.stacks, s)
	return s
}

// SetStack changes a stack's parameters as an operator's `openstack stack update --existing`
// does, and applies them at once.
func (c *Cloud) SetStack(s *Stack, params map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(s, params, false)
	s.Status = "UPDATE_COMPLETE"
}

// DeleteStack deletes a stack and its members' servers, as `openstack stack delete` does.
func (c *Cloud) DeleteStack(s *Stack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range s.Groups {
		for _, m := range g.Members {
			c.deleteServersLocked(m)
		}
	}
	for i, o := range c.stacks {
		if o == s {
			c.stacks = append(c.stacks[:i], c.stacks[i+1:]...)
			break
		}
	}
}

// SetStackTags changes a stack's tags, as `openstack stack update --existing --tags` does.
func (c *Cloud) SetStackTags(s *Stack, tags []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Tags = append([]string(nil), tags...)
}

// SetStackStatus changes a stack's status, as an update by other hands leaves it (for instance
// UPDATE_IN_PROGRESS until Finish).
func (c *Cloud) SetStackStatus(s *Stack, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Status = status
}

// Violations lists, for every stack, the members an update sent through the API removed
// without naming them: a ResourceGroup's member not in its removal parameter, an
// AutoScalingGroup's member not marked unhealthy. An update that lowers a group's count must
// name as many members as it lowers it by, or Heat picks the members itself (a ResourceGroup its
// newest, an AutoScalingGroup its failed, then its oldest). Updates made by hand (SetStack) are
// not checked.
func (c *Cloud) Violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.stacks {
		out = append(out, s.violations...)
	}
	return out
}

// Finish ends a held or failed update: the removals are done and the stack is UPDATE_COMPLETE.
func (c *Cloud) Finish(s *Stack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Hold, s.Lag = false, false
	c.applyLocked(s, nil, true)
	s.Status = "UPDATE_COMPLETE"
}

// StackMembers lists a group's live members' names.
func (c *Cloud) StackMembers(g *StackGroup) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range g.Members {
		out = append(out, m.Name)
	}
	return out
}

// StackUpdates returns the parameters of every update the stack received, and its status.
func (c *Cloud) StackUpdates(s *Stack) ([]map[string]string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]map[string]string(nil), s.Updates...), s.Status
}

// StackParam returns one of the stack's parameters.
func (c *Cloud) StackParam(s *Stack, name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.Params[name]
}

// SetMemberStatus changes a member's resource status, as a failed update or check leaves it.
func (c *Cloud) SetMemberStatus(g *StackGroup, name, status, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := g.Member(name)
	m.Status, m.Reason, m.marked = status, reason, false
}

// FailMemberCreation leaves a member CREATE_FAILED as Heat does when its server never ran:
// with server, Nova put the server in ERROR before it launched (no launch time, Nova's "No
// valid host" fault); without, Heat failed before Nova had a server (the member has no
// physical resource).
func (c *Cloud) FailMemberCreation(g *StackGroup, name, reason string, server bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := g.Member(name)
	m.Status, m.Reason, m.marked = "CREATE_FAILED", reason, false
	if !server {
		c.deleteServersLocked(m)
		m.Servers = nil
		return
	}
	var errored struct {
		Server map[string]any `json:"server"`
	}
	if err := json.Unmarshal(Fixture("server-error-novalidhost.json"), &errored); err != nil {
		panic(err)
	}
	for _, id := range m.Servers {
		s := c.servers[id]
		s["status"], s["fault"], s["OS-SRV-USG:launched_at"] = "ERROR", errored.Server["fault"], nil
	}
}

// MemberServers returns a member's server IDs (nil when it is gone).
func (c *Cloud) MemberServers(g *StackGroup, name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := g.Member(name); m != nil {
		return append([]string(nil), m.Servers...)
	}
	return nil
}

// Member finds a member by name.
func (g *StackGroup) Member(name string) *StackMember {
	for _, m := range g.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// applyLocked stores params and resizes the groups; check: the parameters came through the
// API, and members removed without being named are recorded as violations.
func (c *Cloud) applyLocked(s *Stack, params map[string]string, check bool) {
	for k, v := range params {
		s.Params[k] = v
	}
	for _, g := range s.Groups {
		c.resizeLocked(s, g, check)
	}
}

// unnamedLocked records a member an update removed without naming it.
func (s *Stack) unnamedLocked(g *StackGroup, m *StackMember, check bool) {
	if !check {
		return
	}
	how := "is not in its removal parameter " + g.RemovalParam + "=" + strconv.Quote(s.Params[g.RemovalParam])
	if g.AutoScaling {
		how = "was not marked unhealthy (status " + m.Status + ")"
	}
	s.violations = append(s.violations, fmt.Sprintf("stack %s: the update to %s=%s removed member %s of %s, which %s",
		s.Name, g.CountParam, s.Params[g.CountParam], m.Name, g.Resource, how))
}

// resizeLocked brings a group to its count: named removals first, then the highest indices.
func (c *Cloud) resizeLocked(s *Stack, g *StackGroup, check bool) {
	if g.RemovalPoliciesUpdate && !g.AutoScaling {
		c.resizeUpdateModeLocked(s, g, check)
		return
	}
	for _, n := range strings.Split(s.Params[g.RemovalParam], ",") {
		if n = strings.TrimSpace(n); n != "" {
			g.removed[n] = true
		}
	}
	count, _ := strconv.Atoi(s.Params[g.CountParam])
	kept := g.Members[:0]
	for _, m := range g.Members {
		if g.removed[m.Name] {
			c.deleteServersLocked(m)
			continue
		}
		kept = append(kept, m)
	}
	g.Members = kept
	sort.Slice(g.Members, func(i, j int) bool { return index(g.Members[i].Name) < index(g.Members[j].Name) })
	if g.AutoScaling {
		// Heat's order (heat.common.grouputils.get_members): failed members first, then by
		// creation time.
		sort.SliceStable(g.Members, func(i, j int) bool {
			fi, fj := strings.HasSuffix(g.Members[i].Status, "_FAILED"), strings.HasSuffix(g.Members[j].Status, "_FAILED")
			if fi != fj {
				return fi
			}
			return g.Members[i].created < g.Members[j].created
		})
		for len(g.Members) > count {
			victim := g.Members[0]
			if !victim.marked && !strings.HasPrefix(victim.Status, "DELETE") {
				s.unnamedLocked(g, victim, check)
			}
			c.deleteServersLocked(victim)
			g.Members = g.Members[1:]
		}
		sort.Slice(g.Members, func(i, j int) bool { return index(g.Members[i].Name) < index(g.Members[j].Name) })
	}
	for len(g.Members) > count {
		last := g.Members[len(g.Members)-1]
		s.unnamedLocked(g, last, check)
		c.deleteServersLocked(last)
		g.Members = g.Members[:len(g.Members)-1]
	}
	for len(g.Members) < count {
		name := strconv.Itoa(g.next)
		g.next++
		if g.removed[name] {
			continue
		}
		g.Members = append(g.Members, c.newMemberLocked(s, g, name))
	}
}

// resizeUpdateModeLocked resizes a group with removal_policies_mode: update as Heat's
// ResourceGroup does: the skipped names are those of the removal parameter that are members or
// were skipped already, and the members are the first count names not skipped.
func (c *Cloud) resizeUpdateModeLocked(s *Stack, g *StackGroup, check bool) {
	skip := map[string]bool{}
	for _, n := range strings.Split(s.Params[g.RemovalParam], ",") {
		if n = strings.TrimSpace(n); n != "" && (g.removed[n] || g.Member(n) != nil) {
			skip[n] = true
		}
	}
	g.removed = skip
	count, _ := strconv.Atoi(s.Params[g.CountParam])
	want := map[string]bool{}
	var names []string
	for i := 0; len(names) < count; i++ {
		if n := strconv.Itoa(i); !skip[n] {
			names = append(names, n)
			want[n] = true
		}
	}
	kept := g.Members[:0]
	for _, m := range g.Members {
		if want[m.Name] {
			kept = append(kept, m)
			continue
		}
		if !skip[m.Name] {
			s.unnamedLocked(g, m, check)
		}
		c.deleteServersLocked(m)
	}
	g.Members = kept
	for _, n := range names {
		if g.Member(n) == nil {
			g.Members = append(g.Members, c.newMemberLocked(s, g, n))
		}
	}
	sort.Slice(g.Members, func(i, j int) bool { return index(g.Members[i].Name) < index(g.Members[j].Name) })
}

// newMemberLocked creates a member with its servers, ACTIVE and launched.
func (c *Cloud) newMemberLocked(s *Stack, g *StackGroup, name string) *StackMember {
	g.made++
	m := &StackMember{Name: name, Status: "CREATE_COMPLETE", created: g.made}
	servers := 1
	if g.Nested {
		c.nextID++
		m.NestedID = fmt.Sprintf("5a5a5a5a-0000-4000-8000-%012d", c.nextID)
		servers = max(g.ServersPerMember, 1)
	}
	for i := 0; i < servers; i++ {
		metadata := g.Metadata
		if i > 0 {
			metadata = nil // the node is the member's first server; the others are not tagged
		}
		id := c.addLocked(fmt.Sprintf("%s-%s-%s-%d", s.Name, g.Resource, name, i), "ACTIVE", metadata)
		c.servers[id]["OS-SRV-USG:launched_at"] = "2026-11-30T10:00:00.000000"
		m.Servers = append(m.Servers, id)
	}
	return m
}

func index(name string) int {
	n, err := strconv.Atoi(name)
	if err != nil {
		return 1 << 30
	}
	return n
}

func (c *Cloud) deleteServersLocked(m *StackMember) {
	for _, id := range m.Servers {
		c.removeServerLocked(id)
	}
}

func (c *Cloud) findStackLocked(nameOrID string) *Stack {
	for _, s := range c.stacks {
		if s.Name == nameOrID || s.ID == nameOrID {
			return s
		}
	}
	return nil
}

// serveHeat answers /heat/v1/<project>/stacks… as Heat's API does (the parts the provider uses).
func (c *Cloud) serveHeat(w http.ResponseWriter, r *http.Request) {
	_, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/heat/v1/"), "/")
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.HeatFault != nil {
		if code := c.HeatFault(r); code != 0 {
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"code": %d, "error": {"message": "injected fault", "type": "Fault"}, "title": "Fault"}`, code)
			return
		}
	}
	if len(parts) == 1 && parts[0] == "stacks" && r.Method == http.MethodGet {
		list := []map[string]any{}
		for _, s := range c.stacks {
			list = append(list, map[string]any{"id": s.ID, "stack_name": s.Name, "stack_status": s.Status, "tags": s.Tags,
				"links": []map[string]string{{"href": c.Server.URL + "/heat/v1/p/stacks/" + s.Name + "/" + s.ID, "rel": "self"}}})
		}
		writeJSON(w, http.StatusOK, map[string]any{"stacks": list})
		return
	}
	if len(parts) == 5 && parts[0] == "stacks" && parts[3] == "resources" && r.Method == http.MethodPatch {
		c.markUnhealthyLocked(w, r, parts[2], parts[4])
		return
	}
	if len(parts) < 3 || parts[0] != "stacks" {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "title": "Not Found"})
		return
	}
	s := c.findStackLocked(parts[2])
	if s == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "title": "Not Found",
			"error": map[string]string{"message": "The Stack (" + parts[1] + ") could not be found."}})
		return
	}
	switch {
	case len(parts) == 3 && r.Method == http.MethodGet:
		params := map[string]string{}
		for k, v := range s.Params {
			params[k] = v
		}
		writeJSON(w, http.StatusOK, map[string]any{"stack": map[string]any{"id": s.ID, "stack_name": s.Name,
			"stack_status": s.Status, "stack_status_reason": s.StatusReason, "parameters": params,
			"creation_time": "2026-11-30T10:00:00Z"}})
	case len(parts) == 3 && r.Method == http.MethodPatch:
		if strings.HasSuffix(s.Status, "_IN_PROGRESS") {
			writeJSON(w, http.StatusConflict, map[string]any{"code": 409, "title": "Conflict",
				"error": map[string]string{"message": "Stack " + s.Name + " already has an action (UPDATE) in progress."}})
			return
		}
		var body struct {
			Parameters map[string]any `json:"parameters"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		params := map[string]string{}
		for k, v := range body.Parameters {
			params[k] = fmt.Sprint(v)
		}
		s.Updates = append(s.Updates, params)
		switch {
		case s.FailUpdates > 0:
			s.FailUpdates--
			for k, v := range params {
				s.Params[k] = v
			}
			s.Status, s.StatusReason = "UPDATE_FAILED", "Resource DELETE failed: injected"
		case s.Lag:
			for k, v := range params {
				s.Params[k] = v
			}
			s.Status = "UPDATE_IN_PROGRESS"
		case s.Hold:
			c.applyLocked(s, params, true)
			s.Status = "UPDATE_IN_PROGRESS"
		default:
			c.applyLocked(s, params, true)
			s.Status = "UPDATE_COMPLETE"
		}
		w.WriteHeader(http.StatusAccepted)
	case len(parts) == 4 && parts[3] == "resources" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"resources": c.resourcesLocked(s)})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "title": "Not Found"})
	}
}

// markUnhealthyLocked answers PATCH /stacks/<group's nested stack>/<id>/resources/<member>
// {"mark_unhealthy": true, "resource_status_reason": …}: the member becomes CHECK_FAILED. The
// member is named by its name or its physical resource ID, as Heat accepts either.
func (c *Cloud) markUnhealthyLocked(w http.ResponseWriter, r *http.Request, nestedID, name string) {
	var body struct {
		MarkUnhealthy bool   `json:"mark_unhealthy"`
		Reason        string `json:"resource_status_reason"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	for _, s := range c.stacks {
		for _, g := range s.Groups {
			if g.Resource+"-nested-id" != nestedID {
				continue
			}
			m := g.Member(name)
			for _, candidate := range g.Members {
				if m == nil && candidate.physicalID(g) == name {
					m = candidate
				}
			}
			if m != nil {
				if body.MarkUnhealthy {
					m.Status, m.Reason, m.marked = "CHECK_FAILED", body.Reason, true
				}
				w.WriteHeader(http.StatusOK)
				return
			}
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "title": "Not Found",
		"error": map[string]string{"message": "The Resource (" + name + ") could not be found."}})
}

// resourcesLocked lists a stack's resources two levels deep, as `openstack stack resource list
// --nested-depth 2` shows them.
func (c *Cloud) resourcesLocked(s *Stack) []map[string]any {
	link := func(stackName, stackID string) []map[string]string {
		return []map[string]string{{"href": c.Server.URL + "/heat/v1/p/stacks/" + stackName + "/" + stackID, "rel": "stack"}}
	}
	var out []map[string]any
	for _, g := range s.Groups {
		kind := "OS::Heat::ResourceGroup"
		if g.AutoScaling {
			kind = "OS::Heat::AutoScalingGroup"
		}
		out = append(out, map[string]any{"resource_name": g.Resource, "resource_type": kind,
			"resource_status": "UPDATE_COMPLETE", "physical_resource_id": g.Resource + "-nested-id", "links": link(s.Name, s.ID)})
		for _, m := range g.Members {
			member := map[string]any{"resource_name": m.Name, "resource_status": m.Status, "resource_status_reason": m.Reason,
				"parent_resource": g.Resource, "links": link(s.Name+"-"+g.Resource, g.Resource+"-nested-id"),
				"creation_time": memberEpoch.Add(time.Duration(m.created) * time.Second).Format("2006-01-02T15:04:05Z")}
			member["physical_resource_id"] = m.physicalID(g)
			if !g.Nested {
				member["resource_type"] = "OS::Nova::Server"
				out = append(out, member)
				continue
			}
			member["resource_type"] = "node.yaml"
			out = append(out, member)
			for i, id := range m.Servers {
				name := "server"
				if i > 0 {
					name = fmt.Sprintf("server-%d", i)
				}
				out = append(out, map[string]any{"resource_name": name, "resource_type": "OS::Nova::Server",
					"resource_status": "CREATE_COMPLETE", "physical_resource_id": id, "parent_resource": m.Name,
					"links": link(s.Name+"-"+g.Resource+"-"+m.Name, m.NestedID)})
			}
		}
	}
	return out
}

// memberEpoch is when the first member of a fake stack was created.
var memberEpoch = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// physicalID is the member's physical resource ID: its nested stack's, or its server's ("" when
// Heat failed before Nova had one).
func (m *StackMember) physicalID(g *StackGroup) string {
	switch {
	case g.Nested:
		return m.NestedID
	case len(m.Servers) > 0:
		return m.Servers[0]
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, _ := json.Marshal(v)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
