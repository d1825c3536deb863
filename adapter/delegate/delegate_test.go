package delegate

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

const group = "custom.metrics.k8s.io"

// seen is what a handler was asked.
type seen struct {
	paths  []string
	header http.Header
}

func resourceList(gv string, names ...string) []byte {
	l := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv}
	for _, n := range names {
		l.APIResources = append(l.APIResources, metav1.APIResource{Name: n, Namespaced: true, Kind: "MetricValueList", Verbs: []string{"get"}})
	}
	out, _ := json.Marshal(&l)
	return out
}

// local stands for this adapter's API server: it serves tcp_connections and its discovery.
func local(s *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.paths = append(s.paths, r.URL.Path)
		s.header = r.Header.Clone()
		switch r.URL.Path {
		case "/apis/custom.metrics.k8s.io/v1beta2":
			_, _ = w.Write(resourceList("custom.metrics.k8s.io/v1beta2", "pods/tcp_connections", "deployments.apps/tcp_connections"))
		case "/apis":
			_, _ = w.Write([]byte(`{"kind":"APIGroupList"}`))
		default:
			if strings.HasSuffix(r.URL.Path, "/tcp_connections") {
				_, _ = w.Write([]byte(`{"kind":"MetricValueList","items":[{"value":"7"}]}`))
				return
			}
			http.NotFound(w, r)
		}
	})
}

// backend stands for prometheus-adapter: it serves http_requests.
func backend(t *testing.T, s *seen) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.paths = append(s.paths, r.URL.RequestURI())
		s.header = r.Header.Clone()
		switch {
		case r.URL.Path == "/apis/custom.metrics.k8s.io/v1beta2":
			// services/tcp_connections: a metric of ours by name, whose requests come here.
			_, _ = w.Write(resourceList("custom.metrics.k8s.io/v1beta2", "pods/http_requests", "pods/tcp_connections", "services/tcp_connections"))
		case strings.HasSuffix(r.URL.Path, "/http_requests"):
			w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("their exact bytes"))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","code":404,"message":"the server could not find the metric"}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wrap(t *testing.T, srv string, ours *seen) (http.Handler, *Metrics) {
	u, err := url.Parse(srv)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	return Wrap(local(ours), []*Backend{{Group: group, Ours: sets.New("tcp_connections"), URL: u, Transport: http.DefaultTransport}}, m), m
}

