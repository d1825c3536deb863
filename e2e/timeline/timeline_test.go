package timeline

import (
	"math"
	"regexp"
	"strings"
	"testing"
)

func TestTableAndSVG(t *testing.T) {
	r := New("servers", "connections/pod")
	r.Add(0, math.NaN())
	r.Event("load <start>")
	r.Add(3, 12.5)
	if h := r.Header(); !strings.Contains(h, "servers") || !strings.Contains(h, "connections/pod") {
		t.Errorf("header = %q", h)
	}
	if row := r.Row(); !strings.Contains(row, " 3") || !strings.Contains(row, "12.5") {
		t.Errorf("row = %q", row)
	}
	var b strings.Builder
	if err := r.SVG(&b, "demo & test"); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	for _, want := range []string{"<svg", "demo &amp; test", "load &lt;start&gt;", "servers (max 3)", "connections/pod (max 12.5)", "<polyline"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	if strings.Count(svg, "<polyline") != 2 {
		t.Errorf("want one line per series")
	}
}

// Series of different scales get panels of their own (connections per pod, 0–30, with the HPA's
// target as a line; counts, 0–6, on another), and events that happen close together keep
// readable labels: numbered marks, listed in full under the chart, never drawn on each other.
func TestPanelsTargetLineAndEventLabels(t *testing.T) {
	r := New("servers", "connections/pod", "replicas")
	r.Panels = []Panel{
		{Title: "connections per pod", Series: []int{1}, Lines: []Line{{Value: 10, Label: "HPA target"}}},
		{Title: "servers and replicas", Series: []int{0, 2}},
	}
	r.Add(0, 0, 1)
	r.Event("deploy web")
	r.Event("HPA created") // at the same moment
	r.Add(2, 30, 3)
	r.Event("load ends")
	r.Add(1, 0, 1)
	var b strings.Builder
	if err := r.SVG(&b, "demo"); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	for _, want := range []string{"connections per pod", "servers and replicas", "HPA target 10", "1. deploy web", "2. HPA created", "3. load ends"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	// Each panel has its own axis: the counts' top is not the connections' 30.
	if !strings.Contains(svg, `data-panel="0" data-top="40"`) || !strings.Contains(svg, `data-panel="1" data-top="4"`) {
		t.Errorf("panel axes: want tops 40 and 4:\n%s", svg)
	}
	// The two marks at the same moment are not drawn on each other.
	marks := regexp.MustCompile(`<circle cx="([0-9.]+)" cy="([0-9.]+)"`).FindAllStringSubmatch(svg, -1)
	if len(marks) != 3 {
		t.Fatalf("%d event marks, want 3", len(marks))
	}
	if marks[0][1] == marks[1][1] && marks[0][2] == marks[1][2] {
		t.Errorf("events 1 and 2 drawn at the same place %v", marks[:2])
	}
}
