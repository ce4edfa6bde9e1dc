//! The look shared by every chart: the embedded font (DejaVu Sans, so text renders with no system
//! fonts), the colour palette, text styles, and the header band (title, subtitle with the scenario
//! and calibration status, legend). It does not know what a chart plots.

use crate::canvas::Canvas;
use crate::input::Run;
use ab_glyph::FontRef;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sim::trace::Source;
use std::sync::OnceLock;

/// Result of drawing code; the caller turns the error into `ReportError::Chart`.
pub(crate) type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The drawing area type of every chart.
pub(crate) type Area<'a> = DrawingArea<Canvas<'a>, Shift>;

/// Font family every text style names; registered from the embedded TTFs.
pub(crate) const FONT: &str = "sans-serif";

static REGULAR: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../assets/DejaVuSans-Bold.ttf");

/// Registers the embedded fonts with plotters (once per process).
pub(crate) fn ensure_fonts() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bad = |_| "the embedded DejaVu Sans font could not be parsed".to_string();
        plotters::style::register_font(FONT, FontStyle::Normal, REGULAR).map_err(bad)?;
        plotters::style::register_font(FONT, FontStyle::Bold, BOLD).map_err(bad)
    })
    .clone()
}

/// The embedded face for `style` (bold for [`FontStyle::Bold`], regular otherwise), parsed once;
/// `None` only if the embedded bytes are not a font.
pub(crate) fn face(style: FontStyle) -> Option<&'static FontRef<'static>> {
    static FACES: OnceLock<Option<(FontRef<'static>, FontRef<'static>)>> = OnceLock::new();
    let faces = FACES
        .get_or_init(|| Some((FontRef::try_from_slice(REGULAR).ok()?, FontRef::try_from_slice(BOLD).ok()?)));
    let (regular, bold) = faces.as_ref()?;
    Some(if matches!(style, FontStyle::Bold) { bold } else { regular })
}

/// Tableau 10: distinct for most colour-blind readers, and still distinct in greyscale print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0xBA, 0xB0, 0xAC),
];

/// Colour of series `i` (cycles after ten).
pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Text and axis grey.
pub(crate) const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// Secondary text.
pub(crate) const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
/// Better than the reference.
pub(crate) const GOOD: RGBColor = RGBColor(0x1A, 0x7F, 0x37);
/// Worse than the reference; also the UNCALIBRATED warning and SLO lines.
pub(crate) const BAD: RGBColor = RGBColor(0xC0, 0x1C, 0x28);
/// A simulator predicting lower latency than measured (optimistic): dark purple, neither good nor
/// bad, and unlike any series colour.
pub(crate) const OPTIMISTIC: RGBColor = RGBColor(0x7B, 0x2D, 0x8E);
/// A simulator predicting higher latency than measured (pessimistic): dark teal.
pub(crate) const PESSIMISTIC: RGBColor = RGBColor(0x00, 0x6D, 0x77);
/// Light grid lines.
pub(crate) const GRID: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);

/// Regular text of `size` px in `color`.
pub(crate) fn text(size: f64, color: RGBColor) -> TextStyle<'static> {
    TextStyle {
        font: FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Normal),
        color: color.to_backend_color(),
        pos: Pos::new(HPos::Left, VPos::Top),
    }
}

/// Bold text of `size` px in `color`.
pub(crate) fn bold(size: f64, color: RGBColor) -> TextStyle<'static> {
    TextStyle { font: FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Bold), ..text(size, color) }
}

/// Tick labels.
pub(crate) fn tick() -> TextStyle<'static> {
    text(13.0, INK)
}

/// Axis descriptions.
pub(crate) fn axis_desc() -> TextStyle<'static> {
    text(14.0, INK)
}

/// Subplot captions.
pub(crate) fn caption() -> TextStyle<'static> {
    bold(15.0, INK)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mark {
    /// A solid line.
    Line,
    /// A dashed line.
    Dashed,
    /// A filled box (bars).
    Box,
    /// A line over a light band (mean with confidence interval).
    Band,
    /// A hollow circle (marked points).
    Ring,
}

/// One legend entry.
#[derive(Clone, Debug)]
pub(crate) struct LegendItem {
    /// Text.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// Swatch.
    pub mark: Mark,
}

impl LegendItem {
    /// An entry.
    pub fn new(label: impl Into<String>, color: RGBColor, mark: Mark) -> Self {
        LegendItem { label: label.into(), color, mark }
    }
}

/// The band above the plots.
#[derive(Clone, Debug, Default)]
pub(crate) struct Header {
    /// Chart title.
    pub title: String,
    /// Subtitle pieces, each with its colour (the calibration warning stands out in red).
    pub subtitle: Vec<(String, RGBColor)>,
    /// Legend entries shared by every subplot.
    pub legend: Vec<LegendItem>,
}

const SWATCH: i32 = 30;
const LEGEND_ROW: i32 = 22;

