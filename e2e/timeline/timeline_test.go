package timeline

import (
	"math"
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
