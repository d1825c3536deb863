package framework

import (
	"bytes"
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
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "world", "helm.sh")
	var out, errOut bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// ChartDir is the product's Helm chart in this checkout.
func ChartDir() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "charts", "openstack-autoscaler")
}
