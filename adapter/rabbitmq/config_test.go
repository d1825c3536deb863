package rabbitmq

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`
brokers:
- name: main
  url: https://rabbitmq.example:15671/
  usernameFile: /etc/openstack-autoscaler/rabbitmq/username
  passwordFile: /etc/openstack-autoscaler/rabbitmq/password
  caFile: /etc/openstack-autoscaler/rabbitmq-ca/ca.crt
  queues:
  - {vhost: /, name: jobs}
  - {vhost: orders, name: orders.created, namespaces: [shop, billing]}
- name: edge
  url: http://127.0.0.1:15672
  usernameFile: /u
  passwordFile: /p
  pollInterval: 30s
  timeout: 2s
  queues: [{vhost: /, name: jobs}]
`))
	if err != nil {
		t.Fatal(err)
	}
	main, edge := c.Brokers[0], c.Brokers[1]
	if main.URL != "https://rabbitmq.example:15671" || main.PollInterval.Duration != DefaultPollInterval || main.Timeout.Duration != DefaultTimeout {
		t.Errorf("main: %+v", main)
	}
	if edge.PollInterval.Duration != 30*time.Second || edge.Timeout.Duration != 2*time.Second {
		t.Errorf("edge: %+v", edge)
	}
	if got := main.Queues[0].VhostLabel(); got != "default" {
		t.Errorf("vhost label of /: %q", got)
	}
	if q := main.Queues[1]; !q.VisibleIn("shop") || q.VisibleIn("web") || !main.Queues[0].VisibleIn("web") {
		t.Errorf("namespaces: %+v", main.Queues)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	const ok = "  usernameFile: /u\n  passwordFile: /p\n"
	for _, tc := range []struct{ yaml, want string }{
		{"brokers: []", "brokers: empty"},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: [{vhost: /, name: jobs}]\n  poll: 5s", `unknown field "poll"`},
		{"brokers:\n- url: http://r:15672\n" + ok + "  queues: [{vhost: /, name: jobs}]", "brokers[0]: name: missing"},
		{"brokers:\n- name: main\n  url: amqp://r:5672\n" + ok + "  queues: [{vhost: /, name: jobs}]", `brokers[0]: url "amqp://r:5672"`},
		{"brokers:\n- name: main\n  url: http://r:15672/api\n" + ok + "  queues: [{vhost: /, name: jobs}]", "leave out the /api suffix"},
		{"brokers:\n- name: main\n  url: http://r:15672\n  usernameFile: /u\n  queues: [{vhost: /, name: jobs}]", "usernameFile and passwordFile"},
		{"brokers:\n- name: main\n  url: http://r:15672\n  caFile: /ca\n" + ok + "  queues: [{vhost: /, name: jobs}]", "caFile: set, but url"},
		{"brokers:\n- name: main\n  url: http://r:15672\n  pollInterval: 100ms\n" + ok + "  queues: [{vhost: /, name: jobs}]", "pollInterval 100ms"},
		{"brokers:\n- name: main\n  url: http://r:15672\n  timeout: 20s\n" + ok + "  queues: [{vhost: /, name: jobs}]", "timeout 20s: must be positive and at most pollInterval"},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: []", "brokers[0]: queues: empty"},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: [{name: jobs}]", "queues[0]: vhost and name are both required"},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: [{vhost: /, name: 'orders:created'}]", `queues[0].name "orders:created": cannot be a metric label value`},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: [{vhost: a/b, name: jobs}]", `queues[0].vhost "a/b"`},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: [{vhost: /, name: jobs, namespaces: [Shop]}]", `queues[0].namespaces[0] "Shop": not a namespace name`},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: [{vhost: /, name: jobs}, {vhost: default, name: jobs}]", "queues[1] (default/jobs): same labels"},
		{"brokers:\n- name: main\n  url: http://r:15672\n" + ok + "  queues: [{vhost: /, name: jobs}]\n- name: main\n  url: http://s:15672\n" + ok + "  queues: [{vhost: /, name: jobs}]", `brokers[1].name "main": used twice`},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n  error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

func TestLoadChecksTheFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user := write("username", "u\n")
	cfg := write("config.yaml", "brokers:\n- name: main\n  url: http://127.0.0.1:15672\n  usernameFile: "+user+
		"\n  passwordFile: "+filepath.Join(dir, "nope")+"\n  queues: [{vhost: /, name: jobs}]\n")
	_, err := Load(cfg)
	if err == nil || !strings.Contains(err.Error(), "brokers[0].passwordFile") || !strings.Contains(err.Error(), "mount the Secret") {
		t.Fatalf("error %v, want one naming brokers[0].passwordFile", err)
	}
	if _, err := Load(filepath.Join(dir, "absent.yaml")); err == nil || !strings.Contains(err.Error(), "--rabbitmq-config") {
		t.Fatalf("error %v, want one naming --rabbitmq-config", err)
	}
}
