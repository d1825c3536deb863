package framework

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"
)

// The world's RabbitMQ (e2e/world/openstack.sh): AMQP and the management HTTP API, on loopback.
const (
	RabbitMQManagementURL = "http://127.0.0.1:15672"
	// RabbitMQManagementTLSURL is the same API over TLS; its certificate is signed by the CA in
	// world.env's OSA_WORLD_RABBITMQ_CA.
	RabbitMQManagementTLSURL = "https://127.0.0.1:15671"
	RabbitMQAMQPAddr         = "127.0.0.1:5672"
)

// RabbitMQ is a vhost and a user of a test's own on the world's broker.
type RabbitMQ struct {
	Admin          *rabbithole.Client // the broker's administrator (guest, loopback only)
	Vhost          string
	User, Password string
}

// NewRabbitMQ creates vhost name and user name (tag monitoring, full permissions on the vhost,
// a random password) and deletes both, with the vhost's queues, when the test ends.
func NewRabbitMQ(t testing.TB, name string) *RabbitMQ {
	t.Helper()
	admin, err := rabbithole.NewClient(RabbitMQManagementURL, "guest", "guest")
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 12)
	_, _ = rand.Read(secret)
	r := &RabbitMQ{Admin: admin, Vhost: name, User: name, Password: hex.EncodeToString(secret)}
	cleanup := func() {
		_, _ = admin.DeleteVhost(name)
		_, _ = admin.DeleteUser(name)
	}
	cleanup() // what a killed run left behind
	t.Cleanup(cleanup)
	if _, err := admin.PutVhost(name, rabbithole.VhostSettings{}); err != nil {
		t.Fatalf("RabbitMQ management API at %s (is the world's management plugin on? e2e/world/world.sh up enables it): %v", RabbitMQManagementURL, err)
	}
	if _, err := admin.PutUser(name, rabbithole.UserSettings{Password: r.Password, Tags: rabbithole.UserTags{"monitoring"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdatePermissionsIn(name, name, rabbithole.Permissions{Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	return r
}

// AMQPURL is the URL an AMQP client of the vhost dials.
func (r *RabbitMQ) AMQPURL() string {
	return (&url.URL{Scheme: "amqp", User: url.UserPassword(r.User, r.Password), Host: RabbitMQAMQPAddr, Path: "/" + r.Vhost}).String()
}

// WriteCredentials writes the user's name and password into dir, as a mounted Secret holds them,
// and returns the two paths.
func (r *RabbitMQ) WriteCredentials(dir string) (string, string, error) {
	u, p := filepath.Join(dir, "username"), filepath.Join(dir, "password")
	if err := os.WriteFile(u, []byte(r.User), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(p, []byte(r.Password), 0o600); err != nil {
		return "", "", err
	}
	return u, p, nil
}

// QueueDepth is a queue's messages_ready as the broker reports it.
func (r *RabbitMQ) QueueDepth(queue string) (int, error) {
	q, err := r.Admin.GetQueue(r.Vhost, queue)
	if err != nil {
		return 0, fmt.Errorf("queue %s/%s: %w", r.Vhost, queue, err)
	}
	return q.MessagesReady, nil
}
