// Package openstacktest serves recorded responses of the local world's Nova 26 and Glance 25
// (testdata/, captured at compute microversion 2.79) from an httptest server, keeping a list of
// servers so unit tests and benchmarks can create, list and delete them and count the calls.
package openstacktest

import (
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
)

//go:embed testdata/*.json
var fixtures embed.FS

// Fixture returns a recorded response body.
func Fixture(name string) []byte {
	b, err := fixtures.ReadFile("testdata/" + name)
	if err != nil {
		panic(err)
	}
	return b
}

// Cloud is a recorded Nova + Glance.
type Cloud struct {
	Server *httptest.Server
	// Quota is the number of servers POST may reach before it answers 403 (0: unlimited).
	Quota int

	mu      sync.Mutex
	servers map[string]map[string]any
	order   []string
	calls   map[string]int
	nextID  int
	stacks  []*Stack
	// OnCreate, when set, edits each created server (for instance to put it in ERROR).
	OnCreate func(server map[string]any)
	// Fault, when set, is asked before each Nova request: a status code answers the request
	// with that error instead; 0 serves it.
	Fault func(r *http.Request) int
	// LoseAnswer, when set, is asked after a request was applied (called with the cloud's lock
	// held): true drops the connection instead of answering (the request took effect, its
	// caller never learns it).
	LoseAnswer func(r *http.Request) bool
	// ListingWithoutFault leaves servers' faults out of listings (only GET of one server shows
	// them), as Nova's listing does while the fault is being recorded.
	ListingWithoutFault bool
	// HeatFault is Fault for Heat requests (asked with the cloud's lock held).
	HeatFault func(r *http.Request) int
}

// NewCloud starts the server; it stops when the test ends.
func NewCloud(t testing.TB) *Cloud {
	c := &Cloud{servers: map[string]map[string]any{}, calls: map[string]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Server.Close)
	return c
}

// Clients returns service clients pointed at the server, already "authenticated".
func (c *Cloud) Clients() *openstack.Clients {
	provider := &gophercloud.ProviderClient{HTTPClient: *c.Server.Client()}
	provider.SetToken("fixture-token")
	compute := &gophercloud.ServiceClient{ProviderClient: provider, Endpoint: c.Server.URL + "/v2.1/", Type: "compute",
		Microversion: openstack.ComputeMicroversion}
	image := &gophercloud.ServiceClient{ProviderClient: provider, Endpoint: c.Server.URL + "/", ResourceBase: c.Server.URL + "/v2/", Type: "image"}
	orchestration := &gophercloud.ServiceClient{ProviderClient: provider, Endpoint: c.Server.URL + "/heat/v1/project/", Type: "orchestration"}
	return &openstack.Clients{Provider: provider, Compute: compute, Image: image, Orchestration: orchestration, Region: "RegionOne"}
}

// AddServer adds a server like the recorded one, with the given name and metadata and status.
func (c *Cloud) AddServer(name, status string, metadata map[string]string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addLocked(name, status, metadata)
}

func (c *Cloud) addLocked(name, status string, metadata map[string]string) string {
	var detail struct {
		Servers []map[string]any `json:"servers"`
	}
	if err := json.Unmarshal(Fixture("servers-detail.json"), &detail); err != nil {
		panic(err)
	}
	s := detail.Servers[0]
	c.nextID++
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", c.nextID)
	md := map[string]any{}
	for k, v := range metadata {
		md[k] = v
	}
	s["id"], s["name"], s["status"], s["metadata"] = id, name, status, md
	if status == "ERROR" {
		var errored struct {
			Server map[string]any `json:"server"`
		}
		_ = json.Unmarshal(Fixture("server-error-novalidhost.json"), &errored)
		s["fault"] = errored.Server["fault"]
	}
	if status == "ERROR" || status == "BUILD" {
		s["OS-SRV-USG:launched_at"] = nil // never ran, as Nova reports it
	}
	if c.OnCreate != nil {
		c.OnCreate(s)
	}
	c.servers[id] = s
	c.order = append(c.order, id)
	return id
}

// Servers returns the current servers' IDs.
func (c *Cloud) Servers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.order...)
}

// SetStatus changes a server's status.
func (c *Cloud) SetStatus(id, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers[id]["status"] = status
}

// Calls returns how many requests each "METHOD /path-template" got.
func (c *Cloud) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// ServerBody returns a server's current representation (nil once deleted).
func (c *Cloud) ServerBody(id string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[id]
}

// DeleteServer removes a server as an operator's `openstack server delete` does.
func (c *Cloud) DeleteServer(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeServerLocked(id)
}

