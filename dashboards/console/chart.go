package console

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"repeaterd/store"
)

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartBarW   = 11
	chartGap    = 2
	chartLeft   = 48
	chartTop    = 8
	chartPlotH  = 220
	chartBottom = chartTop + chartPlotH
)

// chart lays out the delivery-rate chart of minutes (the window ending with
// now's, oldest first) as stacked bars, one a minute.
func chart(minutes []minuteCounts, now time.Time) rateView {
	v := rateView{
		Width: chartLeft + rateMinutes*chartBarW + 8, Height: chartBottom + 20,
		PlotTop: chartTop, PlotBottom: chartBottom, PlotLeft: chartLeft,
	}
	for _, s := range chartStates {
		v.Legend = append(v.Legend, s.String())
	}
	var peak, ok int64
	totals := make([]int64, len(minutes))
	for i, m := range minutes {
		for j, n := range m {
			totals[i] += n
			if chartStates[j] == store.StateSuccess || chartStates[j] == store.StateEmpty {
				ok += n
			}
		}
		peak = max(peak, totals[i])
		v.Hour += totals[i]
	}
	if len(totals) >= 2 {
		v.LastMinute = totals[len(totals)-2]
	}
	if v.Hour > 0 {
		v.Success = strconv.FormatFloat(100*float64(ok)/float64(v.Hour), 'f', 1, 64) + "%"
	}
	v.YMax = niceCeil(peak)
	v.YMid = v.YMax / 2
	v.YMidY = chartBottom - int(int64(chartPlotH)*v.YMid/v.YMax)
	start := windowStart(now)
	for i, m := range minutes {
		v.Bars = append(v.Bars, chartBar(start.Add(time.Duration(i)*time.Minute), i, m, totals[i], v.YMax))
	}
	for _, ago := range []int{59, 45, 30, 15, 0} {
		text := "now"
		if ago > 0 {
			text = fmt.Sprintf("−%d min", ago)
		}
		v.XLabels = append(v.XLabels, axisLabel{X: chartLeft + (rateMinutes-1-ago)*chartBarW + chartBarW/2, Text: text})
	}
	return v
}

// chartBar is the i-th bar: minute's counts m stacked, on a scale of yMax.
func chartBar(minute time.Time, i int, m minuteCounts, total, yMax int64) rateBar {
	x := chartLeft + i*chartBarW + chartGap/2
	bar := rateBar{Minute: minute.UTC().Format(time.RFC3339), Total: total}
	title := []string{fmt.Sprintf("%s: %s %s", minute.Format("15:04"), formatCount(total), plural(total, "attempt", "attempts"))}
	y := chartBottom
	for j, n := range m {
		if n == 0 {
			continue
		}
		// Heights are rounded per segment's top edge, so stacks add up.
		top := chartBottom - int(int64(chartPlotH)*cumulative(m, j+1)/yMax)
		bar.Segs = append(bar.Segs, barSeg{
			State: chartStates[j].String(), Count: n, X: x, Y: top, W: chartBarW - chartGap, H: y - top,
		})
		title = append(title, formatCount(n)+" "+chartStates[j].String())
		y = top
	}
	bar.Title = strings.Join(title, "\n")
	return bar
}

func cumulative(m minuteCounts, upTo int) int64 {
	var n int64
	for _, c := range m[:upTo] {
		n += c
	}
	return n
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten (at least 2, so
// the mid gridline is a whole number).
func niceCeil(n int64) int64 {
	for step := int64(1); ; step *= 10 {
		for _, f := range []int64{2, 5, 10} {
			if n <= f*step {
				return f * step
			}
		}
	}
}
