//! Two chart shapes for the report, drawn with plotters into PNG files: lines over steps
//! and stacked bars per rank.
use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// Image size in pixels.
const SIZE: (u32, u32) = (1000, 600);

/// One line of a line chart. Non-finite points are left out.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    /// Draw a marker at every point (sparse series such as validation loss).
    pub markers: bool,
}

/// Labelled axes of a chart.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

fn err(path: &Path) -> impl Fn(String) -> anyhow::Error + '_ {
    move |e| anyhow!("plot {}: {e}", path.display())
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one PNG: a titled chart over `x` × `y`, whose mesh and series `body` draws
/// (given the chart and the error maker), then the legend in the upper right.
fn draw_png(
    path: &Path,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    body: impl FnOnce(&mut Chart<'_, '_>, &dyn Fn(String) -> anyhow::Error) -> Result<()>,
) -> Result<()> {
    let e = err(path);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 28))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(|x| e(x.to_string()))?;
    body(&mut chart, &e)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// (min, max) of the values, widened so that the range is never empty.
fn span(vals: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * hi.abs().max(1.0)
    };
    if !from_zero || lo < 0.0 {
        lo -= pad;
    }
    hi += pad;
    (lo, hi)
}

/// Draws the series as lines over a shared x axis into a PNG at `path`.
pub fn line_chart(path: &Path, axes: &Axes, series: &[Series], y_from_zero: bool) -> Result<()> {
    let series: Vec<Series> = series
        .iter()
        .map(|s| Series {
            points: s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
            name: s.name.clone(),
            ..*s
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let (x0, x1) = span(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        false,
    );
    let (y0, y1) = span(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        y_from_zero,
    );
    let y1 = y1 + 0.25 * (y1 - y0); // head-room keeps the legend (upper right) clear of the data
    draw_png(path, axes.title, x0..x1, y0..y1, |chart, e| {
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc(axes.x)
            .y_desc(axes.y)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .y_label_formatter(&|v| short(*v))
            .x_label_formatter(&|v| short(*v))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        for s in &series {
            let style = ShapeStyle::from(&s.color).stroke_width(2);
            let color = s.color;
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(|x| e(x.to_string()))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            if s.markers {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|x| e(x.to_string()))?;
            }
        }
        Ok(())
    })
}

/// One stacked bar: its label and one value per category.
pub struct Bar {
    pub label: String,
    pub values: Vec<f64>,
}

/// Draws stacked bars (one per entry of `bars`, segments per `categories`) into a PNG.
pub fn stacked_bars(
    path: &Path,
    axes: &Axes,
    categories: &[(&str, RGBColor)],
    bars: &[Bar],
) -> Result<()> {
    let n = bars.len().max(1);
    let top = bars
        .iter()
        .map(|b| b.values.iter().sum::<f64>())
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.6 } else { 1.0 }; // head-room for the legend
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    draw_png(
        path,
        axes.title,
        -0.5f64..(n as f64 - 0.5),
        0f64..top,
        |chart, e| {
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(RGBColor(238, 238, 238))
                .x_desc(axes.x)
                .y_desc(axes.y)
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 18))
                .x_labels(n + 1)
                .x_label_formatter(&|v| {
                    let i = v.round();
                    if (v - i).abs() < 1e-6 && i >= 0.0 {
                        labels.get(i as usize).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
                .y_label_formatter(&|v| short(*v))
                .draw()
                .map_err(|x| e(x.to_string()))?;
            for (c, (name, color)) in categories.iter().enumerate() {
                let color = *color;
                let rects = bars.iter().enumerate().map(move |(i, b)| {
                    let base: f64 = b.values[..c.min(b.values.len())].iter().sum();
                    let h = b.values.get(c).copied().unwrap_or(0.0);
                    let x = i as f64;
                    Rectangle::new([(x - 0.3, base), (x + 0.3, base + h)], color.filled())
                });
                chart
                    .draw_series(rects)
                    .map_err(|x| e(x.to_string()))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                    });
            }
            Ok(())
        },
    )
}

/// Compact tick labels: 12000 → "12k", 0.00012 → "1.2e-4".
fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.3}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else if a >= 0.01 {
        trim(format!("{v:.3}"))
    } else {
        format!("{v:.1e}")
    }
}

/// "12.50" → "12.5", "20.00" → "20".
fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(20_000.0), "20k");
        assert_eq!(short(12_500.0), "12.5k");
        assert_eq!(short(2_500_000.0), "2.5M");
        assert_eq!(short(3.5), "3.5");
        assert_eq!(short(0.00012), "1.2e-4");
        assert!(span([1.0, 1.0].into_iter(), false).0 < 1.0);
        assert_eq!(span(std::iter::empty(), true), (0.0, 1.0));
    }
}
