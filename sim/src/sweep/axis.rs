//! Sweep axes: `--vary PATH=SPEC` parsed into a field path and a list of values, and axes expanded
//! into sweep points.
//!
//! SPEC is a range `a..b:step` (`:step` defaults to 1; `b` is included when a step lands on it,
//! within a float tolerance; all-integer ranges give integers, others floats rounded to the
//! literals' decimals so `0.1..0.3:0.1` gives 0.1, 0.2, 0.3 exactly) or a comma-separated list
//! whose items are TOML values read like `--set` values (bare words are strings; commas inside
//! `[...]`, `{...}` or quotes do not split). Points are the cartesian product of the axes (first
//! axis slowest) or, zipped, the i-th value of every axis. This module does not load scenarios.

use super::SweepError;
use crate::scenario::Override;
use std::fmt;
use std::str::FromStr;

/// Largest number of values one axis, and points one sweep, may have (a typo guard).
pub const MAX_POINTS: usize = 1_000_000;

/// One swept field and the values it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Dotted field path, as `--set` takes it (`workload.phases.1.arrival.rate`).
    pub path: String,
    /// The values, in order; never empty.
    pub values: Vec<toml::Value>,
}

impl Axis {
    /// True when every value is a number (such an axis can be a chart's x axis).
    pub fn is_numeric(&self) -> bool {
        self.values.iter().all(|v| matches!(v, toml::Value::Integer(_) | toml::Value::Float(_)))
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<String> = self.values.iter().map(ToString::to_string).collect();
        write!(f, "{}={}", self.path, values.join(","))
    }
}

/// Parses `PATH=SPEC` (see the module doc).
impl FromStr for Axis {
    type Err = SweepError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| SweepError::Vary { arg: arg.to_string(), reason };
        let Some((path, spec)) = arg.split_once('=') else {
            return Err(err("expected PATH=VALUES, e.g. workload.phases.1.arrival.rate=2..40:2 or \
                            router.policy=round_robin,queue_aware"
                .into()));
        };
        let (path, spec) = (path.trim(), spec.trim());
        if spec.is_empty() {
            return Err(err(format!("no values after `{path}=`")));
        }
        // The path is checked (and values are parsed) exactly as `--set` does it.
        let as_override =
            |value: &str| Override::from_str(&format!("{path}={value}")).map_err(|e| err(e.reason));
        let values = match parse_range(spec) {
            Some(range) => {
                as_override("0")?;
                range.map_err(err)?
            }
            None => {
                let items = split_list(spec).map_err(err)?;
                items.iter().map(|item| as_override(item).map(|o| o.value)).collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(Axis { path: path.to_string(), values })
    }
}

/// `Some` when `spec` is meant as a range (a number, then `..`), with its values or the reason it
/// is not a valid range; `None` for a list.
fn parse_range(spec: &str) -> Option<Result<Vec<toml::Value>, String>> {
    let (start, rest) = spec.split_once("..")?;
    let start = start.trim();
    start.parse::<f64>().ok()?;
    let (end, step) = match rest.split_once(':') {
        Some((end, step)) => (end.trim(), step.trim()),
        None => (rest.trim(), "1"),
    };
    Some(range_values(start, end, step))
}

fn range_values(start: &str, end: &str, step: &str) -> Result<Vec<toml::Value>, String> {
    let syntax = "write a range as START..END:STEP, e.g. 2..40:2 (END included when a step lands on it)";
    let number = |what: &str, text: &str| -> Result<f64, String> {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("the {what} `{text}` is not a number; {syntax}")),
        }
    };
    let (a, b, s) = (number("start", start)?, number("end", end)?, number("step", step)?);
    if s <= 0.0 {
        return Err(format!("the step must be positive, not {step}; {syntax}"));
    }
    if b < a {
        return Err(format!("the range {start}..{end} is empty (its end is below its start)"));
    }
    let steps = ((b - a) / s * (1.0 + 1e-9) + 1e-9).floor();
    if steps + 1.0 > MAX_POINTS as f64 {
        return Err(format!("the range has {steps} values, more than {MAX_POINTS}: use a larger step"));
    }
    let count = steps as u64 + 1;
    if let (Ok(a), Ok(_), Ok(s)) = (start.parse::<i64>(), end.parse::<i64>(), step.parse::<i64>()) {
        return (0..count as i64)
            .map(|i| s.checked_mul(i).and_then(|d| a.checked_add(d)).map(toml::Value::Integer))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("the range {start}..{end}:{step} overflows 64-bit integers"));
    }
    let decimals =
        [start, end, step].iter().map(|t| decimals(t)).try_fold(0usize, |m, d| d.map(|d| m.max(d)));
    Ok((0..count)
        .map(|i| {
            let v = a + i as f64 * s;
            let v = match decimals {
                Some(d) => format!("{v:.d$}").parse::<f64>().unwrap_or(v),
                None => v,
            };
            toml::Value::Float(v)
        })
        .collect())
}

