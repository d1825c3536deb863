package rabbitmq_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq"
	"github.com/openstack-autoscaler/openstack-autoscaler/adapter/rabbitmq/rabbitmqtest"
)

var (
	jobs  = rabbitmq.QueueRef{Vhost: rabbitmqtest.Vhost, Name: "jobs"}
	fresh = rabbitmq.QueueRef{Vhost: rabbitmqtest.Vhost, Name: "fresh"}
)

// clock is a manual clock: no test here depends on wall-clock speed.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func broker(t *testing.T, url, password, ca string, queues ...rabbitmq.QueueRef) (*rabbitmq.Broker, *clock) {
	t.Helper()
	user, pass := rabbitmqtest.WriteCredentials(t, password)
	b, err := rabbitmq.NewBroker(rabbitmq.BrokerConfig{Name: "main", URL: url, UsernameFile: user, PasswordFile: pass, CAFile: ca,
		PollInterval: metav1.Duration{Duration: 10 * time.Second}, Timeout: metav1.Duration{Duration: 5 * time.Second}, Queues: queues})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	b.Now = c.now
	return b, c
}

func TestPollReadsRecordedResponses(t *testing.T) {
	srv := rabbitmqtest.Start(t, false)
	b, c := broker(t, srv.URL, rabbitmqtest.Password, "", jobs, fresh)
	b.Poll()
	r, err := b.Get(jobs)
	if err != nil {
		t.Fatal(err)
	}
	want := rabbitmq.Reading{Ready: 145, Unacknowledged: 5, PublishRate: 20, DeliverRate: 9.8, Time: c.t}
	if r.Ready != want.Ready || r.Unacknowledged != want.Unacknowledged || r.PublishRate != want.PublishRate ||
		r.DeliverRate < 9.79 || r.DeliverRate > 9.81 || !r.Time.Equal(want.Time) {
		t.Errorf("jobs: %+v, want %+v", r, want)
	}
	// A queue never used has no message_stats: rates are zero, not an error.
	if r, err := b.Get(fresh); err != nil || r != (rabbitmq.Reading{Time: c.t}) {
		t.Errorf("fresh: %+v %v", r, err)
	}
	srv.Answer("jobs", "queue-stalled.json")
	c.t = c.t.Add(10 * time.Second)
	b.Poll()
	if r, _ := b.Get(jobs); r.Ready != 193 || r.Unacknowledged != 5 || r.PublishRate != 0 || r.DeliverRate != 0 {
		t.Errorf("stalled: %+v", r)
	}
	if got := srv.Requests(); got != 4 {
		t.Errorf("%d requests for two polls of two queues, want 4", got)
	}
}

func TestUnreachableBrokerIsNeverServedStale(t *testing.T) {
	srv := rabbitmqtest.Start(t, false)
	b, c := broker(t, srv.URL, rabbitmqtest.Password, "", jobs, fresh)
	b.Poll()
	if _, err := b.Get(jobs); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	c.t = c.t.Add(10 * time.Second)
	b.Poll()
	for _, q := range []rabbitmq.QueueRef{jobs, fresh} {
		r, err := b.Get(q)
		if err == nil || !strings.Contains(err.Error(), "broker main unreachable") || !strings.Contains(err.Error(), "last good reading 10s ago, not served") {
			t.Errorf("%s after the broker went away: %+v, %v", q, r, err)
		}
		if r != (rabbitmq.Reading{}) {
			t.Errorf("%s: a value was returned with the error: %+v", q, r)
		}
	}
}

func TestStoppedPollingIsNotServed(t *testing.T) {
	srv := rabbitmqtest.Start(t, false)
	b, c := broker(t, srv.URL, rabbitmqtest.Password, "", jobs)
	if _, err := b.Get(jobs); err == nil || !strings.Contains(err.Error(), "not read yet") {
		t.Errorf("before the first poll: %v", err)
	}
	b.Poll()
	c.t = c.t.Add(b.MaxAge())
	if _, err := b.Get(jobs); err != nil {
		t.Errorf("at MaxAge: %v", err)
	}
	c.t = c.t.Add(time.Second)
	if _, err := b.Get(jobs); err == nil || !strings.Contains(err.Error(), "is 26s old (polls every 10s): polling stopped or is behind") {
		t.Errorf("past MaxAge: %v", err)
	}
}

