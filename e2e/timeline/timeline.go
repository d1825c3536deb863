// Package timeline records a few named series over time, prints them as a live table and draws
// them as an SVG chart, so a demo leaves a picture of what happened.
package timeline

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Recorder holds samples of named series.
type Recorder struct {
	Series  []string
	start   time.Time
	samples []sample
	events  []event
}

type sample struct {
	at     time.Duration
	values []float64
}

type event struct {
	at   time.Duration
	text string
}

// New starts a recorder for the named series.
func New(series ...string) *Recorder { return &Recorder{Series: series, start: time.Now()} }

// Add records one value per series (in the order given to New), now.
func (r *Recorder) Add(values ...float64) {
	r.samples = append(r.samples, sample{time.Since(r.start), values})
}

// Len is the number of samples taken.
func (r *Recorder) Len() int { return len(r.samples) }

// Event marks a moment (a step of the scenario) on the chart.
func (r *Recorder) Event(text string) { r.events = append(r.events, event{time.Since(r.start), text}) }

// Header is the table's header line.
func (r *Recorder) Header() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%7s", "t")
	for _, s := range r.Series {
		fmt.Fprintf(&b, " %*s", width(s), s)
	}
	return b.String()
}

// Row is the table line of the latest sample.
func (r *Recorder) Row() string {
	if len(r.samples) == 0 {
		return ""
	}
	last := r.samples[len(r.samples)-1]
	var b strings.Builder
	fmt.Fprintf(&b, "%6.0fs", last.at.Seconds())
	for i, s := range r.Series {
		fmt.Fprintf(&b, " %*s", width(s), format(last.values[i]))
	}
	return b.String()
}

func width(s string) int { return max(len(s), 6) }

func format(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// SVG draws every series against time on one value axis, with the events as vertical marks.
func (r *Recorder) SVG(w io.Writer, title string) error {
	const W, H, left, right, top, bottom = 960.0, 420.0, 50.0, 230.0, 40.0, 40.0
	plotW, plotH := W-left-right, H-top-bottom
	end := 1.0
	if n := len(r.samples); n > 0 {
		end = math.Max(r.samples[n-1].at.Seconds(), 1)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="22" font-size="15">%s</text>`+"\n", left, html.EscapeString(title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, top, plotW, plotH)
	peak := 1.0
	for _, s := range r.samples {
		for _, v := range s.values {
			if !math.IsNaN(v) {
				peak = math.Max(peak, v)
			}
		}
	}
	scale := math.Ceil(peak*1.05/5) * 5 // a round top, a little above the highest value
	for i := 0; i <= 5; i++ {
		x := left + plotW*float64(i)/5
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">%.0fs</text>`+"\n", x, H-bottom+16, end*float64(i)/5)
		y := top + plotH - plotH*float64(i)/5
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text><line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/>`+"\n",
			left-6, y+4, format(scale*float64(i)/5), left, y, left+plotW, y)
	}
	for _, e := range r.events {
		x := left + plotW*e.at.Seconds()/end
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#bbb" stroke-dasharray="4 3"/>`, x, top, x, top+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="10" transform="rotate(-90 %.1f %.0f)" fill="#666">%s</text>`+"\n",
			x+10, top+plotH-4, x+10, top+plotH-4, html.EscapeString(e.text))
	}
	for i, name := range r.Series {
		seriesPeak := 0.0
		for _, s := range r.samples {
			if !math.IsNaN(s.values[i]) {
				seriesPeak = math.Max(seriesPeak, s.values[i])
			}
		}
		color := palette[i%len(palette)]
		var pts []string
		for _, s := range r.samples {
			if math.IsNaN(s.values[i]) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", left+plotW*s.at.Seconds()/end, top+plotH-plotH*s.values[i]/scale))
		}
		// Earlier series are drawn wider, so a series hidden under a later one with the same
		// values still shows as an outline.
		strokeWidth := 2 + 2*float64(len(r.Series)-1-i)
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%.0f" stroke-opacity="0.85" points="%s"/>`+"\n", color, strokeWidth, strings.Join(pts, " "))
		ly := top + 10 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="3"/>`, W-right+15, ly, W-right+35, ly, color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s (max %s)</text>`+"\n", W-right+40, ly+4, html.EscapeString(name), format(seriesPeak))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
