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
	Series []string
	// Panels groups the series into charts of their own scale; empty: one chart of all.
	Panels  []Panel
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

// Panel is one chart of the figure: some of the series (by index), on their own value axis,
// with horizontal reference lines (an HPA's target).
type Panel struct {
	Title  string
	Series []int
	Lines  []Line
}

// Line is a horizontal reference line of a panel.
type Line struct {
	Value float64
	Label string
}

// SVG draws the panels (every series on one, when Panels is empty) stacked against one time
// axis. Events are numbered marks along the top, placed so that marks of close moments do not
// overlap, and listed in full under the chart.
func (r *Recorder) SVG(w io.Writer, title string) error {
	panels := r.Panels
	if len(panels) == 0 {
		all := Panel{}
		for i := range r.Series {
			all.Series = append(all.Series, i)
		}
		panels = []Panel{all}
	}
	const W, left, right, top, panelH, gap, markBand = 960.0, 50.0, 230.0, 36.0, 220.0, 36.0, 62.0
	plotW := W - left - right
	end := 1.0
	if n := len(r.samples); n > 0 {
		end = math.Max(r.samples[n-1].at.Seconds(), 1)
	}
	xOf := func(at time.Duration) float64 { return left + plotW*at.Seconds()/end }
	plotsTop := top + markBand
	plotsBottom := plotsTop + float64(len(panels))*(panelH+gap) - gap
	H := plotsBottom + 40 + 16*float64(len(r.events)) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="22" font-size="15">%s</text>`+"\n", left, html.EscapeString(title))

	// Event marks: a numbered circle per event along the top band, moved down a row when it
	// would touch the previous one; a dashed line through every panel.
	const radius = 8.0
	var lastX []float64 // per row, the last mark's x
	for n, e := range r.events {
		x := xOf(e.at)
		row := 0
		for ; row < len(lastX); row++ {
			if x-lastX[row] >= 2*radius+2 {
				break
			}
		}
		if row == len(lastX) {
			lastX = append(lastX, 0)
		}
		lastX[row] = x
		y := top + radius + float64(row%2)*(2*radius+4)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.0f" stroke="#bbb" stroke-dasharray="4 3"/>`, x, y+radius, x, plotsBottom)
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.0f" fill="white" stroke="#666"/><text x="%.1f" y="%.1f" font-size="10" text-anchor="middle" fill="#333">%d</text>`+"\n",
			x, y, radius, x, y+3.5, n+1)
	}

	for pi, p := range panels {
		ptop := plotsTop + float64(pi)*(panelH+gap)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="13" font-weight="bold">%s</text>`+"\n", left, ptop-6, html.EscapeString(p.Title))
		peak := 1.0
		for _, s := range r.samples {
			for _, i := range p.Series {
				if v := s.values[i]; !math.IsNaN(v) {
					peak = math.Max(peak, v)
				}
			}
		}
		for _, l := range p.Lines {
			peak = math.Max(peak, l.Value)
		}
		// A round step (1, 2, 2.5 or 5 times a power of ten) and a top a little above the peak.
		step := niceStep(peak * 1.05 / 5)
		ticks := math.Ceil(peak * 1.05 / step)
		scale := ticks * step
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999" data-panel="%d" data-top="%s"/>`+"\n",
			left, ptop, plotW, panelH, pi, format(scale))
		yOf := func(v float64) float64 { return ptop + panelH - panelH*v/scale }
		for i := 0.0; i <= ticks; i++ {
			y := yOf(i * step)
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text><line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/>`+"\n",
				left-6, y+4, format(i*step), left, y, left+plotW, y)
		}
		if pi == len(panels)-1 {
			for i := 0; i <= 5; i++ {
				fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">%.0fs</text>`+"\n", left+plotW*float64(i)/5, ptop+panelH+16, end*float64(i)/5)
			}
		}
		for _, l := range p.Lines {
			y := yOf(l.Value)
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#444" stroke-dasharray="8 4"/><text x="%.0f" y="%.1f" fill="#444">%s %s</text>`+"\n",
				left, y, left+plotW, y, W-right+15, y+4, html.EscapeString(l.Label), format(l.Value))
		}
		for k, i := range p.Series {
			seriesPeak := 0.0
			var pts []string
			for _, s := range r.samples {
				if v := s.values[i]; !math.IsNaN(v) {
					seriesPeak = math.Max(seriesPeak, v)
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(s.at), yOf(v)))
				}
			}
			color := palette[i%len(palette)]
			// Earlier series are drawn wider, so a series hidden under a later one with the
			// same values still shows as an outline.
			strokeWidth := 2 + 2*float64(len(p.Series)-1-k)
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%.0f" stroke-opacity="0.85" points="%s"/>`+"\n", color, strokeWidth, strings.Join(pts, " "))
			ly := ptop + 10 + float64(k)*20
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="3"/>`, W-right+15, ly, W-right+35, ly, color)
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s (max %s)</text>`+"\n", W-right+40, ly+4, html.EscapeString(r.Series[i]), format(seriesPeak))
		}
	}
	for n, e := range r.events {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#333">%d. %s (%.0fs)</text>`+"\n", left, plotsBottom+40+16*float64(n), n+1, html.EscapeString(e.text), e.at.Seconds())
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceStep is the smallest of 1, 2, 2.5 and 5 times a power of ten not below raw.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}
