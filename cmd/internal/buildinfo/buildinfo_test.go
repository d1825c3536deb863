package buildinfo

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/spf13/pflag"
)

// buildInfo is the label set of openstack_autoscaler_build_info, as the binaries register it.
func buildInfo(t *testing.T) map[string]string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("openstack_autoscaler"))
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || families[0].GetName() != "openstack_autoscaler_build_info" {
		t.Fatalf("gathered %v, %v", families, err)
	}
	labels := map[string]string{}
	for _, l := range families[0].GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	return labels
}

func TestVersionFlagPrintsWhatBuildInfoSays(t *testing.T) {
	defer func(v string) { version.Version = v }(version.Version)
	version.Version = "1.2.3-test" // what -ldflags -X sets in the images
	labels := buildInfo(t)
	if labels["version"] != "1.2.3-test" {
		t.Fatalf("build_info's version is %q, not the one set", labels["version"])
	}
	want := "connection-agent, version " + labels["version"] + " (branch: " + labels["branch"] + ", revision: " + labels["revision"] + ")"

	goFlags := flag.NewFlagSet("connection-agent", flag.ContinueOnError)
	v1 := AddGoFlag(goFlags, "connection-agent")
	pFlags := pflag.NewFlagSet("connection-agent", pflag.ContinueOnError)
	v2 := AddFlag(pFlags, "connection-agent")
	for name, c := range map[string]struct {
		parse func([]string) error
		v     *VersionFlag
	}{"flag": {goFlags.Parse, v1}, "pflag": {pFlags.Parse, v2}} {
		var out bytes.Buffer
		if err := c.parse(nil); err != nil || c.v.printTo(&out) || out.Len() > 0 {
			t.Errorf("%s, no --version: %v, printed %q", name, err, out.String())
		}
		if err := c.parse([]string{"--version"}); err != nil || !c.v.printTo(&out) {
			t.Fatalf("%s --version: %v, not taken", name, err)
		}
		if first, _, _ := strings.Cut(out.String(), "\n"); first != want {
			t.Errorf("%s --version printed %q, want %q", name, first, want)
		}
	}
}

func TestExitIfSetExitsZero(t *testing.T) {
	if os.Getenv("BUILDINFO_TEST_EXIT") == "1" {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		v := AddGoFlag(fs, "x")
		_ = fs.Parse([]string{"--version"})
		v.ExitIfSet()
		t.Fatal("ExitIfSet returned after --version")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExitIfSetExitsZero$")
	cmd.Env = append(os.Environ(), "BUILDINFO_TEST_EXIT=1")
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "x, version ") {
		t.Fatalf("exit %v, stdout %q", err, out)
	}
}