func get(h http.Handler, path string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAnotherMetricGoesToTheBackendUnchangedWithoutTheCallersCredentials(t *testing.T) {
	var ours, theirs seen
	h, m := wrap(t, backend(t, &theirs).URL, &ours)
	path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/http_requests?labelSelector=app%3Dweb&metricLabelSelector=verb%3DGET"
	w := get(h, path, map[string]string{"Accept": "application/vnd.kubernetes.protobuf", "Authorization": "Bearer caller-token",
		"X-Remote-User": "system:kube-controller-manager", "X-Remote-Group": "system:masters", "Impersonate-User": "admin"})
	if w.Code != http.StatusOK || w.Body.String() != "their exact bytes" || w.Header().Get("Content-Type") != "application/vnd.kubernetes.protobuf" {
		t.Fatalf("answer %d %q %q, want the backend's 200, bytes and content type", w.Code, w.Body.String(), w.Header().Get("Content-Type"))
	}
	if len(theirs.paths) != 1 || theirs.paths[0] != path {
		t.Fatalf("backend was asked %q, want exactly %q", theirs.paths, path)
	}
	if theirs.header.Get("Accept") != "application/vnd.kubernetes.protobuf" {
		t.Errorf("Accept reached the backend as %q", theirs.header.Get("Accept"))
	}
	for _, k := range []string{"Authorization", "X-Remote-User", "X-Remote-Group", "Impersonate-User"} {
		if v := theirs.header.Get(k); v != "" {
			t.Errorf("%s reached the backend: %q", k, v)
		}
	}
	if len(ours.paths) != 0 {
		t.Errorf("this adapter was asked %q too", ours.paths)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues(group, "200")); got != 1 {
		t.Errorf("delegated requests (200) = %v, want 1", got)
	}
}

func TestOurMetricIsServedHereEvenWhenTheBackendHasOneOfTheSameName(t *testing.T) {
	var ours, theirs seen
	h, _ := wrap(t, backend(t, &theirs).URL, &ours)
	for _, p := range []string{
		"/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/tcp_connections",
		"/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/deployments.apps/web/tcp_connections",
	} {
		if w := get(h, p, nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"7"`) {
			t.Errorf("%s: %d %s, want this adapter's value", p, w.Code, w.Body.String())
		}
	}
	if len(theirs.paths) != 0 {
		t.Errorf("backend was asked %q", theirs.paths)
	}
}

func TestTheBackendsNotFoundIsPassedOnAsItIs(t *testing.T) {
	var ours, theirs seen
	h, _ := wrap(t, backend(t, &theirs).URL, &ours)
	w := get(h, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/nothing", nil)
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "could not find the metric") {
		t.Fatalf("%d %s, want the backend's 404", w.Code, w.Body.String())
	}
}

func TestOtherGroupsAndPathsStayHere(t *testing.T) {
	var ours, theirs seen
	h, _ := wrap(t, backend(t, &theirs).URL, &ours)
	for _, p := range []string{"/healthz", "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue", "/apis/custom.metrics.k8s.io", "/openapi/v2"} {
		get(h, p, nil)
	}
	if len(theirs.paths) != 0 || len(ours.paths) != 4 {
		t.Fatalf("backend asked %q, this adapter %q", theirs.paths, ours.paths)
	}
}

func TestDiscoveryListsBothWithOursFirst(t *testing.T) {
	var ours, theirs seen
	h, _ := wrap(t, backend(t, &theirs).URL, &ours)
	w := get(h, "/apis/custom.metrics.k8s.io/v1beta2", map[string]string{"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
	var l metav1.APIResourceList
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil || w.Code != http.StatusOK {
		t.Fatalf("%d %s: %v", w.Code, w.Body.String(), err)
	}
	var names []string
	for _, r := range l.APIResources {
		names = append(names, r.Name)
	}
	want := "pods/tcp_connections deployments.apps/tcp_connections pods/http_requests"
	if strings.Join(names, " ") != want || l.GroupVersion != "custom.metrics.k8s.io/v1beta2" {
		t.Fatalf("resources %q of %s, want %q", names, l.GroupVersion, want)
	}
}

func TestDiscoveryKeepsOurResourcesWhenTheBackendIsDown(t *testing.T) {
	var ours, theirs seen
	srv := backend(t, &theirs)
	srv.Close()
	h, m := wrap(t, srv.URL, &ours)
	w := get(h, "/apis/custom.metrics.k8s.io/v1beta2", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "pods/tcp_connections") {
		t.Fatalf("%d %s, want this adapter's list", w.Code, w.Body.String())
	}
	if got := testutil.ToFloat64(m.DiscoveryErrors.WithLabelValues(group)); got != 1 {
		t.Errorf("discovery errors = %v, want 1", got)
	}
	// A metric of the backend's: 503 naming the backend, counted with code 0.
	w = get(h, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/http_requests", nil)
	var st metav1.Status
	_ = json.Unmarshal(w.Body.Bytes(), &st)
	if w.Code != http.StatusServiceUnavailable || st.Reason != metav1.StatusReasonServiceUnavailable || !strings.Contains(st.Message, strings.TrimPrefix(srv.URL, "http://")) {
		t.Fatalf("%d %s, want 503 naming the backend", w.Code, w.Body.String())
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues(group, "0")); got != 1 {
		t.Errorf("unreachable count = %v, want 1", got)
	}
}

func TestDiscoveryOfAVersionOnlyTheBackendServesIsTheBackends(t *testing.T) {
	var ours seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(resourceList("external.metrics.k8s.io/v1beta1", "keda-metric"))
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	h := Wrap(local(&ours), []*Backend{{Group: "external.metrics.k8s.io", Ours: sets.New[string](), URL: u, Transport: http.DefaultTransport}},
		NewMetrics(prometheus.NewRegistry()))
	w := get(h, "/apis/external.metrics.k8s.io/v1beta1", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "keda-metric") {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
}

func TestAggregatedDiscoveryIsAnsweredInTheLegacyForm(t *testing.T) {
	var ours, theirs seen
	h, _ := wrap(t, backend(t, &theirs).URL, &ours)
	get(h, "/apis", map[string]string{"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"})
	if got := ours.header.Get("Accept"); got != "application/json" {
		t.Fatalf("/apis reached this adapter asking %q: the aggregator would take its resources as the whole group's", got)
	}
}

func TestNoBackendsLeavesTheHandlerAsItIs(t *testing.T) {
	var ours seen
	l := local(&ours)
	if h := Wrap(l, nil, nil); h == nil {
		t.Fatal("nil handler")
	}
	w := get(Wrap(l, nil, nil), "/apis/custom.metrics.k8s.io/v1beta2/namespaces/a/pods/%2A/other", nil)
	b, _ := io.ReadAll(w.Body)
	if w.Code != http.StatusNotFound {
		t.Fatalf("%d %s", w.Code, b)
	}
}

func TestDiscoveryOfAVersionOnlyThisAdapterServesIsOurs(t *testing.T) {
	var ours, theirs seen
	srv := backend(t, &theirs) // answers 404 for v1beta1
	h, m := wrap(t, srv.URL, &ours)
	local := local(&ours)
	h = Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/apis/custom.metrics.k8s.io/v1beta1" {
			_, _ = w.Write(resourceList("custom.metrics.k8s.io/v1beta1", "pods/tcp_connections"))
			return
		}
		local.ServeHTTP(w, r)
	}), []*Backend{{Group: group, Ours: sets.New("tcp_connections"), URL: mustParse(srv.URL), Transport: http.DefaultTransport}}, m)
	w := get(h, "/apis/custom.metrics.k8s.io/v1beta1", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "pods/tcp_connections") {
		t.Fatalf("%d %s, want this adapter's list", w.Code, w.Body.String())
	}
	if got := testutil.ToFloat64(m.DiscoveryErrors.WithLabelValues(group)); got != 0 {
		t.Errorf("a version the backend does not serve counted as its failure: %v", got)
	}
}

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