/// Draws `h` at the top of `root` and returns the area left for the plots.
pub(crate) fn draw_header<'a>(root: &Area<'a>, h: &Header) -> DrawResult<Area<'a>> {
    let (w, _) = root.dim_in_pixel();
    let w = w as i32;
    root.draw(&Text::new(h.title.clone(), (16, 10), bold(22.0, INK)))?;
    let mut x = 16;
    for (s, c) in &h.subtitle {
        let style = text(15.0, *c);
        root.draw(&Text::new(s.clone(), (x, 40), style.clone()))?;
        x += root.estimate_text_size(s, &style)?.0 as i32;
    }
    let style = text(14.0, INK);
    let (mut x, mut y) = (16, 66);
    for item in &h.legend {
        let tw = root.estimate_text_size(&item.label, &style)?.0 as i32;
        if x > 16 && x + SWATCH + 6 + tw > w - 16 {
            x = 16;
            y += LEGEND_ROW;
        }
        draw_swatch(root, item, x, y + 8)?;
        root.draw(&Text::new(item.label.clone(), (x + SWATCH + 6, y), style.clone()))?;
        x += SWATCH + 6 + tw + 24;
    }
    let used = if h.legend.is_empty() { 66 } else { y + LEGEND_ROW + 6 };
    Ok(root.split_vertically(used as u32).1)
}

fn draw_swatch(root: &Area<'_>, item: &LegendItem, x: i32, y: i32) -> DrawResult<()> {
    let c = item.color;
    match item.mark {
        Mark::Line => root.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], c.stroke_width(3)))?,
        Mark::Dashed => {
            for k in 0..3 {
                let x0 = x + k * 12;
                root.draw(&PathElement::new(vec![(x0, y), (x0 + 7, y)], c.stroke_width(3)))?;
            }
        }
        Mark::Box => root.draw(&Rectangle::new([(x + 4, y - 7), (x + SWATCH - 4, y + 7)], c.filled()))?,
        Mark::Ring => root.draw(&Circle::new((x + SWATCH / 2, y), 7, c.stroke_width(2)))?,
        Mark::Band => {
            root.draw(&Rectangle::new([(x, y - 7), (x + SWATCH, y + 7)], c.mix(0.2).filled()))?;
            root.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], c.stroke_width(3)))?;
        }
    }
    Ok(())
}

/// Splits `area` into a grid of `n` cells (at most `max_cols` columns), row by row.
pub(crate) fn grid<'a>(area: &Area<'a>, n: usize, max_cols: usize) -> Vec<Area<'a>> {
    let cols = n.clamp(1, max_cols.max(1));
    let rows = n.div_ceil(cols).max(1);
    area.split_evenly((rows, cols)).into_iter().take(n.max(1)).collect()
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Sim => "sim",
        Source::Live => "live",
    }
}

/// Subtitle for charts of several runs: the scenario name(s), then whether the simulated runs'
/// step times are calibrated ("UNCALIBRATED (roofline prior)" in red when not), and whether live
/// measurements are shown.
pub(crate) fn runs_subtitle(runs: &[&Run]) -> Vec<(String, RGBColor)> {
    let mut scenarios: Vec<&str> = Vec::new();
    for r in runs {
        if !scenarios.contains(&r.dir.meta.scenario_name.as_str()) {
            scenarios.push(&r.dir.meta.scenario_name);
        }
    }
    let mut out = vec![(format!("scenario: {}", scenarios.join(", ")), MUTED)];
    let sims: Vec<&&Run> = runs.iter().filter(|r| r.dir.meta.source == Source::Sim).collect();
    let calibrated = sims.iter().filter(|r| r.dir.meta.calibrated).count();
    if !sims.is_empty() {
        out.push(("   ·   sim: ".into(), MUTED));
        if calibrated == sims.len() {
            out.push(("calibrated".into(), GOOD));
        } else if calibrated == 0 {
            out.push(("UNCALIBRATED (roofline prior)".into(), BAD));
        } else {
            let names = |cal: bool| {
                sims.iter()
                    .filter(|r| r.dir.meta.calibrated == cal)
                    .map(|r| r.label.as_str())
                    .collect::<Vec<_>>()
            };
            out.push((format!("calibrated: {}", names(true).join(", ")), GOOD));
            out.push(("; ".into(), MUTED));
            out.push((format!("UNCALIBRATED (roofline prior): {}", names(false).join(", ")), BAD));
        }
    }
    if runs.iter().any(|r| r.dir.meta.source == Source::Live) {
        out.push(("   ·   live: measured".into(), MUTED));
    }
    out
}

/// Subtitle for a chart of one run.
pub(crate) fn run_subtitle(run: &Run) -> Vec<(String, RGBColor)> {
    let m = &run.dir.meta;
    let mut out = vec![(
        format!("scenario: {}   ·   variant: {}   ·   {}", m.scenario_name, m.variant, source_name(m.source)),
        MUTED,
    )];
    if m.source == Source::Sim {
        out.push((", ".into(), MUTED));
        out.push(calibration(m.calibrated));
    }
    out
}

/// "calibrated" in green or "UNCALIBRATED (roofline prior)" in red.
pub(crate) fn calibration(calibrated: bool) -> (String, RGBColor) {
    if calibrated { ("calibrated".into(), GOOD) } else { ("UNCALIBRATED (roofline prior)".into(), BAD) }
}

/// Draws `message` centred in `area` (a subplot whose series are all empty).
pub(crate) fn no_data(area: &Area<'_>, message: &str) -> DrawResult<()> {
    let (w, h) = area.dim_in_pixel();
    let style = text(14.0, MUTED).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(message.to_string(), (w as i32 / 2, h as i32 / 2), style))?;
    Ok(())
}
