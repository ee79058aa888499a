//! The PNG of a run: loss on the left, accuracy on the right, train and eval lines.
//!
//! Text needs a TrueType font, read at run time (plotters' `ab_glyph` backend, so no system
//! font libraries are linked): `$TENSORBRAIN_FONT` or a common system path. Without one the
//! plot still draws its lines and grid, unlabelled.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::history::History;
use crate::tensor::{Error, Result};

const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a font for "sans-serif" once; false if none could be read.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let from_env = std::env::var("TENSORBRAIN_FONT").ok();
        for path in from_env.iter().map(String::as_str).chain(FONT_PATHS) {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps fonts for the life of the program.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn series(h: &History, name: &'static str, color: RGBColor, f: impl Fn(&super::EpochRecord) -> Option<f64>) -> Option<Series> {
    let points: Vec<(f64, f64)> = h.epochs.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect();
    (!points.is_empty()).then_some((name, color, points))
}

pub(crate) fn draw(h: &History, path: &Path) -> Result<()> {
    let err = |e: String| Error::Msg(format!("drawing {}: {e}", path.display()));
    let text = font_available();
    let root = BitMapBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (left, right) = root.split_horizontally(600);
    let loss = [
        series(h, "train loss", BLUE, |r| Some(r.train_loss)),
        series(h, "eval loss", RED, |r| r.eval_loss),
    ];
    let accuracy = [
        series(h, "train accuracy", BLUE, |r| r.train_accuracy),
        series(h, "eval accuracy", RED, |r| r.eval_accuracy),
    ];
    panel(&left, "loss", &loss, text).map_err(err)?;
    panel(&right, "accuracy", &accuracy, text).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))
}

fn panel(area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, title: &str, lines: &[Option<Series>], text: bool) -> std::result::Result<(), String> {
    let lines: Vec<&Series> = lines.iter().flatten().collect();
    let all = || lines.iter().flat_map(|(_, _, p)| p.iter());
    let Some(x_max) = all().map(|p| p.0).reduce(f64::max) else {
        return Ok(());
    };
    let (y_min, y_max) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let pad = ((y_max - y_min) * 0.05).max(1e-6);
    let mut builder = ChartBuilder::on(area);
    builder.margin(15);
    if text {
        builder.caption(title, ("sans-serif", 22)).x_label_area_size(35).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(1f64.min(x_max)..x_max.max(1.0 + 1e-9), (y_min - pad)..(y_max + pad)).map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("epoch").y_desc(title);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (name, color, points) in lines {
        let color = *color;
        let drawn = chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(3))
            .map_err(|e| e.to_string())?;
        if text {
            drawn.label(*name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    if text {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())?;
    }
    Ok(())
}
