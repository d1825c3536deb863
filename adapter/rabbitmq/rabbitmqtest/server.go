// Package rabbitmqtest serves responses recorded from a real RabbitMQ 3.10 management API (the
// local world's broker, GET /api/queues/{vhost}/{name}?columns=...) for unit tests, and counts
// the requests.
//
// testdata/: queue-busy.json (a consumer acking 10/s while 20/s are published),
// queue-stalled.json (publisher stopped, consumer holding 5 unacked), queue-fresh.json (a queue
// never used: no message_stats), queue-missing.json (404), unauthorized.json (401, wrong
// password), forbidden.json (401, user without access to the vhost), queue-nostats.json (a
// queue whose statistics are not computed yet: no messages_ready at all), proxy-login.html (a
// proxy's sign-in page answered instead of the API).
package rabbitmqtest

import (
	"embed"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

//go:embed testdata/*.json testdata/*.html
var files embed.FS

// The credentials the fixtures were recorded with.
const (
	User     = "osa-fixture"
	Password = "fixture-pw"
	Vhost    = "osa-fixture"
)

// Server is a management API answering from the recorded responses.
type Server struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	queues   map[string]string // queue name -> fixture file
}

// Start serves the fixtures (over TLS if tls) until the test ends. Queue "jobs" answers
// queue-busy.json, "fresh" queue-fresh.json, anything else queue-missing.json.
func Start(t *testing.T, tls bool) *Server {
	s := &Server{queues: map[string]string{"jobs": "queue-busy.json", "fresh": "queue-fresh.json"}}
	if tls {
		s.Server = httptest.NewTLSServer(s)
	} else {
		s.Server = httptest.NewServer(s)
	}
	t.Cleanup(s.Close)
	return s
}

// Answer makes a queue answer another fixture file from now on.
func (s *Server) Answer(queue, file string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queues[queue] = file
}

// Requests is the number of requests served so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	reply := func(code int, file string) {
		body, _ := files.ReadFile("testdata/" + file)
		if strings.HasSuffix(file, ".html") {
			w.Header().Set("Content-Type", "text/html")
		}
		w.WriteHeader(code)
		_, _ = w.Write(body)
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != User || pass != Password {
		w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
		reply(http.StatusUnauthorized, "unauthorized.json")
		return
	}
	rest, found := strings.CutPrefix(r.URL.EscapedPath(), "/api/queues/")
	vhost, queue, _ := strings.Cut(rest, "/")
	if !found || r.Method != http.MethodGet || r.URL.Query().Get("columns") == "" {
		reply(http.StatusBadRequest, "queue-missing.json")
		return
	}
	if vhost != Vhost {
		reply(http.StatusUnauthorized, "forbidden.json")
		return
	}
	s.mu.Lock()
	file, known := s.queues[queue]
	s.mu.Unlock()
	if !known {
		reply(http.StatusNotFound, "queue-missing.json")
		return
	}
	reply(http.StatusOK, file)
}

// WriteCredentials writes the fixtures' username and password (with a trailing newline, as
// `kubectl create secret --from-file` keeps it) and returns the two paths.
func WriteCredentials(t *testing.T, password string) (string, string) {
	dir := t.TempDir()
	u, p := filepath.Join(dir, "username"), filepath.Join(dir, "password")
	if err := os.WriteFile(u, []byte(User+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return u, p
}

// WriteCA writes a TLS server's certificate as a PEM CA file and returns its path.
func (s *Server) WriteCA(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "ca.crt")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(path, block, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
