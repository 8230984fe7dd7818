//! SVG plots (plotters' SVG backend) of a report section.

use fpo_eval::generation::Comparison;
use plotters::prelude::*;
use serde::Serialize;

use crate::data::{Curves, LlmCurves, LlmSection, ProbeCurves, Projection, Section, ToySection};
use crate::{Error, Result};
use fpo_eval::stats::Summary;

/// One rendered plot.
#[derive(Debug, Clone, Serialize)]
pub struct Plot {
    /// Caption under the plot.
    pub caption: String,
    /// The SVG document.
    pub svg: String,
}

const SIZE: (u32, u32) = (560, 360);

/// A variant's colour, the same in every plot: the paper's three first, then the others by
/// their position.
fn color(variant: &str, i: usize) -> RGBColor {
    const OTHERS: [RGBColor; 5] = [
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x17, 0xbe, 0xcf),
    ];
    match variant {
        "standard" => RGBColor(0xd6, 0x27, 0x28),
        "relaxed" => RGBColor(0x1f, 0x77, 0xb4),
        "practical" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => OTHERS[i % OTHERS.len()],
    }
}

fn err(name: &str) -> impl Fn(Box<dyn std::fmt::Display>) -> Error + '_ {
    move |e| Error::Plot(name.to_owned(), e.to_string())
}

macro_rules! tryp {
    ($name:expr, $e:expr) => {
        $e.map_err(|e| err($name)(Box::new(e)))?
    };
}

/// A chart builder in the reports' style.
fn builder<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(root);
    b.margin(12).x_label_area_size(36).y_label_area_size(48);
    b
}

/// Draws the series labels of a chart in the reports' style.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(position)
        .draw()
}

/// The plots of a section: for a toy, the phase space and noise and utility over iterations; for
/// a ladder, utility over iterations per rung, per toy.
pub fn for_section(section: &Section) -> Result<Vec<Plot>> {
    match section {
        Section::Toy(t) => toy_plots(t),
        Section::Ladder { toys, .. } => toys
            .iter()
            .map(|t| {
                band_plot(
                    &format!(
                        "{}: true utility per rung (mean, 95% band over seeds)",
                        t.suite
                    ),
                    "true utility",
                    t,
                    |c| &c.true_utility,
                )
            })
            .collect(),
        Section::Llm(l) => llm_plots(l),
    }
}

fn llm_plots(l: &LlmSection) -> Result<Vec<Plot>> {
    let mut plots = loop_plots(l)?;
    plots.extend(probe_plots(l)?);
    if let Some(p) = win_tie_loss_plot(l)? {
        plots.push(p);
    }
    Ok(plots)
}

/// Shares of first wins, ties and second wins of every pairwise comparison, with their Wilson
/// intervals as error bars.
fn win_tie_loss_plot(l: &LlmSection) -> Result<Option<Plot>> {
    let name = "win/tie/loss";
    let comps = &l.summary.evaluation.comparisons;
    if comps.is_empty() {
        return Ok(None);
    }
    let share = |c: &Comparison, k: &str| {
        let s = match k {
            "first" => &c.overall.first,
            "tie" => &c.overall.tie,
            "second" => &c.overall.second,
            _ => &c.overall.errors,
        };
        // No judged pair: an empty bar under the whole interval [0, 1].
        (s.share.unwrap_or(0.0), s.ci_low, s.ci_high)
    };
    let labels: Vec<String> = comps
        .iter()
        .map(|c| {
            format!(
                "{} vs {}{}",
                c.first,
                c.second,
                if c.judge.starts_with("llm") {
                    " (LLM)"
                } else {
                    ""
                }
            )
        })
        .collect();
    let width = (comps.len() * 5) as f64;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (SIZE.0.max(180 * comps.len() as u32), SIZE.1))
                .into_drawing_area();
        tryp!(name, root.fill(&WHITE));
        let mut chart = tryp!(
            name,
            builder(&root).build_cartesian_2d(-0.5..width - 0.5, 0.0..1.0)
        );
        let labels_fmt = labels.clone();
        tryp!(
            name,
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(comps.len() * 5)
                .x_label_formatter(&move |x| {
                    let i = x.round() as usize;
                    if i % 5 == 1 {
                        labels_fmt.get(i / 5).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
                .y_desc("share of questions")
                .draw()
        );
        let kinds = [
            ("first", "first wins", RGBColor(0x44, 0x72, 0xc4)),
            ("tie", "tie", RGBColor(0xa5, 0xa5, 0xa5)),
            ("second", "second wins", RGBColor(0xed, 0x7d, 0x31)),
            ("errors", "judge errors", RGBColor(0xb0, 0x00, 0x20)),
        ];
        for (j, (key, label, col)) in kinds.into_iter().enumerate() {
            let bars: Vec<(f64, (f64, f64, f64))> = comps
                .iter()
                .enumerate()
                .map(|(i, c)| ((i * 5 + j) as f64, share(c, key)))
                .collect();
            tryp!(
                name,
                chart.draw_series(bars.iter().map(|(x, (v, _, _))| {
                    Rectangle::new([(x - 0.4, 0.0), (x + 0.4, *v)], col.filled())
                }))
            )
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], col.filled()));
            tryp!(
                name,
                chart.draw_series(bars.iter().map(|(x, (v, lo, hi))| {
                    ErrorBar::new_vertical(*x, *lo, *v, *hi, BLACK.stroke_width(1), 6)
                }))
            );
        }
        tryp!(name, legend(&mut chart, SeriesLabelPosition::UpperRight));
        tryp!(name, root.present());
    }
    Ok(Some(Plot {
        caption: format!(
            "Pairwise comparisons: share of first wins, ties and second wins of the judged questions, and of judge errors among all, with 95% Wilson intervals (judges: {})",
            {
                let mut judges: Vec<&str> = comps.iter().map(|c| c.judge.as_str()).collect();
                judges.dedup();
                judges.join("; ")
            }
        ),
        svg,
    }))
}

