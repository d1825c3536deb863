package externalapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq/rabbitmqtest"
)

var now = time.Unix(1_800_000_000, 0)

func fixture(t *testing.T) (*Provider, *rabbitmqtest.Server) {
	srv := rabbitmqtest.Start(t, false)
	user, pass := rabbitmqtest.WriteCredentials(t, rabbitmqtest.Password)
	b, err := rabbitmq.NewBroker(rabbitmq.BrokerConfig{Name: "main", URL: srv.URL, UsernameFile: user, PasswordFile: pass,
		PollInterval: metav1.Duration{Duration: 10 * time.Second}, Timeout: metav1.Duration{Duration: 5 * time.Second},
		Queues: []rabbitmq.QueueRef{{Vhost: rabbitmqtest.Vhost, Name: "jobs"}, {Vhost: rabbitmqtest.Vhost, Name: "fresh"}}})
	if err != nil {
		t.Fatal(err)
	}
	b.Now = func() time.Time { return now }
	return &Provider{Brokers: []*rabbitmq.Broker{b}}, srv
}

func selector(t *testing.T, s string) labels.Selector {
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func get(t *testing.T, p *Provider, metric, sel string) (map[string]string, error) {
	list, err := p.GetExternalMetric(context.Background(), "shop", selector(t, sel), provider.ExternalMetricInfo{Metric: metric})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, it := range list.Items {
		out[labels.Set(it.MetricLabels).String()] = it.Value.String()
		if it.MetricName != metric || !it.Timestamp.Time.Equal(now) {
			t.Errorf("%+v", it)
		}
	}
	return out, nil
}

func TestValuesFromTheRecordedBroker(t *testing.T) {
	p, _ := fixture(t)
	p.Brokers[0].Poll()
	for metric, want := range map[string]string{
		"rabbitmq_queue_messages_ready":          "145",
		"rabbitmq_queue_messages_unacknowledged": "5",
		"rabbitmq_queue_publish_rate":            "20",
		"rabbitmq_queue_deliver_rate":            "9800m",
	} {
		got, err := get(t, p, metric, "queue=jobs")
		if err != nil {
			t.Fatal(err)
		}
		if v := got["broker=main,queue=jobs,vhost=osa-fixture"]; v != want || len(got) != 1 {
			t.Errorf("%s: %v, want %s", metric, got, want)
		}
	}
	all, err := get(t, p, "rabbitmq_queue_messages_ready", "")
	if err != nil || len(all) != 2 || all["broker=main,queue=fresh,vhost=osa-fixture"] != "0" {
		t.Errorf("empty selector: %v %v", all, err)
	}
	if got, err := get(t, p, "rabbitmq_queue_messages_ready", "vhost=osa-fixture,queue in (fresh)"); err != nil || len(got) != 1 {
		t.Errorf("vhost and set selector: %v %v", got, err)
	}
}

// However many HPAs ask, the broker is called once per queue per poll.
func TestManyReadersOneBrokerRequestPerQueuePerPoll(t *testing.T) {
	p, srv := fixture(t)
	p.Brokers[0].Poll()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			metric := MetricNames()[i%len(Metrics)]
			if _, err := p.GetExternalMetric(context.Background(), "ns", selector(t, "queue=jobs"), provider.ExternalMetricInfo{Metric: metric}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := srv.Requests(); got != 2 {
		t.Errorf("200 reads after one poll of 2 queues made %d broker requests, want 2", got)
	}
}

func TestUnavailableQueueIsAnErrorWithTheReason(t *testing.T) {
	p, srv := fixture(t)
	p.Brokers[0].Poll()
	srv.Close()
	p.Brokers[0].Poll()
	_, err := get(t, p, "rabbitmq_queue_messages_ready", "queue=jobs")
	var status *apierrors.StatusError
	if !errors.As(err, &status) || status.ErrStatus.Code != http.StatusServiceUnavailable ||
		!strings.Contains(err.Error(), "rabbitmq_queue_messages_ready{broker=main,queue=jobs,vhost=osa-fixture} unavailable: broker main unreachable") {
		t.Errorf("error %v", err)
	}
	// One unavailable queue makes a multi-queue answer fail as a whole.
	if got, err := get(t, p, "rabbitmq_queue_messages_ready", ""); err == nil {
		t.Errorf("partial answer %v", got)
	}
}

func TestSelectorsAndNames(t *testing.T) {
	p, _ := fixture(t)
	p.Brokers[0].Poll()
	_, err := get(t, p, "rabbitmq_queue_messages_ready", "queue=orders")
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `no configured queue matches selector "queue=orders"; configured: broker=main,queue=jobs,vhost=osa-fixture`) {
		t.Errorf("unknown queue: %v", err)
	}
	_, err = get(t, p, "rabbitmq_queue_length", "queue=jobs")
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "serves rabbitmq_queue_deliver_rate, rabbitmq_queue_messages_ready") {
		t.Errorf("unknown metric: %v", err)
	}
	if n := len(p.ListAllExternalMetrics()); n != 4 {
		t.Errorf("%d metrics listed", n)
	}
}

// A queue configured for some namespaces is served to their HPAs only, and not even named to
// others.
func TestQueueRestrictedToNamespaces(t *testing.T) {
	p, _ := fixture(t)
	p.Brokers[0].Config.Queues[0].Namespaces = []string{"shop", "billing"} // "jobs"
	p.Brokers[0].Poll()
	read := func(namespace string) (*external_metrics.ExternalMetricValueList, error) {
		return p.GetExternalMetric(context.Background(), namespace, selector(t, ""), provider.ExternalMetricInfo{Metric: "rabbitmq_queue_messages_ready"})
	}
	list, err := read("billing")
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("billing: %v %v, want jobs and fresh", list, err)
	}
	list, err = read("web")
	if err != nil || len(list.Items) != 1 || list.Items[0].MetricLabels["queue"] != "fresh" {
		t.Fatalf("web: %v %v, want fresh only", list, err)
	}
	_, err = p.GetExternalMetric(context.Background(), "web", selector(t, "queue=jobs"), provider.ExternalMetricInfo{Metric: "rabbitmq_queue_messages_ready"})
	if !apierrors.IsNotFound(err) || strings.Contains(err.Error(), "jobs,") || strings.Contains(err.Error(), "queue=jobs,") {
		t.Errorf("web asking for jobs: %v, want NotFound that does not list jobs", err)
	}
}
