//! The drawing backend of every chart: plotters' `BitMapBackend` with its own text rendering.
//! plotters 0.3.7's ab_glyph renderer places each glyph at the caret without its left side
//! bearing, so `.`, `-`, `(` and spaces look misplaced; here glyphs are positioned by ab_glyph's
//! outline bounds, kerned, and set on a baseline that keeps them inside plotters' layout box (so
//! labels plotters positions still line up). Everything else is delegated unchanged.

use crate::style;
use ab_glyph::{Font, PxScale, ScaleFont, point};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};
use plotters_bitmap::{BitMapBackend, BitMapBackendError};

/// A PNG file being drawn.
pub(crate) struct Canvas<'a> {
    inner: BitMapBackend<'a>,
}

impl<'a> Canvas<'a> {
    /// A `size` canvas saved to `path` on `present`.
    pub fn new(path: &'a std::path::Path, size: (u32, u32)) -> Self {
        Canvas { inner: BitMapBackend::new(path, size) }
    }
}

type Res = Result<(), DrawingErrorKind<BitMapBackendError>>;

impl DrawingBackend for Canvas<'_> {
    type ErrorType = BitMapBackendError;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Res {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Res {
        self.inner.present()
    }
    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Res {
        self.inner.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(&mut self, from: BackendCoord, to: BackendCoord, style: &S) -> Res {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        ul: BackendCoord,
        br: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Res {
        self.inner.draw_rect(ul, br, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Res {
        self.inner.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Res {
        self.inner.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Res {
        self.inner.fill_polygon(vert, style)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Res {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn draw_text<T: BackendTextStyle>(&mut self, text: &str, style: &T, pos: BackendCoord) -> Res {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let Some(font) = style::face(style.style()) else {
            return Err(DrawingErrorKind::FontError(Box::new(std::io::Error::other(
                "the embedded DejaVu Sans font could not be parsed",
            ))));
        };
        let scale = PxScale::from(style.size() as f32);
        let sf = font.as_scaled(scale);
        // The same box plotters' ab_glyph layout reports (advances + kerning wide, size / 1.24 high).
        let mut width = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                width += sf.kern(p, id);
            }
            width += sf.h_advance(id);
            prev = Some(id);
        }
        let height = (style.size() / 1.24) as f32;
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -(width as i32),
            HPos::Center => -(width as i32) / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -(height as i32) / 2,
            VPos::Bottom => -(height as i32),
        };
        let baseline = height + sf.descent();
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut caret = 0.0f32;
        let mut prev = None;
        let mut result = Ok(());
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                caret += sf.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scale, point(caret, baseline));
            caret += sf.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else { continue };
            let b = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                if coverage <= 0.0 || result.is_err() {
                    return;
                }
                let (x, y) = (b.min.x as i32 + gx as i32 + dx, b.min.y as i32 + gy as i32 + dy);
                let (x, y) = trans.transform(x, y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                    let c =
                        BackendColor { alpha: color.alpha * f64::from(coverage.min(1.0)), rgb: color.rgb };
                    result = self.inner.draw_pixel((x, y), c);
                }
            });
        }
        result
    }
}