fn loop_plots(l: &LlmSection) -> Result<Vec<Plot>> {
    let avg = format!(
        "moving average over {} iterations, mean over seeds",
        l.window
    );
    type Pick = fn(&LlmCurves) -> &Vec<f64>;
    let plots: [(&str, &str, Pick); 4] = [
        (
            "Training prompts: RM score (proxy reward) of the winners, each iteration another prompt",
            "RM score",
            |c| &c.winner_reward,
        ),
        (
            "Training prompts: oracle utility of the winners, each iteration another prompt (mostly the prompt's NLL; the held-out probe below measures collapse)",
            "oracle utility U",
            |c| &c.winner_utility,
        ),
        ("Penalty of the winners", "penalty", |c| &c.penalty),
        (
            "Winners' <∇r, ∇l> (positive: the RM step lowers their score)",
            "<grad r, grad l>",
            |c| &c.self_influence,
        ),
    ];
    plots
        .into_iter()
        .map(|(caption, y_desc, pick)| {
            let series: Vec<(&str, Vec<(f64, f64)>)> = l
                .curves
                .iter()
                .map(|(v, c)| {
                    (
                        v.as_str(),
                        c.iteration
                            .iter()
                            .copied()
                            .zip(pick(c).iter().copied())
                            .collect(),
                    )
                })
                .collect();
            line_plot(&format!("{caption} ({avg})"), y_desc, &series)
        })
        .collect()
}

/// Lines over iterations, one per variant.
fn line_plot(caption: &str, y_desc: &str, series: &[(&str, Vec<(f64, f64)>)]) -> Result<Plot> {
    let name = caption;
    let points = || {
        series
            .iter()
            .flat_map(|(_, s)| s.iter())
            .filter(|p| p.1.is_finite())
    };
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let (y_min, y_max) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    over_iterations(caption, y_desc, x_max, (y_min, y_max), |chart| {
        for (i, (variant, s)) in series.iter().enumerate() {
            let col = color(variant, i);
            tryp!(
                name,
                chart.draw_series(LineSeries::new(
                    s.iter().copied().filter(|p| p.1.is_finite()),
                    col.stroke_width(2)
                ))
            )
            .label(variant.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
        }
        Ok(())
    })
}

type IterationChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart over iterations `0..x_max` with the y range padded by 5%; `draw` adds the series,
/// then the legend is drawn.
fn over_iterations(
    caption: &str,
    y_desc: &str,
    x_max: f64,
    (mut y_min, mut y_max): (f64, f64),
    draw: impl FnOnce(&mut IterationChart<'_, '_>) -> Result<()>,
) -> Result<Plot> {
    let name = caption;
    if !(y_min.is_finite() && y_max.is_finite()) || y_min == y_max {
        (y_min, y_max) = (y_min.min(0.0), y_max.max(1.0));
    }
    let pad = 0.05 * (y_max - y_min);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        tryp!(name, root.fill(&WHITE));
        let mut chart = tryp!(
            name,
            builder(&root).build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        );
        tryp!(
            name,
            chart
                .configure_mesh()
                .light_line_style(WHITE.mix(0.0))
                .x_desc("iteration")
                .y_desc(y_desc)
                .draw()
        );
        draw(&mut chart)?;
        tryp!(name, legend(&mut chart, SeriesLabelPosition::UpperLeft));
        tryp!(name, root.present());
    }
    Ok(Plot {
        caption: caption.to_owned(),
        svg,
    })
}

