// Package framework connects end-to-end tests to the running local world (see e2e/world): the
// Kubernetes cluster, the OpenStack clouds and the world's paths, read from $OSA_STATE/world.env.
package framework

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
)

// World is the running local world.
type World struct {
	Env        map[string]string
	Cluster    string
	RestConfig *rest.Config
	Kube       kubernetes.Interface
	// Project is the "world" cloud: the autoscaler's project, through its application credential.
	Project *openstack.Clients
	// Operator is the "world-operator" cloud: the project's user by password, as an operator
	// creating node group stacks.
	Operator *openstack.Clients
	// Admin is the "world-admin" cloud.
	Admin *openstack.Clients
	Seed  Seed
}

// Seed is what the world created in OpenStack (openstack/seed.json).
type Seed struct {
	ProjectID string            `json:"project_id"`
	ImageID   string            `json:"image_id"`
	Flavors   map[string]string `json:"flavors"`
}

// EnvFile is where world.sh writes the world's environment.
func EnvFile() string {
	state := os.Getenv("OSA_STATE")
	if state == "" {
		state = "/var/tmp/openstack-autoscaler"
	}
	return filepath.Join(state, "world.env")
}

// Connect connects a test to the world; the test fails if the world is not up.
func Connect(t testing.TB) *World {
	t.Helper()
	w, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Open reads world.env and connects to both peers.
func Open() (*World, error) {
	env, err := readEnv(EnvFile())
	if err != nil {
		return nil, fmt.Errorf("the local world is not up (%v): run `make e2e` or `e2e/world/world.sh up`", err)
	}
	w := &World{Env: env, Cluster: env["OSA_WORLD_CLUSTER"]}
	if w.RestConfig, err = clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"]); err != nil {
		return nil, err
	}
	w.RestConfig.QPS, w.RestConfig.Burst = 50, 100
	w.Kube = kubernetes.NewForConfigOrDie(w.RestConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clouds := env["OS_CLIENT_CONFIG_FILE"]
	if w.Project, err = openstack.Connect(ctx, openstack.CloudRef{CloudsFile: clouds, Cloud: "world"}, nil); err != nil {
		return nil, err
	}
	if w.Admin, err = openstack.Connect(ctx, openstack.CloudRef{CloudsFile: clouds, Cloud: "world-admin"}, nil); err != nil {
		return nil, err
	}
	if w.Operator, err = openstack.Connect(ctx, openstack.CloudRef{CloudsFile: clouds, Cloud: "world-operator"}, nil); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(env["OSA_WORLD_SEED"])
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &w.Seed); err != nil {
		return nil, fmt.Errorf("%s: %w", env["OSA_WORLD_SEED"], err)
	}
	return w, nil
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "export ")
		if !ok {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env, s.Err()
}

// SetNodeGroups writes the node group declarations the registrar reads (the provider's config
// format) and restores the previous file when the test ends.
func (w *World) SetNodeGroups(t testing.TB, yaml string) {
	t.Helper()
	path := w.Env["OSA_WORLD_NODE_GROUPS"]
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(path, old, 0o644) })
}

// Eventually polls cond every interval until it returns true or timeout passes; it returns how
// long that took, and fails the test with the last error on timeout.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	var lastErr error
	for time.Since(start) < timeout {
		ok, err := cond()
		if ok {
			return time.Since(start)
		}
		lastErr = err
		time.Sleep(interval)
	}
	t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
	return 0
}

// GroupServers lists the servers of a node group in the autoscaler's project, straight from Nova.
func (w *World) GroupServers(ctx context.Context, group string) ([]servers.Server, error) {
	pages, err := servers.List(w.Project.Compute, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, err
	}
	var out []servers.Server
	for _, s := range all {
		if g, ok := membership.Of(s.Metadata, w.Cluster); ok && g == group {
			out = append(out, s)
		}
	}
	return out, nil
}