func (c *Cloud) removeServerLocked(id string) {
	delete(c.servers, id)
	for i, o := range c.order {
		if o == id {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

func (c *Cloud) serve(w http.ResponseWriter, r *http.Request) {
	_, op := openstack.Operation(r)
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if c.LoseAnswer != nil {
		w = &answerLoser{ResponseWriter: w, lose: func() bool { return c.LoseAnswer(r) }}
	}
	if strings.HasPrefix(r.URL.Path, "/heat/") {
		c.serveHeat(w, r)
		return
	}
	if c.Fault != nil {
		if code := c.Fault(r); code != 0 {
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"computeFault": {"code": %d, "message": "injected fault"}}`, code)
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, "/v2.1")
	switch {
	case r.Method == http.MethodGet && path == "/flavors/detail":
		_, _ = w.Write(Fixture("flavors-detail.json"))
	case r.Method == http.MethodGet && r.URL.Path == "/v2/images":
		_, _ = w.Write(Fixture("images.json"))
	case r.Method == http.MethodGet && path == "/servers/detail":
		c.mu.Lock()
		list := make([]map[string]any, 0, len(c.order))
		name := strings.Trim(r.URL.Query().Get("name"), "^$")
		for _, id := range c.order {
			if name == "" || c.servers[id]["name"] == name {
				s := c.servers[id]
				if c.ListingWithoutFault {
					s = maps.Clone(s)
					delete(s, "fault")
				}
				list = append(list, s)
			}
		}
		body, _ := json.Marshal(map[string]any{"servers": list})
		c.mu.Unlock()
		_, _ = w.Write(body)
	case r.Method == http.MethodPost && path == "/servers":
		var req struct {
			Server struct {
				Name     string            `json:"name"`
				Metadata map[string]string `json:"metadata"`
			} `json:"server"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		c.mu.Lock()
		if c.Quota > 0 && len(c.order) >= c.Quota {
			c.mu.Unlock()
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write(Fixture("quota-exceeded.json"))
			return
		}
		id := c.addLocked(req.Server.Name, "BUILD", req.Server.Metadata)
		c.mu.Unlock()
		var created map[string]map[string]any
		_ = json.Unmarshal(Fixture("server-create.json"), &created)
		created["server"]["id"] = id
		body, _ := json.Marshal(created)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(body)
	case strings.HasPrefix(path, "/servers/") && strings.HasSuffix(path, "/metadata") && r.Method == http.MethodPost:
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/servers/"), "/metadata")
		var req struct {
			Metadata map[string]string `json:"metadata"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		c.mu.Lock()
		s, ok := c.servers[id]
		if ok && s["status"] == "ERROR" {
			c.mu.Unlock()
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"conflictingRequest": {"code": 409, "message": "Cannot 'update metadata' instance ` + id + ` while it is in vm_state error"}}`))
			return
		}
		var all map[string]any
		if ok {
			all, _ = s["metadata"].(map[string]any)
			if all == nil {
				all = map[string]any{}
				s["metadata"] = all
			}
			for k, v := range req.Metadata {
				all[k] = v
			}
		}
		body, _ := json.Marshal(map[string]any{"metadata": all})
		c.mu.Unlock()
		if !ok {
			instanceNotFound(w, id)
			return
		}
		_, _ = w.Write(body)
	case strings.HasPrefix(path, "/servers/") && strings.Contains(path, "/metadata/") && r.Method == http.MethodDelete:
		id, key, _ := strings.Cut(strings.TrimPrefix(path, "/servers/"), "/metadata/")
		c.mu.Lock()
		s, ok := c.servers[id]
		var all map[string]any
		if ok {
			all, _ = s["metadata"].(map[string]any)
		}
		_, had := all[key]
		refused := ok && s["status"] == "ERROR"
		if !refused {
			delete(all, key)
		}
		c.mu.Unlock()
		switch {
		case !ok:
			instanceNotFound(w, id)
		case refused:
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"conflictingRequest": {"code": 409, "message": "Cannot 'delete metadata' instance ` + id + ` while it is in vm_state error"}}`))
		case !had:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"itemNotFound": {"code": 404, "message": "Metadata item was not found"}}`))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	case strings.HasPrefix(path, "/servers/") && r.Method == http.MethodPut:
		id := strings.TrimPrefix(path, "/servers/")
		var req struct {
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		c.mu.Lock()
		s, ok := c.servers[id]
		if ok && req.Server.Name != "" {
			s["name"] = req.Server.Name
		}
		body, _ := json.Marshal(map[string]any{"server": s})
		c.mu.Unlock()
		if !ok {
			instanceNotFound(w, id)
			return
		}
		_, _ = w.Write(body)
	case strings.HasPrefix(path, "/servers/"):
		id := strings.TrimPrefix(path, "/servers/")
		c.mu.Lock()
		s, ok := c.servers[id]
		body, _ := json.Marshal(map[string]any{"server": s})
		if ok && r.Method == http.MethodDelete {
			c.removeServerLocked(id)
		}
		c.mu.Unlock()
		switch {
		case !ok:
			instanceNotFound(w, id)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = w.Write(body)
		}
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"itemNotFound": {"code": 404, "message": "no fixture for ` + r.Method + " " + r.URL.Path + `"}}`))
	}
}

// answerLoser drops the connection instead of sending the answer when lose says so.
type answerLoser struct {
	http.ResponseWriter
	lose        func() bool
	wroteHeader bool
}

func (a *answerLoser) WriteHeader(code int) {
	if a.wroteHeader {
		return
	}
	a.wroteHeader = true
	if a.lose() {
		panic(http.ErrAbortHandler) // net/http closes the connection without answering
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerLoser) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.ResponseWriter.Write(b)
}

// instanceNotFound answers as Nova does for a server that does not exist.
func instanceNotFound(w http.ResponseWriter, id string) {
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"itemNotFound": {"code": 404, "message": "Instance ` + id + ` could not be found."}}`))
}

// Eventually polls cond every 5 ms for up to 5 s, failing the test if it never holds.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
