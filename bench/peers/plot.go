package main

import (
	"fmt"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Plot writes path (throughput per arm, one panel per network) and
// path with "-ttfb" before ".png" (time to first batch per arm).
func Plot(res Result, path string) error {
	arms := armOrder(res.Runs)
	nets := append(append([]string{}, res.Cfg.Nets...), "local")
	var panels []*plot.Plot
	for _, net := range nets {
		p, ok, err := barPlot(res, arms, net, fmt.Sprintf("throughput, %s (MB/s of Parquet, median)", netTitle(res, net)), "MB/s",
			func(a Agg) float64 { return a.MBps })
		if err != nil {
			return err
		}
		if ok {
			panels = append(panels, p)
		}
	}
	if err := savePanels(panels, path); err != nil {
		return err
	}
	panels = panels[:0]
	for _, net := range nets {
		p, ok, err := barPlot(res, arms, net, fmt.Sprintf("time to first batch, %s (s, median; from mount start)", netTitle(res, net)), "seconds",
			func(a Agg) float64 { return a.TTFB })
		if err != nil {
			return err
		}
		if ok {
			panels = append(panels, p)
		}
	}
	return savePanels(panels, strings.TrimSuffix(path, ".png")+"-ttfb.png")
}

func netTitle(res Result, net string) string {
	for _, s := range res.Shapes {
		if strings.HasPrefix(s, net+":") {
			return s
		}
	}
	return net + " disk"
}

// barPlot draws one bar group per arm of net, one bar per dataset.
func barPlot(res Result, allArms []string, net, title, ylabel string, val func(Agg) float64) (*plot.Plot, bool, error) {
	var arms []string
	for _, a := range allArms {
		for _, ds := range res.Datasets {
			if _, ok := aggregate(res.Runs, ds.Name, a, net); ok {
				arms = append(arms, a)
				break
			}
		}
	}
	if len(arms) == 0 {
		return nil, false, nil
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	labels := make([]string, len(arms))
	for i, a := range arms {
		labels[i] = strings.Replace(a, " ", "\n", 1)
	}
	p.NominalX(labels...)
	n := len(res.Datasets)
	width := vg.Points(40 / float64(max(n, 1)))
	top := 0.0
	for i, ds := range res.Datasets {
		vals := make(plotter.Values, len(arms))
		for j, a := range arms {
			if g, ok := aggregate(res.Runs, ds.Name, a, net); ok && !math.IsNaN(val(g)) {
				vals[j] = val(g)
				top = math.Max(top, vals[j])
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, false, err
		}
		bars.Color = benchkit.Palette[i%len(benchkit.Palette)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-float64(n-1)/2) * width
		p.Add(bars)
		p.Legend.Add(ds.Name, bars)
	}
	p.Y.Max = math.Max(top*1.3, 0.1) // room for the legend
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p, true, nil
}

// savePanels stacks the panels vertically into one PNG.
func savePanels(panels []*plot.Plot, path string) error {
	if len(panels) == 0 {
		return nil
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	grid := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		grid[i] = []*plot.Plot{p}
	}
	return benchkit.SavePNG(path, grid, 11*vg.Inch, vg.Length(len(panels))*4*vg.Inch, tiles)
}