func TestBrokerAnswersBecomeReasons(t *testing.T) {
	srv := rabbitmqtest.Start(t, false)
	other := rabbitmq.QueueRef{Vhost: "/", Name: "jobs"}
	missing := rabbitmq.QueueRef{Vhost: rabbitmqtest.Vhost, Name: "nope"}
	b, _ := broker(t, srv.URL, rabbitmqtest.Password, "", missing, other, jobs)
	b.Metrics = rabbitmq.NewMetrics(prometheus.NewRegistry())
	b.Poll()
	for result, want := range map[string]float64{"ok": 1, "not_found": 1, "refused": 1, "unreachable": 0} {
		if got := testutil.ToFloat64(b.Metrics.Requests.WithLabelValues("main", result)); got != want {
			t.Errorf("requests{result=%s} = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(b.Metrics.Unavailable.WithLabelValues("main")); got != 2 {
		t.Errorf("queues unavailable = %v, want 2", got)
	}
	if _, err := b.Get(missing); err == nil || err.Error() != `queue "nope" not found in vhost "osa-fixture" on broker main` {
		t.Errorf("missing queue: %v", err)
	}
	if _, err := b.Get(other); err == nil || !strings.Contains(err.Error(), `HTTP 401 for queue //jobs`) || !strings.Contains(err.Error(), `no access to vhost "/"`) {
		t.Errorf("vhost without access: %v", err)
	}
	// The broker answered: the other queues are still read in the same poll.
	if _, err := b.Get(jobs); err != nil {
		t.Errorf("jobs: %v", err)
	}

	bad, _ := broker(t, srv.URL, "wrong", "", jobs)
	bad.Poll()
	if _, err := bad.Get(jobs); err == nil || !strings.Contains(err.Error(), "refused the credentials in") {
		t.Errorf("wrong password: %v", err)
	}
}

func TestUnreachableBrokerCostsOneRequestPerPoll(t *testing.T) {
	srv := rabbitmqtest.Start(t, true)
	// Without the CA the TLS handshake fails: the broker is not reached, and the second queue
	// is not tried in the same poll.
	b, _ := broker(t, srv.URL, rabbitmqtest.Password, "", jobs, fresh)
	b.Poll()
	_, err := b.Get(fresh)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("fresh without the CA: %v", err)
	}
	if got := srv.Requests(); got != 0 {
		t.Errorf("%d requests reached the server through a failed handshake", got)
	}
}

func TestTLSWithCAFile(t *testing.T) {
	srv := rabbitmqtest.Start(t, true)
	b, _ := broker(t, srv.URL, rabbitmqtest.Password, srv.WriteCA(t), jobs)
	b.Poll()
	if r, err := b.Get(jobs); err != nil || r.Ready != 145 {
		t.Fatalf("over TLS with caFile: %+v %v", r, err)
	}
}

func TestCredentialsAreReadAtEveryPoll(t *testing.T) {
	srv := rabbitmqtest.Start(t, false)
	user, pass := rabbitmqtest.WriteCredentials(t, "old")
	b, err := rabbitmq.NewBroker(rabbitmq.BrokerConfig{Name: "main", URL: srv.URL, UsernameFile: user, PasswordFile: pass,
		PollInterval: metav1.Duration{Duration: 10 * time.Second}, Timeout: metav1.Duration{Duration: 5 * time.Second}, Queues: []rabbitmq.QueueRef{jobs}})
	if err != nil {
		t.Fatal(err)
	}
	b.Poll()
	if _, err := b.Get(jobs); err == nil {
		t.Fatal("old password accepted")
	}
	// The Secret is rotated (kubelet rewrites the mounted file).
	user2, pass2 := rabbitmqtest.WriteCredentials(t, rabbitmqtest.Password)
	b.Config.UsernameFile, b.Config.PasswordFile = user2, pass2
	b.Poll()
	if _, err := b.Get(jobs); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

// A queue whose statistics are not computed yet has no messages_ready: that is not a depth of
// 0 (an HPA would scale the consumers down), and a body that is not the API's JSON (a proxy's
// page) is a reason naming the broker and the queue; neither stops the broker's other queues.
func TestMissingStatisticsAndForeignBodiesAreReasons(t *testing.T) {
	srv := rabbitmqtest.Start(t, false)
	srv.Answer("nostats", "queue-nostats.json")
	srv.Answer("proxied", "proxy-login.html")
	nostats := rabbitmq.QueueRef{Vhost: rabbitmqtest.Vhost, Name: "nostats"}
	proxied := rabbitmq.QueueRef{Vhost: rabbitmqtest.Vhost, Name: "proxied"}
	b, _ := broker(t, srv.URL, rabbitmqtest.Password, "", proxied, nostats, jobs)
	b.Poll()
	if r, err := b.Get(nostats); err == nil || !strings.Contains(err.Error(), "messages_ready") {
		t.Errorf("queue without statistics: %+v, %v; want an error saying messages_ready is missing", r, err)
	}
	if _, err := b.Get(proxied); err == nil || !strings.Contains(err.Error(), "broker main") || !strings.Contains(err.Error(), "proxied") ||
		!strings.Contains(err.Error(), "not the management API's JSON") {
		t.Errorf("HTML answer: %v; want a reason naming the broker, the queue and the body", err)
	}
	if r, err := b.Get(jobs); err != nil || r.Ready != 145 {
		t.Errorf("jobs after the others failed: %+v, %v", r, err)
	}
}
