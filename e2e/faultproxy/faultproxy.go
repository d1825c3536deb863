// Package faultproxy is test infrastructure: an HTTP proxy in front of the world's OpenStack
// that injects the faults a real cloud has. Clients authenticate through its Keystone address;
// the service catalog in Keystone's token answers is rewritten so that every endpoint (Nova,
// Heat, Glance, …) is reached through a listener of the proxy as well. Each request may be
// answered with a 5xx or a 409, reset before it reaches OpenStack, held and dropped (a timeout),
// delayed (before it reaches OpenStack, or after it was applied), or — the worst — forwarded, applied by OpenStack, and its answer lost.
package faultproxy

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Fault is what the proxy does to one request.
type Fault string

const (
	Pass        Fault = "pass"
	Unavailable Fault = "503"         // answered 503 without reaching OpenStack
	Conflict    Fault = "409"         // answered 409 without reaching OpenStack
	Reset       Fault = "reset"       // connection dropped before reaching OpenStack
	Timeout     Fault = "timeout"     // held for HoldFor, then dropped, never reaching OpenStack
	Latency     Fault = "latency"     // forwarded after Delay
	LostAnswer  Fault = "lost-answer" // forwarded and applied; the connection is dropped instead of the answer
	SlowAnswer  Fault = "slow-answer" // forwarded and applied at once; the answer comes after Delay
)

// Faults lists every fault but Pass.
var Faults = []Fault{Unavailable, Conflict, Reset, Timeout, Latency, LostAnswer}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	// Decide picks the fault for a request (nil: Pass). Requests for Keystone tokens are never
	// faulted, so that the clients under test can always authenticate.
	Decide func(r *http.Request) Fault
	// HoldFor is how long a Timeout holds a request before dropping it (default 5 s).
	HoldFor time.Duration
	// Delay is the Latency (before forwarding) or SlowAnswer (after) added (default 1 s).
	Delay time.Duration

	mu        sync.Mutex
	routes    map[string]string // upstream "scheme://host:port" -> proxy "http://127.0.0.1:port"
	listeners []net.Listener
	servers   []*http.Server
	// tlsServers serve Keystone over TLS (StartTLS).
	tlsServers []*httptest.Server
	counts     map[Fault]int
	keystone   string
}

// Start proxies keystoneURL (http://host:port/v3) and, lazily, every endpoint of its catalog.
func Start(keystoneURL string) (*Proxy, error) {
	p := &Proxy{routes: map[string]string{}, counts: map[Fault]int{}}
	u, err := url.Parse(keystoneURL)
	if err != nil {
		return nil, err
	}
	front, err := p.route(u.Scheme + "://" + u.Host)
	if err != nil {
		return nil, err
	}
	p.keystone = front + u.Path
	return p, nil
}

// StartTLS is Start with Keystone served over TLS, by a certificate for 127.0.0.1 of a CA of
// its own: caPEM is that CA, for clouds.yaml's cacert.
func StartTLS(keystoneURL string) (p *Proxy, caPEM []byte, err error) {
	p = &Proxy{routes: map[string]string{}, counts: map[Fault]int{}}
	u, err := url.Parse(keystoneURL)
	if err != nil {
		return nil, nil, err
	}
	srv := httptest.NewUnstartedServer(p.handler(u.Scheme + "://" + u.Host))
	srv.StartTLS()
	p.mu.Lock()
	p.tlsServers = append(p.tlsServers, srv)
	p.mu.Unlock()
	p.keystone = srv.URL + u.Path
	return p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), nil
}

// KeystoneURL is the proxied auth_url for clouds.yaml.
func (p *Proxy) KeystoneURL() string { return p.keystone }

// Counts returns how many requests got each fault (Pass included).
func (p *Proxy) Counts() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[Fault]int{}
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Injected is the number of faults injected (Latency included, Pass not).
func (p *Proxy) Injected() int {
	n := 0
	for k, v := range p.Counts() {
		if k != Pass {
			n += v
		}
	}
	return n
}

// String summarises the counts, for logs.
func (p *Proxy) String() string {
	counts := p.Counts()
	var parts []string
	for k, v := range counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// Close stops every listener.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.servers {
		_ = s.Close()
	}
	for _, s := range p.tlsServers {
		s.Close()
	}
}

// route returns the proxy address for an upstream, starting a listener the first time.
func (p *Proxy) route(upstream string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if front, ok := p.routes[upstream]; ok {
		return front, nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	front := "http://" + lis.Addr().String()
	srv := &http.Server{Handler: p.handler(upstream), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	p.routes[upstream] = front
	p.listeners = append(p.listeners, lis)
	p.servers = append(p.servers, srv)
	return front, nil
}

func (p *Proxy) count(f Fault) {
	p.mu.Lock()
	p.counts[f]++
	p.mu.Unlock()
}

// RandomFaults returns a Decide that faults a share rate of requests, each with one of kinds
// picked at random; seed makes a run repeatable.
func RandomFaults(rate float64, seed uint64, kinds ...Fault) func(*http.Request) Fault {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(*http.Request) Fault {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() >= rate {
			return Pass
		}
		return kinds[rng.IntN(len(kinds))]
	}
}

func (p *Proxy) handler(upstream string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		token := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/auth/tokens")
		fault := Pass
		if p.Decide != nil && !token {
			fault = p.Decide(r)
		}
		p.count(fault)
		switch fault {
		case Unavailable, Conflict:
			code := http.StatusServiceUnavailable
			if fault == Conflict {
				code = http.StatusConflict
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"error": {"code": %d, "message": "injected by faultproxy", "title": "%s"}}`, code, http.StatusText(code))
			return
		case Reset:
			panic(http.ErrAbortHandler)
		case Timeout:
			time.Sleep(orDefault(p.HoldFor, 5*time.Second))
			panic(http.ErrAbortHandler)
		case Latency:
			time.Sleep(orDefault(p.Delay, time.Second))
		}
		out, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(resp.Body)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		switch fault {
		case LostAnswer:
			panic(http.ErrAbortHandler) // OpenStack applied it; the caller never learns
		case SlowAnswer:
			time.Sleep(orDefault(p.Delay, time.Second))
		}
		if token && resp.StatusCode < 300 {
			if answer, err = p.rewriteCatalog(answer); err != nil {
				http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
				return
			}
		}
		for k, v := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(answer)
	})
}

// rewriteCatalog points every endpoint of a token's catalog at the proxy.
func (p *Proxy) rewriteCatalog(body []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	token, _ := doc["token"].(map[string]any)
	catalog, _ := token["catalog"].([]any)
	for _, svc := range catalog {
		endpoints, _ := svc.(map[string]any)["endpoints"].([]any)
		for _, e := range endpoints {
			ep := e.(map[string]any)
			raw, _ := ep["url"].(string)
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				continue
			}
			front, err := p.route(u.Scheme + "://" + u.Host)
			if err != nil {
				return nil, err
			}
			ep["url"] = front + strings.TrimPrefix(raw, u.Scheme+"://"+u.Host)
		}
	}
	return json.Marshal(doc)
}

func orDefault(d, fallback time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return fallback
}
