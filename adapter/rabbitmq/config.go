package rabbitmq

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Defaults of a broker's polling.
const (
	DefaultPollInterval = 10 * time.Second
	DefaultTimeout      = 5 * time.Second
)

// DefaultVhostLabel is the vhost label value of RabbitMQ's default virtual host "/", which is not
// a valid label value.
const DefaultVhostLabel = "default"

// Config is the file --rabbitmq-config names.
type Config struct {
	Brokers []BrokerConfig `json:"brokers"`
}

// BrokerConfig is one broker's management HTTP API and the queues exposed from it.
type BrokerConfig struct {
	// Name is the value of the metrics' broker label.
	Name string `json:"name"`
	// URL is the management HTTP API's base URL (http or https), without /api.
	URL string `json:"url"`
	// Credentials, read from files (a mounted Secret) at every poll, so a rotated Secret is used
	// without a restart.
	UsernameFile string `json:"usernameFile"`
	PasswordFile string `json:"passwordFile"`
	// CAFile verifies an https URL's certificate (default: the system's roots).
	CAFile       string          `json:"caFile,omitempty"`
	PollInterval metav1.Duration `json:"pollInterval,omitempty"`
	Timeout      metav1.Duration `json:"timeout,omitempty"`
	Queues       []QueueRef      `json:"queues"`
}

// QueueRef names a queue, and which namespaces' HPAs may read it.
type QueueRef struct {
	Vhost string `json:"vhost"`
	Name  string `json:"name"`
	// Namespaces, when set, are the only namespaces whose requests see the queue (in a cluster
	// shared by teams, each team's HPAs see their own queues); empty means every namespace.
	Namespaces []string `json:"namespaces,omitempty"`
}

// VisibleIn says whether requests from the namespace see the queue.
func (q QueueRef) VisibleIn(namespace string) bool {
	if len(q.Namespaces) == 0 {
		return true
	}
	for _, n := range q.Namespaces {
		if n == namespace {
			return true
		}
	}
	return false
}

// VhostLabel is the value of the vhost label: the vhost's name, or "default" for "/".
func (q QueueRef) VhostLabel() string {
	if q.Vhost == "/" {
		return DefaultVhostLabel
	}
	return q.Vhost
}

func (q QueueRef) String() string { return q.Vhost + "/" + q.Name }

// Load reads, parses and validates a configuration file, and checks that the files it names
// can be read.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--rabbitmq-config: %w", err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--rabbitmq-config %s: %w", path, err)
	}
	for i, b := range c.Brokers {
		for _, f := range []struct{ field, path string }{{"usernameFile", b.UsernameFile}, {"passwordFile", b.PasswordFile}, {"caFile", b.CAFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.ReadFile(f.path); err != nil {
				return nil, fmt.Errorf("--rabbitmq-config %s: brokers[%d].%s: %w (mount the Secret holding it there, or fix the path)", path, i, f.field, err)
			}
		}
	}
	return c, nil
}

// Parse parses a configuration strictly (unknown fields are errors), applies the defaults and
// validates it; errors name the field and the fix.
func Parse(raw []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		return nil, fmt.Errorf("%w (fields: brokers[].name, url, usernameFile, passwordFile, caFile, pollInterval, timeout, queues[].vhost, queues[].name)", err)
	}
	if len(c.Brokers) == 0 {
		return nil, errors.New("brokers: empty; list at least one broker with its queues")
	}
	names := map[string]bool{}
	for i := range c.Brokers {
		b := &c.Brokers[i]
		if b.PollInterval.Duration == 0 {
			b.PollInterval.Duration = DefaultPollInterval
		}
		if b.Timeout.Duration == 0 {
			b.Timeout.Duration = DefaultTimeout
		}
		if err := b.validate(); err != nil {
			return nil, fmt.Errorf("brokers[%d]: %w", i, err)
		}
		if names[b.Name] {
			return nil, fmt.Errorf("brokers[%d].name %q: used twice; give every broker its own name", i, b.Name)
		}
		names[b.Name] = true
	}
	return &c, nil
}

func (b *BrokerConfig) validate() error {
	if b.Name == "" {
		return errors.New("name: missing; set the broker label's value, e.g. name: main")
	}
	if errs := validation.IsValidLabelValue(b.Name); len(errs) > 0 {
		return fmt.Errorf("name %q: not a label value (%s)", b.Name, strings.Join(errs, "; "))
	}
	u, err := url.Parse(b.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: write the management API's base URL, e.g. https://rabbitmq.example:15671", b.URL)
	}
	if strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/api") {
		return fmt.Errorf("url %q: leave out the /api suffix (the client adds it)", b.URL)
	}
	b.URL = strings.TrimSuffix(b.URL, "/")
	if b.UsernameFile == "" || b.PasswordFile == "" {
		return errors.New("usernameFile and passwordFile: both are required; point them at the files of a mounted Secret")
	}
	if b.CAFile != "" && u.Scheme != "https" {
		return fmt.Errorf("caFile: set, but url %q is not https; use https or drop caFile", b.URL)
	}
	if b.PollInterval.Duration < time.Second {
		return fmt.Errorf("pollInterval %s: use 1s or more", b.PollInterval.Duration)
	}
	if b.Timeout.Duration <= 0 || b.Timeout.Duration > b.PollInterval.Duration {
		return fmt.Errorf("timeout %s: must be positive and at most pollInterval (%s)", b.Timeout.Duration, b.PollInterval.Duration)
	}
	if len(b.Queues) == 0 {
		return errors.New("queues: empty; list the queues to expose, e.g. - {vhost: /, name: jobs}")
	}
	seen := map[string]int{}
	for j, q := range b.Queues {
		if q.Vhost == "" || q.Name == "" {
			return fmt.Errorf("queues[%d]: vhost and name are both required (the default vhost is written /)", j)
		}
		if errs := validation.IsValidLabelValue(q.VhostLabel()); len(errs) > 0 {
			return fmt.Errorf("queues[%d].vhost %q: cannot be a metric label value (%s); only / and label-safe vhost names can be exposed", j, q.Vhost, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(q.Name); len(errs) > 0 {
			return fmt.Errorf("queues[%d].name %q: cannot be a metric label value (%s); only label-safe queue names can be exposed", j, q.Name, strings.Join(errs, "; "))
		}
		for k, n := range q.Namespaces {
			if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
				return fmt.Errorf("queues[%d].namespaces[%d] %q: not a namespace name (%s)", j, k, n, strings.Join(errs, "; "))
			}
		}
		key := q.VhostLabel() + "\x00" + q.Name
		if k, dup := seen[key]; dup {
			return fmt.Errorf("queues[%d] (%s): same labels (vhost=%s, queue=%s) as queues[%d]; list each queue once", j, q, q.VhostLabel(), q.Name, k)
		}
		seen[key] = j
	}
	return nil
}
