package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// writeLossPlot draws the training loss (per recorded step and a moving average) and the
// held-out bounds (EMA and raw weights) of h to a PNG at path, atomically.
func writeLossPlot(path string, h *history, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "NELBO (bits/token)"
	p.Add(plotter.NewGrid())

	var train, avg plotter.XYs
	const window = 20
	var sum float64
	var buf []float64
	for _, t := range h.Train {
		v := float64(t.Loss)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		train = append(train, plotter.XY{X: float64(t.Step), Y: v})
		buf = append(buf, v)
		sum += v
		if len(buf) > window {
			sum -= buf[0]
			buf = buf[1:]
		}
		avg = append(avg, plotter.XY{X: float64(t.Step), Y: sum / float64(len(buf))})
	}
	if len(train) > 0 {
		l, err := plotter.NewLine(train)
		if err != nil {
			return err
		}
		l.Color = color.RGBA{R: 160, G: 190, B: 230, A: 255}
		l.Width = vg.Points(0.7)
		p.Add(l)
		p.Legend.Add("train loss (batch)", l)
		a, err := plotter.NewLine(avg)
		if err != nil {
			return err
		}
		a.Color = color.RGBA{R: 20, G: 70, B: 160, A: 255}
		a.Width = vg.Points(1.5)
		p.Add(a)
		p.Legend.Add(fmt.Sprintf("train loss (mean of %d points)", window), a)
	}
	for _, w := range []struct {
		name  string
		col   color.RGBA
		shape draw.GlyphDrawer
	}{{"ema", color.RGBA{R: 200, G: 30, B: 30, A: 255}, draw.CircleGlyph{}}, {"raw", color.RGBA{R: 230, G: 140, B: 0, A: 255}, draw.TriangleGlyph{}}} {
		var pts plotter.XYs
		for _, e := range h.Eval {
			if e.Weights == w.name && !math.IsNaN(float64(e.PaperCode)) && !math.IsInf(float64(e.PaperCode), 0) {
				pts = append(pts, plotter.XY{X: float64(e.Step), Y: float64(e.PaperCode)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, s.Color, s.Shape, s.Radius = w.col, w.col, w.shape, vg.Points(3)
		p.Add(l, s)
		p.Legend.Add("held-out bound ("+w.name+" weights)", l, s)
	}
	p.Legend.Top = true
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
