// Package rabbitmq reads the configured queues of RabbitMQ brokers through their management HTTP
// API (github.com/michaelklishin/rabbit-hole) and keeps the newest reading of each queue: one
// request per queue per poll interval, however many readers ask. A queue whose last read failed,
// or whose reading is older than the broker's polling allows, has no value but an error saying
// why: a stale number is never handed out as fresh.
package rabbitmq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"
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

	client *rabbithole.Client
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
	client, err := rabbithole.NewTLSClient(c.URL, "", "", transport)
	if err != nil {
		return nil, fmt.Errorf("broker %s: url: %w", c.Name, err)
	}
	client.SetTimeout(c.Timeout.Duration)
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
	if user, pass, err := b.credentials(); err != nil {
		unreachable = err
	} else {
		b.client.Username, b.client.Password = user, pass
	}
	for _, q := range b.Config.Queues {
		if unreachable != nil {
			failed++
			b.set(q, Reading{}, unreachable)
			continue
		}
		info, err := b.client.GetQueueWithParameters(q.Vhost, q.Name, columns)
		if err != nil {
			reason, result := b.reason(q, err)
			if result == "unreachable" {
				unreachable = reason
			}
			b.count(result)
			failed++
			b.set(q, Reading{}, reason)
			continue
		}
		b.count("ok")
		r := Reading{Ready: float64(info.MessagesReady), Unacknowledged: float64(info.MessagesUnacknowledged), Time: b.Now()}
		if s := info.MessageStats; s != nil {
			r.PublishRate, r.DeliverRate = float64(s.PublishDetails.Rate), float64(s.DeliverGetDetails.Rate)
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

// reason turns a client error into one an operator can act on, and classifies it: not_found,
// refused (the broker answered with another error) or unreachable (it did not answer).
func (b *Broker) reason(q QueueRef, err error) (error, string) {
	var api rabbithole.ErrorResponse
	switch {
	case errors.As(err, &api) && api.StatusCode == http.StatusNotFound:
		return fmt.Errorf("queue %q not found in vhost %q on broker %s", q.Name, q.Vhost, b.Config.Name), "not_found"
	case errors.As(err, &api):
		return fmt.Errorf("broker %s answered HTTP %d for queue %s: %s: %s", b.Config.Name, api.StatusCode, q, api.Message, api.Reason), "refused"
	case strings.Contains(err.Error(), "401 Unauthorized"):
		// rabbit-hole reports 401 as a plain error; RabbitMQ answers 401 for both a failed login
		// and a user without access to the vhost.
		return fmt.Errorf("broker %s answered HTTP 401 for queue %s: it refused the credentials in %s and %s, or the user has no access to vhost %q",
			b.Config.Name, q, b.Config.UsernameFile, b.Config.PasswordFile, q.Vhost), "refused"
	default:
		var u *url.Error
		if errors.As(err, &u) { // the URL is the configured one: say only what went wrong
			err = u.Err
		}
		return fmt.Errorf("broker %s unreachable: %w", b.Config.Name, err), "unreachable"
	}
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