/// Digits after the decimal point of a plain decimal literal; `None` with an exponent.
fn decimals(literal: &str) -> Option<usize> {
    if literal.contains(['e', 'E']) {
        return None;
    }
    Some(literal.split_once('.').map_or(0, |(_, frac)| frac.len()))
}

/// Splits a list on commas outside brackets, braces and quotes; every item must be non-empty.
fn split_list(spec: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in spec.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    let items: Vec<String> = items.into_iter().map(|s| s.trim().to_string()).collect();
    if let Some(i) = items.iter().position(String::is_empty) {
        return Err(format!("value {} of the list is empty (two commas in a row, or one at an end)", i + 1));
    }
    Ok(items)
}

/// One point of a sweep: a value for every axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Index in sweep order, from 0.
    pub index: u32,
    /// One value per axis, in axis order.
    pub values: Vec<toml::Value>,
}

impl Point {
    /// The point's overrides, one per axis.
    pub fn overrides(&self, axes: &[Axis]) -> Vec<Override> {
        axes.iter().zip(&self.values).map(|(a, v)| Override::new(a.path.clone(), v.clone())).collect()
    }

    /// `path=value, ...` for messages.
    pub fn describe(&self, axes: &[Axis]) -> String {
        let parts: Vec<String> =
            axes.iter().zip(&self.values).map(|(a, v)| format!("{}={v}", a.path)).collect();
        parts.join(", ")
    }
}

