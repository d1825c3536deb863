package framework

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// HelmBinary builds helm from its Go module once (e2e/world/helm.sh, cached under
// ~/.cache/openstack-autoscaler/helm-<version>/) and returns its path.
func HelmBinary(t testing.TB) string {
	t.Helper()
	path, err := HelmPath()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// HelmPath is HelmBinary outside a test.
func HelmPath() (string, error) {
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "world", "helm.sh")
	var out, errOut bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v\n%s", script, err, errOut.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// Helm runs helm with the world's kubeconfig and returns what it printed.
func (w *World) Helm(helm string, args ...string) (string, error) {
	cmd := exec.Command(helm, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.Env["KUBECONFIG"])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ChartDir is the product's Helm chart in this checkout.
func ChartDir() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "charts", "openstack-autoscaler")
}
