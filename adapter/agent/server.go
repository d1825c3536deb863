package agent

import (
	"encoding/json"
	"net/http"

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