fn toy_plots(t: &ToySection) -> Result<Vec<Plot>> {
    let mut plots = vec![phase_plot(t)?];
    if let Some(p) = &t.projection {
        plots.push(pca_plot(p)?);
    }
    plots.extend([
        band_plot(
            "Noise magnitude over iterations (mean, 95% band over seeds)",
            "noise magnitude",
            t,
            |c| &c.noise,
        )?,
        band_plot(
            "True utility over iterations (mean, 95% band over seeds)",
            "true utility",
            t,
            |c| &c.true_utility,
        )?,
    ]);
    Ok(plots)
}

/// A toy's curve per variant with its band over seeds.
fn band_plot(
    caption: &str,
    y_desc: &str,
    t: &ToySection,
    pick: fn(&Curves) -> &Vec<fpo_eval::stats::Summary>,
) -> Result<Plot> {
    let series: Vec<(&str, &[f64], &[Summary])> = t
        .curves
        .iter()
        .map(|(v, c)| (v.as_str(), c.iteration.as_slice(), pick(c).as_slice()))
        .collect();
    bands_plot(caption, y_desc, &series)
}

/// Lines of means with their bands (`ci_low` to `ci_high`), one per variant, over iterations.
fn bands_plot(caption: &str, y_desc: &str, series: &[(&str, &[f64], &[Summary])]) -> Result<Plot> {
    let name = caption;
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (_, xs, ys) in series {
        x_max = x_max.max(xs.last().copied().unwrap_or(1.0));
        for s in *ys {
            for v in [s.mean, s.ci_low, s.ci_high]
                .into_iter()
                .filter(|v| v.is_finite())
            {
                y_min = y_min.min(v);
                y_max = y_max.max(v);
            }
        }
    }
    over_iterations(caption, y_desc, x_max, (y_min, y_max), |chart| {
        for (i, (variant, xs, ys)) in series.iter().enumerate() {
            let col = color(variant, i);
            let band: Vec<(f64, f64)> = xs
                .iter()
                .zip(*ys)
                .map(|(x, s)| (*x, s.ci_high))
                .chain(xs.iter().zip(*ys).rev().map(|(x, s)| (*x, s.ci_low)))
                .filter(|p| p.1.is_finite())
                .collect();
            tryp!(
                name,
                chart.draw_series(std::iter::once(Polygon::new(band, col.mix(0.18).filled())))
            );
            tryp!(
                name,
                chart.draw_series(LineSeries::new(
                    xs.iter().zip(*ys).map(|(x, s)| (*x, s.mean)),
                    col.stroke_width(2),
                ))
            )
            .label(variant.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
        }
        Ok(())
    })
}

/// The held-out probe: the gap, the drift and the RM's gain over training (bands over seeds),
/// and the proxy-vs-true picture.
fn probe_plots(l: &LlmSection) -> Result<Vec<Plot>> {
    if l.probe.is_empty() {
        return Ok(Vec::new());
    }
    type Pick = fn(&ProbeCurves) -> &Vec<Summary>;
    let plots: [(&str, &str, Pick); 4] = [
        (
            "Held-out probe: proxy-minus-true gap, (RM gain) − (utility gain) over the base model's samples",
            "gap",
            |c| &c.gap,
        ),
        (
            "Held-out probe: per-token KL(policy ‖ base), exact",
            "KL per token",
            |c| &c.kl,
        ),
        (
            "Held-out probe: RM score gain over the base model's samples (current head)",
            "RM gain",
            |c| &c.reward_gain,
        ),
        (
            "Held-out probe: oracle utility gain over the base model's samples",
            "utility gain",
            |c| &c.utility_gain,
        ),
    ];
    let mut out = Vec::new();
    for (caption, y_desc, pick) in plots {
        let series: Vec<(&str, &[f64], &[Summary])> = l
            .probe
            .iter()
            .map(|(v, c)| (v.as_str(), c.iteration.as_slice(), pick(c).as_slice()))
            .collect();
        out.push(bands_plot(
            &format!("{caption} (mean, band over seeds)"),
            y_desc,
            &series,
        )?);
    }
    out.push(proxy_vs_true(l)?);
    Ok(out)
}

/// The LLM analogue of the toys' phase plot: each variant's path through (true gain, proxy
/// gain) over its probes (means over seeds; a dot at the first probe), against the diagonal
/// on which the RM's gain is the oracle's.
fn proxy_vs_true(l: &LlmSection) -> Result<Plot> {
    let name = "proxy vs true";
    let paths: Vec<(&str, Vec<(f64, f64)>)> = l
        .probe
        .iter()
        .map(|(v, c)| {
            let pts = c
                .utility_gain
                .iter()
                .zip(&c.reward_gain)
                .map(|(u, r)| (u.mean, r.mean))
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            (v.as_str(), pts)
        })
        .collect();
    let all = || paths.iter().flat_map(|(_, p)| p.iter());
    let lo = all().fold(0.0f64, |m, p| m.min(p.0).min(p.1));
    let hi = all().fold(0.0f64, |m, p| m.max(p.0).max(p.1));
    let pad = 0.1 * (hi - lo).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        tryp!(name, root.fill(&WHITE));
        let mut chart = tryp!(name, builder(&root).build_cartesian_2d(lo..hi, lo..hi));
        tryp!(
            name,
            chart
                .configure_mesh()
                .x_desc("utility gain (true)")
                .y_desc("RM gain (proxy)")
                .draw()
        );
        tryp!(
            name,
            chart.draw_series(LineSeries::new(
                [(lo, lo), (hi, hi)],
                BLACK.mix(0.3).stroke_width(1)
            ))
        );
        for (i, (variant, pts)) in paths.iter().enumerate() {
            let col = color(variant, i);
            tryp!(
                name,
                chart.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
            )
            .label(variant.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
            if let Some(&first) = pts.first() {
                tryp!(
                    name,
                    chart.draw_series(std::iter::once(Circle::new(first, 4, col.filled())))
                );
            }
        }
        tryp!(name, legend(&mut chart, SeriesLabelPosition::UpperLeft));
        tryp!(name, root.present());
    }
    Ok(Plot {
        caption: "Held-out probe, proxy vs true: each variant's RM gain against its oracle utility gain over the base model's samples, probe by probe (means over seeds; dot: first probe; grey: equal gains). Above the diagonal the RM rates the policy better than the oracle does.".into(),
        svg,
    })
}

/// One seed's trajectories on the top two principal axes of their actions, over the true utility
/// on that plane, with the start and the ideal action (projected) marked.
fn pca_plot(p: &Projection) -> Result<Plot> {
    let points = p.paths.values().flatten().copied();
    let marks = p.ideal.map(|i| i.0).into_iter();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points.chain(marks) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !(x0.is_finite() && x1.is_finite() && y0.is_finite() && y1.is_finite()) {
        (x0, x1, y0, y1) = (-1.0, 1.0, -1.0, 1.0);
    }
    let (px, py) = (0.08 * (x1 - x0).max(1e-3), 0.08 * (y1 - y0).max(1e-3));
    // u / A on the plane: exp(-tau (||c - c*||² + d²)), c* and d² the ideal's projection and
    // squared distance from the plane.
    let utility = match (p.utility, p.ideal) {
        (Some((_, tau)), Some(((cx, cy), off))) => {
            Some(move |a: f64, b: f64| (-tau * ((a - cx).powi(2) + (b - cy).powi(2) + off)).exp())
        }
        _ => None,
    };
    let svg = trajectories(Trajectories {
        name: "PCA of the trajectory",
        x: (x0 - px, x1 + px),
        y: (y0 - py, y1 + py),
        axes: ("first principal axis", "second principal axis"),
        utility,
        paths: p
            .paths
            .iter()
            .map(|(v, path)| (v.as_str(), path.clone()))
            .collect(),
        ideal: p.ideal.map(|i| i.0),
    })?;
    let off = p.ideal.map_or(String::new(), |(_, d2)| {
        format!("; the ideal lies {:.2} off the plane", d2.sqrt())
    });
    Ok(Plot {
        caption: format!(
            "PCA of the trajectory (seed {}): every variant's action on the top two principal \
             axes of all their logged actions ({:.0}% of the variance), over the true utility \
             on that plane (darker is higher){off}",
            p.seed,
            100.0 * p.explained
        ),
        svg,
    })
}

/// A plane of trajectories over a utility landscape: what the phase and PCA plots draw.
struct Trajectories<'a, U> {
    name: &'a str,
    x: (f64, f64),
    y: (f64, f64),
    axes: (&'a str, &'a str),
    /// The true utility over the plane, scaled to [0, 1], shaded where known.
    utility: Option<U>,
    /// Variant -> its path; the first path's first point is marked as the start.
    paths: Vec<(&'a str, Vec<(f64, f64)>)>,
    /// The ideal action, marked.
    ideal: Option<(f64, f64)>,
}

/// Draws [`Trajectories`] as an SVG document.
fn trajectories<U: Fn(f64, f64) -> f64>(t: Trajectories<'_, U>) -> Result<String> {
    let name = t.name;
    let ((x0, x1), (y0, y1)) = (t.x, t.y);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        tryp!(name, root.fill(&WHITE));
        let mut chart = tryp!(name, builder(&root).build_cartesian_2d(x0..x1, y0..y1));
        if let Some(u) = &t.utility {
            const CELLS: usize = 60;
            let (dx, dy) = ((x1 - x0) / CELLS as f64, (y1 - y0) / CELLS as f64);
            let cells = (0..CELLS)
                .flat_map(|i| (0..CELLS).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let (xa, ya) = (x0 + i as f64 * dx, y0 + j as f64 * dy);
                    let shade = (255.0 - 110.0 * u(xa + 0.5 * dx, ya + 0.5 * dy)) as u8;
                    Rectangle::new(
                        [(xa, ya), (xa + dx, ya + dy)],
                        RGBColor(shade, shade, 255).filled(),
                    )
                });
            tryp!(name, chart.draw_series(cells));
        }
        tryp!(
            name,
            chart
                .configure_mesh()
                .x_desc(t.axes.0)
                .y_desc(t.axes.1)
                .disable_mesh()
                .draw()
        );
        for (i, (variant, path)) in t.paths.iter().enumerate() {
            let col = color(variant, i);
            tryp!(
                name,
                chart.draw_series(LineSeries::new(path.iter().copied(), col.stroke_width(2)))
            )
            .label(variant.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
        }
        if let Some(&start) = t.paths.first().and_then(|p| p.1.first()) {
            tryp!(
                name,
                chart.draw_series(std::iter::once(Circle::new(start, 5, BLACK.filled())))
            )
            .label("start")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, BLACK.filled()));
        }
        if let Some(ideal) = t.ideal {
            tryp!(
                name,
                chart.draw_series(std::iter::once(TriangleMarker::new(
                    ideal,
                    8,
                    BLACK.filled()
                )))
            )
            .label("ideal")
            .legend(|(x, y)| TriangleMarker::new((x + 9, y), 5, BLACK.filled()));
        }
        tryp!(name, legend(&mut chart, SeriesLabelPosition::UpperRight));
        tryp!(name, root.present());
    }
    Ok(svg)
}

