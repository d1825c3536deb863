package logging

import (
	"bytes"
	"encoding/json"
	"flag"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

// --logging-format=json makes every log line one JSON object (for log pipelines); a format that
// does not exist is refused, naming the flag.
func TestJSONFormat(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o := AddGoFlags(fs)
	if err := fs.Parse([]string{"--logging-format=yaml"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--logging-format") {
		t.Fatalf("--logging-format=yaml: %v, want an error naming the flag", err)
	}
	if err := fs.Parse([]string{"--logging-format=json", "-v=2"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := o.applyTo(&out); err != nil {
		t.Fatal(err)
	}
	klog.InfoS("counted", "pods", 3)
	klog.V(3).InfoS("not at -v=2")
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1:\n%s", len(lines), out.String())
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, lines[0])
	}
	if entry["msg"] != "counted" || entry["pods"] != float64(3) {
		t.Errorf("entry %v", entry)
	}
}
