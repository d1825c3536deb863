// Package rabbitmq reads the configured queues of RabbitMQ brokers through their management HTTP
// API (GET /api/queues/{vhost}/{name}) and keeps the newest reading of each queue: one
// request per queue per poll interval, however many readers ask. A queue whose last read failed,
// or whose reading is older than the broker's polling allows, has no value but an error saying
// why: a stale number is never handed out as fresh.
package rabbitmq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Reading is one queue's values at one poll.
type Reading struct {
	Ready, Unacknowledged    float64 // messages
	PublishRate, DeliverRate float64 // messages per second (deliver: to consumers and basic.get)
	Time                     time.Time
}

// columns asks the management API for just the fields read.
var columns = url.Values{"columns": {strings.Join([]string{"name", "vhost", "messages_ready", "messages_unacknowledged",
	"message_stats.publish_details.rate", "message_stats.deliver_get_details.rate"}, ",")}}

type state struct {
	last Reading // newest successful reading
	err  error   // why the newest poll failed (nil: last is the newest poll's)
}

// Broker polls one broker's configured queues.
type Broker struct {
	Config  BrokerConfig
	Now     func() time.Time
	Metrics *Metrics // optional

	client *http.Client
	mu     sync.RWMutex
	queues map[string]*state // by QueueRef.String()
}

// NewBroker builds a broker's client (TLS with the configured CA) from a validated configuration.
func NewBroker(c BrokerConfig) (*Broker, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker %s: caFile: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker %s: caFile %s: no PEM certificate in it", c.Name, c.CAFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if _, err := url.Parse(c.URL); err != nil {
		return nil, fmt.Errorf("broker %s: url: %w", c.Name, err)
	}
	client := &http.Client{Transport: transport, Timeout: c.Timeout.Duration}
	b := &Broker{Config: c, Now: time.Now, client: client, queues: map[string]*state{}}
	for _, q := range c.Queues {
		b.queues[q.String()] = &state{err: errors.New("not read yet")}
	}
	return b, nil
}

// MaxAge is how old a reading may be and still be served: two poll intervals and a timeout
// (one missed poll is tolerated; a stuck poller is not).
func (b *Broker) MaxAge() time.Duration {
	return 2*b.Config.PollInterval.Duration + b.Config.Timeout.Duration
}