/// Signal magnitude against noise magnitude (means over seeds), over the true utility of an
/// action whose signal coordinates point at the target: `A exp(-tau ((s - |t|)² + n²))`.
fn phase_plot(t: &ToySection) -> Result<Plot> {
    let (mut s_max, mut n_max) = (0.0f64, 0.0f64);
    for c in t.curves.values() {
        s_max = s_max.max(c.signal.iter().map(|s| s.mean).fold(0.0, f64::max));
        n_max = n_max.max(c.noise.iter().map(|s| s.mean).fold(0.0, f64::max));
    }
    let ideal = t.utility.map(|u| u.2);
    let s_max = 1.15 * s_max.max(ideal.unwrap_or(0.0)).max(1e-3);
    let n_max = 1.15 * n_max.max(0.5);
    let svg = trajectories(Trajectories {
        name: "phase space",
        x: (0.0, s_max),
        y: (0.0, n_max),
        axes: ("signal magnitude", "noise magnitude"),
        // In [0, 1]: u / A.
        utility: t.utility.map(|(_, tau, target)| {
            move |s: f64, n: f64| (-tau * ((s - target).powi(2) + n * n)).exp()
        }),
        paths: t
            .curves
            .iter()
            .map(|(v, c)| {
                let path = c.signal.iter().zip(&c.noise).map(|(s, n)| (s.mean, n.mean));
                (v.as_str(), path.collect())
            })
            .collect(),
        ideal: ideal.map(|target| (target, 0.0)),
    })?;
    Ok(Plot {
        caption: "Phase space: signal vs noise magnitude (means over seeds) over the true utility \
                  (darker is higher; contours assume the signal points at the target)"
            .to_owned(),
        svg,
    })
}
