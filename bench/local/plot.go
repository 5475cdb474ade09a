package main

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// ratioIDs are the rows drawn as ratios, in order.
var ratioIDs = []string{"P1", "P2", "P3", "P3w", "uring"}

// Plot draws two panels: the ratios per dataset with their goals, and P4's
// wait fractions with prefetch on and off.
func (r *Report) Plot(path string) error {
	left, err := r.ratioPlot()
	if err != nil {
		return err
	}
	plots := []*plot.Plot{left}
	if wp, ok, err := r.waitPlot(); err != nil {
		return err
	} else if ok {
		plots = append(plots, wp)
	}
	if sw, ok, err := r.sweepPlot(); err != nil {
		return err
	} else if ok {
		plots = append(plots, sw)
	}
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	return benchkit.SavePNG(path, [][]*plot.Plot{plots}, vg.Length(len(plots))*6*vg.Inch, 4.5*vg.Inch, tiles)
}

func (r *Report) ratioPlot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "zenithfs ÷ baseline (median throughput ratio; dashes: goals)"
	p.Y.Label.Text = "ratio"
	p.Y.Min = 0
	p.NominalX("P1 warm\n÷ tmpfs", "P2 daemon cache\n÷ tmpfs", "P3 first epoch\n÷ Parquet", "P3 second epoch\n÷ Parquet", "io_uring\n÷ pread")
	n := len(r.Datasets)
	width := vg.Points(60 / float64(max(n, 1)))
	for i, d := range r.Datasets {
		vals := make(plotter.Values, len(ratioIDs))
		for j, id := range ratioIDs {
			if row, ok := findRow(d, id); ok && len(row.ArmVals) > 0 && len(row.BaseVals) > 0 {
				vals[j] = row.Ratio()
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, err
		}
		bars.Color = benchkit.Palette[i%len(benchkit.Palette)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-float64(n-1)/2) * width
		p.Add(bars)
		p.Legend.Add(string(d.Kind), bars)
	}
	for j, id := range ratioIDs {
		for _, d := range r.Datasets {
			row, ok := findRow(d, id)
			if !ok || row.Goal == 0 {
				continue
			}
			line, err := plotter.NewLine(plotter.XYs{{X: float64(j) - 0.4, Y: row.Goal}, {X: float64(j) + 0.4, Y: row.Goal}})
			if err != nil {
				return nil, err
			}
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			line.Width = vg.Points(1.5)
			p.Add(line)
			break
		}
	}
	top := 1.0
	for _, d := range r.Datasets {
		for _, row := range d.Rows {
			if !row.Fraction && len(row.BaseVals) > 0 {
				top = math.Max(top, row.Ratio())
			}
		}
	}
	p.Y.Max = top * 1.15
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p, nil
}

func (r *Report) waitPlot() (*plot.Plot, bool, error) {
	p := plot.New()
	p.Title.Text = "P4: consumer time waiting on data (dashes: 5 % goal)"
	p.Y.Label.Text = "% of epoch time"
	p.Y.Min = 0
	names := make([]string, len(r.Datasets))
	on, off := make(plotter.Values, len(r.Datasets)), make(plotter.Values, len(r.Datasets))
	var onName, offName string
	for i, d := range r.Datasets {
		names[i] = string(d.Kind)
		if row, ok := findRow(d, "P4"); ok {
			on[i], off[i] = 100*benchkit.Median(row.ArmVals), 100*benchkit.Median(row.BaseVals)
			onName, offName = row.Arm, row.Base
		}
	}
	if onName == "" {
		return nil, false, nil
	}
	p.NominalX(names...)
	width := vg.Points(30)
	for i, s := range []struct {
		name string
		v    plotter.Values
	}{{onName, on}, {offName, off}} {
		bars, err := plotter.NewBarChart(s.v, width)
		if err != nil {
			return nil, false, err
		}
		bars.Color = benchkit.Palette[(i+2)%len(benchkit.Palette)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-0.5) * width
		p.Add(bars)
		p.Legend.Add(fmt.Sprint(s.name), bars)
	}
	top := 10.0
	for i := range on {
		top = math.Max(top, math.Max(on[i], off[i]))
	}
	p.Y.Max = top * 1.15
	line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 5}, {X: float64(len(names)) - 0.5, Y: 5}})
	if err != nil {
		return nil, false, err
	}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	line.Width = vg.Points(1.5)
	p.Add(line)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p, true, nil
}

func findRow(d *DatasetResult, id string) (Row, bool) {
	for _, r := range d.Rows {
		if r.ID == id {
			return r, true
		}
	}
	return Row{}, false
}

// sweepPlot draws P1 and P2 against the mean batch file size.
func (r *Report) sweepPlot() (*plot.Plot, bool, error) {
	p := plot.New()
	p.Title.Text = "P1, P2 against batch file size (dashes: goals)"
	p.X.Label.Text = "mean batch file size (KiB, log)"
	p.Y.Label.Text = "ratio to tmpfs"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1.1
	drawn := false
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, d := range r.Datasets {
		pts := d.sweepPoints()
		if len(pts) == 0 {
			continue
		}
		p1, p2 := make(plotter.XYs, len(pts)), make(plotter.XYs, len(pts))
		for j, pt := range pts {
			x := float64(pt.FileBytes) / 1024
			lo, hi = math.Min(lo, x), math.Max(hi, x)
			p1[j] = plotter.XY{X: x, Y: pt.P1()}
			p2[j] = plotter.XY{X: x, Y: pt.P2()}
		}
		for k, s := range []struct {
			name string
			xy   plotter.XYs
		}{{"P1 warm ÷ tmpfs", p1}, {"P2 daemon cache ÷ tmpfs", p2}} {
			l, sc, err := plotter.NewLinePoints(s.xy)
			if err != nil {
				return nil, false, err
			}
			c := benchkit.Palette[(2*i+k)%len(benchkit.Palette)]
			l.Color, sc.Color = c, c
			p.Add(l, sc)
			p.Legend.Add(fmt.Sprintf("%s (%s)", s.name, d.Kind), l, sc)
		}
		drawn = true
	}
	if !drawn {
		return nil, false, nil
	}
	for _, g := range []float64{0.9, 0.6} {
		line, err := plotter.NewLine(plotter.XYs{{X: lo, Y: g}, {X: hi, Y: g}})
		if err != nil {
			return nil, false, err
		}
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(line)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	return p, true, nil
}
