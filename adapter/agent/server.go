package agent

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/report"
)

// Handler serves the latest report at report.Path; 503 before the first scrape.
func (s *Scraper) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(report.Path, func(w http.ResponseWriter, _ *http.Request) {
		latest, ok := s.Latest()
		if !ok {
			http.Error(w, "no scrape yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(latest)
	})
	return mux
}

// RequireClient lets through only clients whose verified certificate names the adapter (its
// common name or a DNS name equals name). The client CA alone is not enough: a chart's single
// CA may also have signed every agent's serving certificate (valid for client auth), and no
// node's agent key may read the other agents.
func RequireClient(name string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			http.Error(w, "a verified client certificate is required", http.StatusUnauthorized)
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		if leaf.Subject.CommonName != name && !slices.Contains(leaf.DNSNames, name) {
			http.Error(w, "client "+leaf.Subject.CommonName+" may not read connections: only "+name+" may", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