// Run polls at once and then every poll interval until ctx ends.
func (b *Broker) Run(ctx context.Context) {
	t := time.NewTicker(b.Config.PollInterval.Duration)
	defer t.Stop()
	for {
		b.Poll()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll reads every configured queue once. After a failure to reach the broker at all, the
// remaining queues are not tried in this round (they get the same reason): an unreachable
// broker costs one timeout per poll, not one per queue.
func (b *Broker) Poll() {
	var unreachable error
	failed := 0
	user, pass, err := b.credentials()
	if err != nil {
		unreachable = err
	}
	for _, q := range b.Config.Queues {
		if unreachable != nil {
			failed++
			b.set(q, Reading{}, unreachable)
			continue
		}
		r, result, err := b.read(q, user, pass)
		b.count(result)
		if err != nil {
			if result == "unreachable" {
				unreachable = err
			}
			failed++
			b.set(q, Reading{}, err)
			continue
		}
		b.set(q, r, nil)
	}
	if b.Metrics != nil {
		b.Metrics.Unavailable.WithLabelValues(b.Config.Name).Set(float64(failed))
	}
}

func (b *Broker) count(result string) {
	if b.Metrics != nil {
		b.Metrics.Requests.WithLabelValues(b.Config.Name, result).Inc()
	}
}

// queueAnswer is what the management API says of a queue (the columns asked for). The counts are
// pointers: a queue whose statistics are not computed yet (just declared, or the broker's
// metrics collector off) has none, which is not a depth of 0. rabbit-hole's types cannot tell
// the two apart, so the queue is read with a plain GET.
type queueAnswer struct {
	MessagesReady          *float64 `json:"messages_ready"`
	MessagesUnacknowledged *float64 `json:"messages_unacknowledged"`
	MessageStats           *struct {
		PublishDetails    struct{ Rate float64 } `json:"publish_details"`
		DeliverGetDetails struct{ Rate float64 } `json:"deliver_get_details"`
	} `json:"message_stats"`
}

// read polls one queue. The result classifies the outcome for metrics and for the poll: ok,
// not_found, refused (the broker answered with an error), malformed (an answer that is not
// the API's JSON, or without the counts), unreachable (no answer: the poll's other queues are
// not tried).
func (b *Broker) read(q QueueRef, user, pass string) (Reading, string, error) {
	u := strings.TrimRight(b.Config.URL, "/") + "/api/queues/" + url.PathEscape(q.Vhost) + "/" + url.PathEscape(q.Name) + "?" + columns.Encode()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return Reading{}, "unreachable", fmt.Errorf("broker %s: %w", b.Config.Name, err)
	}
	req.SetBasicAuth(user, pass)
	resp, err := b.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // the URL is the configured one: say only what went wrong
			err = ue.Err
		}
		return Reading{}, "unreachable", fmt.Errorf("broker %s unreachable: %w", b.Config.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Reading{}, "unreachable", fmt.Errorf("broker %s unreachable: reading its answer for queue %s: %w", b.Config.Name, q, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return Reading{}, "not_found", fmt.Errorf("queue %q not found in vhost %q on broker %s", q.Name, q.Vhost, b.Config.Name)
	case resp.StatusCode == http.StatusUnauthorized:
		// RabbitMQ answers 401 for both a failed login and a user without access to the vhost.
		return Reading{}, "refused", fmt.Errorf("broker %s answered HTTP 401 for queue %s: it refused the credentials in %s and %s, or the user has no access to vhost %q",
			b.Config.Name, q, b.Config.UsernameFile, b.Config.PasswordFile, q.Vhost)
	case resp.StatusCode >= 300:
		var apiErr struct{ Error, Reason string }
		if json.Unmarshal(body, &apiErr) != nil || apiErr.Error == "" {
			return Reading{}, "refused", fmt.Errorf("broker %s answered HTTP %d for queue %s with a body that is not the management API's JSON (%s)",
				b.Config.Name, resp.StatusCode, q, excerpt(body))
		}
		return Reading{}, "refused", fmt.Errorf("broker %s answered HTTP %d for queue %s: %s: %s", b.Config.Name, resp.StatusCode, q, apiErr.Error, apiErr.Reason)
	}
	var a queueAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return Reading{}, "malformed", fmt.Errorf("broker %s answered queue %s with a body that is not the management API's JSON (%s): is the url the management API's, not a proxy's page?",
			b.Config.Name, q, excerpt(body))
	}
	if a.MessagesReady == nil || a.MessagesUnacknowledged == nil {
		return Reading{}, "malformed", fmt.Errorf("broker %s has no statistics for queue %s yet (no messages_ready in its answer): not served as a depth of 0",
			b.Config.Name, q)
	}
	r := Reading{Ready: *a.MessagesReady, Unacknowledged: *a.MessagesUnacknowledged, Time: b.Now()}
	if s := a.MessageStats; s != nil {
		r.PublishRate, r.DeliverRate = s.PublishDetails.Rate, s.DeliverGetDetails.Rate
	}
	return r, "ok", nil
}

// excerpt is the start of a body, on one line, for error messages.
func excerpt(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}

func (b *Broker) credentials() (string, string, error) {
	var out [2]string
	for i, f := range []string{b.Config.UsernameFile, b.Config.PasswordFile} {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", "", fmt.Errorf("broker %s: credentials: %w", b.Config.Name, err)
		}
		out[i] = strings.TrimRight(string(raw), "\r\n")
	}
	return out[0], out[1], nil
}

func (b *Broker) set(q QueueRef, r Reading, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.queues[q.String()]
	if err != nil {
		if s.err == nil || s.err.Error() != err.Error() {
			klog.InfoS("rabbitmq queue unavailable", "broker", b.Config.Name, "vhost", q.Vhost, "queue", q.Name, "reason", err)
		}
		s.err = err
		return
	}
	s.last, s.err = r, nil
}

// Get returns a queue's newest reading, or why there is none: the newest poll failed, or the
// newest reading is older than MaxAge (the poller stopped or fell behind).
func (b *Broker) Get(q QueueRef) (Reading, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	s, ok := b.queues[q.String()]
	if !ok {
		return Reading{}, fmt.Errorf("queue %s is not configured for broker %s", q, b.Config.Name)
	}
	if s.err != nil {
		if s.last.Time.IsZero() {
			return Reading{}, s.err
		}
		return Reading{}, fmt.Errorf("%w (last good reading %s ago, not served)", s.err, b.Now().Sub(s.last.Time).Round(time.Second))
	}
	if age := b.Now().Sub(s.last.Time); age > b.MaxAge() {
		return Reading{}, fmt.Errorf("broker %s: reading of queue %s is %s old (polls every %s): polling stopped or is behind",
			b.Config.Name, q, age.Round(time.Second), b.Config.PollInterval.Duration)
	}
	return s.last, nil
}
