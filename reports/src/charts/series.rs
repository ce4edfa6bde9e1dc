//! Fitting a long time series into a chart panel: clipping to the panel's ranges and min/max per
//! pixel column. An hour-long run sampled every 100 ms has 36,000 points per line; drawn as they
//! are into a panel a few hundred pixels wide, strokes pile up and any value past the axis range
//! runs over the panel's title. This module only reshapes points; it draws nothing.

/// `pts` clipped to the panel: points whose time lies outside `x` are dropped, values are clamped
/// into `y` (a value past the axis is drawn on its edge instead of across the caption above).
pub(crate) fn clip(pts: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> Vec<(f64, f64)> {
    pts.iter()
        .filter(|p| p.0 >= x.0 && p.0 <= x.1 && !p.1.is_nan())
        .map(|&(t, v)| (t, v.clamp(y.0, y.1)))
        .collect()
}

/// `pts` (sorted by time) reduced to at most two points per pixel column: the time range `x` is
/// cut into `columns` equal buckets and each bucket keeps its lowest and its highest point, in
/// time order. Every spike and every dip stays visible, and a line of N points costs at most
/// `2 * columns` segments. Series already that short are returned as they are.
pub(crate) fn min_max_per_column(pts: &[(f64, f64)], x: (f64, f64), columns: usize) -> Vec<(f64, f64)> {
    let columns = columns.max(1);
    let width = (x.1 - x.0) / columns as f64;
    if pts.len() <= 2 * columns || width.is_nan() || width <= 0.0 {
        return pts.to_vec();
    }
    let column = |t: f64| (((t - x.0) / width).floor().max(0.0) as usize).min(columns - 1);
    let mut out = Vec::with_capacity(2 * columns);
    let mut flush = |lo: usize, hi: usize| {
        let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(pts[a]);
        if b != a {
            out.push(pts[b]);
        }
    };
    let (mut col, mut lo, mut hi) = (column(pts[0].0), 0, 0);
    for (i, p) in pts.iter().enumerate().skip(1) {
        let c = column(p.0);
        if c != col {
            flush(lo, hi);
            (col, lo, hi) = (c, i, i);
        } else if p.1 < pts[lo].1 {
            lo = i;
        } else if p.1 > pts[hi].1 {
            hi = i;
        }
    }
    flush(lo, hi);
    out
}

/// `pts` clipped to the panel `(x, y)` and reduced to min/max per column of a plotting area
/// `columns` pixels wide.
pub(crate) fn fit_to_panel(
    pts: &[(f64, f64)],
    x: (f64, f64),
    y: (f64, f64),
    columns: usize,
) -> Vec<(f64, f64)> {
    min_max_per_column(&clip(pts, x, y), x, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_hour_of_samples_keeps_its_spike_and_its_dip_in_two_points_per_pixel() {
        let mut pts: Vec<(f64, f64)> = (0..36_000).map(|i| (i as f64 * 0.1, 10.0 + (i % 7) as f64)).collect();
        pts[12_345].1 = 500.0;
        pts[30_001].1 = -3.0;
        let out = min_max_per_column(&pts, (0.0, 3600.0), 400);
        assert!(out.len() <= 800, "{}", out.len());
        assert!(out.contains(&pts[12_345]) && out.contains(&pts[30_001]));
    }

    #[test]
    fn values_past_the_axis_are_drawn_on_its_edge_and_times_outside_are_dropped() {
        let pts = [(-1.0, 5.0), (0.0, 150.0), (1.0, -2.0), (2.0, 50.0), (3.0, 1.0)];
        assert_eq!(clip(&pts, (0.0, 2.0), (0.0, 100.0)), [(0.0, 100.0), (1.0, 0.0), (2.0, 50.0)]);
    }

    #[test]
    fn a_short_series_is_left_as_it_is() {
        let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)];
        assert_eq!(min_max_per_column(&pts, (0.0, 2.0), 10), pts);
    }

    proptest! {
        #[test]
        fn downsampling_keeps_input_points_in_time_order_with_every_columns_extremes(
            values in prop::collection::vec(-1e6f64..1e6, 1..3000),
            columns in 1usize..300,
        ) {
            let pts: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect();
            let x = (0.0, (pts.len() - 1) as f64);
            let out = min_max_per_column(&pts, x, columns);
            prop_assert!(out.len() <= 2 * columns);
            prop_assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(out.iter().all(|p| pts.contains(p)));
            let max = values.iter().copied().fold(f64::MIN, f64::max);
            let min = values.iter().copied().fold(f64::MAX, f64::min);
            prop_assert!(out.iter().any(|p| p.1 == max) && out.iter().any(|p| p.1 == min));
        }
    }
}