/// The sweep's points: the cartesian product of `axes` (first axis slowest), or with `zip` the
/// i-th value of every axis (all axes must have as many values).
pub fn expand(axes: &[Axis], zip: bool) -> Result<Vec<Point>, SweepError> {
    if axes.is_empty() {
        return Err(SweepError::Spec(
            "nothing to vary: give at least one --vary PATH=VALUES (e.g. router.policy=round_robin,queue_aware)"
                .into(),
        ));
    }
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.path == a.path) {
            return Err(SweepError::Spec(format!("{} is varied twice: give each field one --vary", a.path)));
        }
        if a.values.is_empty() {
            return Err(SweepError::Vary { arg: a.to_string(), reason: "no values".into() });
        }
    }
    if zip {
        let n = axes[0].values.len();
        if axes.iter().any(|a| a.values.len() != n) {
            let lengths: Vec<String> =
                axes.iter().map(|a| format!("{} has {}", a.path, a.values.len())).collect();
            return Err(SweepError::Spec(format!(
                "--zip needs every --vary to have as many values, but {}",
                lengths.join(", ")
            )));
        }
        return Ok((0..n)
            .map(|i| Point { index: i as u32, values: axes.iter().map(|a| a.values[i].clone()).collect() })
            .collect());
    }
    let total = axes.iter().try_fold(1usize, |acc, a| acc.checked_mul(a.values.len()));
    let total = match total {
        Some(t) if t <= MAX_POINTS => t,
        _ => {
            return Err(SweepError::Spec(format!(
                "the product of the --vary axes has more than {MAX_POINTS} points; vary fewer fields or \
                 use --zip"
            )));
        }
    };
    let mut points = Vec::with_capacity(total);
    let mut digits = vec![0usize; axes.len()];
    for index in 0..total {
        points.push(Point {
            index: index as u32,
            values: axes.iter().zip(&digits).map(|(a, &d)| a.values[d].clone()).collect(),
        });
        for k in (0..axes.len()).rev() {
            digits[k] += 1;
            if digits[k] < axes[k].values.len() {
                break;
            }
            digits[k] = 0;
        }
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Value::{Float, Integer, String as Str};

    fn axis(s: &str) -> Axis {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        s.parse::<Axis>().unwrap_err().to_string()
    }

    #[test]
    fn an_integer_range_includes_its_end_when_a_step_lands_on_it() {
        let a = axis("workload.phases.1.arrival.rate=2..10:2");
        assert_eq!(a.path, "workload.phases.1.arrival.rate");
        assert_eq!(a.values, [2, 4, 6, 8, 10].map(Integer));
        assert_eq!(axis("x=2..9:2").values, [2, 4, 6, 8].map(Integer));
        assert_eq!(axis("x=3..5").values, [3, 4, 5].map(Integer));
    }

    #[test]
    fn a_float_range_gives_exact_decimals_and_its_end() {
        assert_eq!(axis("x=0.1..0.3:0.1").values, [0.1, 0.2, 0.3].map(Float));
        assert_eq!(axis("x=0..1:0.25").values, [0.0, 0.25, 0.5, 0.75, 1.0].map(Float));
        assert_eq!(axis("x=2..40:2").values.len(), 20);
    }

    #[test]
    fn a_list_holds_toml_values_and_bare_words() {
        let a = axis("router.policy=round_robin, queue_aware,least_outstanding");
        assert_eq!(a.values, ["round_robin", "queue_aware", "least_outstanding"].map(|s| Str(s.into())));
        assert!(!a.is_numeric());
        let b = axis("x=1,2.5,true,[1,2],\"a,b\"");
        assert_eq!(b.values.len(), 5);
        assert_eq!(b.values[0], Integer(1));
        assert_eq!(b.values[1], Float(2.5));
        assert_eq!(b.values[2], toml::Value::Boolean(true));
        assert_eq!(b.values[3], toml::Value::Array(vec![Integer(1), Integer(2)]));
        assert_eq!(b.values[4], Str("a,b".into()));
    }

    #[test]
    fn an_empty_range_is_one_clear_error_naming_the_argument() {
        let e = err("workload.phases.1.arrival.rate=2..1");
        assert!(e.contains("--vary 'workload.phases.1.arrival.rate=2..1'"), "{e}");
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn malformed_axes_are_refused_with_the_reason() {
        assert!(err("x=2..40:0").contains("step must be positive"));
        assert!(err("x=2..abc").contains("end `abc` is not a number"));
        assert!(err("x=1,,2").contains("empty"));
        assert!(err("x=").contains("no values"));
        assert!(err("no-equals-sign").contains("PATH=VALUES"));
        assert!(err("a..b=1,2").contains("--vary 'a..b=1,2'"));
        assert!(err("x=0..1e9:1e-3").contains("more than"));
    }

    #[test]
    fn the_product_varies_the_last_axis_fastest() {
        let axes = [axis("a=1..2"), axis("b=x,y,z")];
        let points = expand(&axes, false).unwrap();
        assert_eq!(points.len(), 6);
        assert_eq!(points[1].values, vec![Integer(1), Str("y".into())]);
        assert_eq!(points[3].values, vec![Integer(2), Str("x".into())]);
        assert_eq!(points[5].index, 5);
        assert_eq!(points[4].describe(&axes), "a=2, b=\"y\"");
    }

    #[test]
    fn zipped_axes_pair_values_and_need_equal_lengths() {
        let points = expand(&[axis("a=1..3"), axis("b=x,y,z")], true).unwrap();
        assert_eq!(points.len(), 3);
        assert_eq!(points[2].values, vec![Integer(3), Str("z".into())]);
        let e = expand(&[axis("a=1..3"), axis("b=x,y")], true).unwrap_err().to_string();
        assert!(e.contains("a has 3, b has 2"), "{e}");
    }

    #[test]
    fn a_sweep_needs_an_axis_and_distinct_fields() {
        assert!(expand(&[], false).is_err());
        let e = expand(&[axis("a=1,2"), axis("a=3")], false).unwrap_err().to_string();
        assert!(e.contains("varied twice"), "{e}");
    }
}
