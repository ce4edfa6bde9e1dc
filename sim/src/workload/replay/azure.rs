//! Azure LLM inference traces (Patel et al., Splitwise, ISCA 2024): `TIMESTAMP` (wall clock),
//! `ContextTokens`, `GeneratedTokens`; rows name no model.

use super::TraceRow;
use super::csv_fields::Table;
use crate::workload::WorkloadError;
use std::path::Path;

/// Column names of the Azure traces.
pub(super) const COLUMNS: [&str; 3] = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

const FORMAT: &str = "an Azure trace has columns TIMESTAMP,ContextTokens,GeneratedTokens";

/// Whether a CSV header is an Azure trace's.
pub(super) fn matches(headers: &[String]) -> bool {
    COLUMNS.iter().all(|c| headers.iter().any(|h| h == c))
}

/// Reads every row.
pub(super) fn read(path: &Path) -> Result<Vec<TraceRow>, WorkloadError> {
    let mut t = Table::open(path)?;
    let [ts, ctx, generated] =
        [t.column(COLUMNS[0], FORMAT)?, t.column(COLUMNS[1], FORMAT)?, t.column(COLUMNS[2], FORMAT)?];
    let mut rows = Vec::new();
    while t.next()? {
        let stamp = t.field(ts);
        let time_ns = parse_timestamp_ns(stamp).map_err(|r| t.err(ts, format!("{stamp:?}: {r}")))?;
        rows.push(TraceRow {
            line: t.line(),
            time_ns,
            model: None,
            prompt: t.tokens(ctx)?,
            output: t.tokens(generated)?,
            blocks: Vec::new(),
        });
    }
    Ok(rows)
}

/// Nanoseconds since 1970-01-01 of a wall-clock `YYYY-MM-DD HH:MM:SS[.fffffffff]` (a `T` may
/// separate date and time; no time zone; up to 9 fractional digits).
pub(crate) fn parse_timestamp_ns(s: &str) -> Result<i128, String> {
    const FORMAT: &str = "expected YYYY-MM-DD HH:MM:SS.fffffff";
    let (date, time) = s.trim().split_once([' ', 'T']).ok_or(FORMAT)?;
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(da), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(FORMAT.into());
    };
    let num = |x: &str| -> Result<u32, String> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FORMAT.into());
        }
        x.parse::<u32>().map_err(|_| FORMAT.to_string())
    };
    let (y, mo, da) = (num(y)?, num(mo)?, num(da)?);
    if !(1..=12).contains(&mo) || da < 1 || da > days_in_month(y, mo) {
        return Err(format!("no such date {date}"));
    }
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(se), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(FORMAT.into());
    };
    let (h, mi, se) = (num(h)?, num(mi)?, num(se)?);
    if h > 23 || mi > 59 || se > 59 {
        return Err(format!("no such time of day {hms}"));
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{FORMAT} (at most 9 fractional digits)"));
    }
    let frac_ns =
        if frac.is_empty() { 0 } else { i128::from(num(frac)?) * 10i128.pow(9 - frac.len() as u32) };
    let days = days_from_civil(i64::from(y), mo, da);
    let secs = i128::from(days) * 86_400 + i128::from(h * 3600 + mi * 60 + se);
    Ok(secs * 1_000_000_000 + frac_ns)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_timestamps_parse_to_the_nanosecond() {
        let a = parse_timestamp_ns("2023-11-16 18:15:46.6805900").unwrap();
        let b = parse_timestamp_ns("2023-11-16 18:15:50.9951690").unwrap();
        assert_eq!(b - a, 4_314_579_000);
        // 2023-11-16 is day 19677 since the epoch.
        assert_eq!(parse_timestamp_ns("2023-11-16 00:00:00").unwrap(), 19_677 * 86_400 * 1_000_000_000);
        let over_midnight = parse_timestamp_ns("2024-03-01 00:00:00.5").unwrap()
            - parse_timestamp_ns("2024-02-29T23:59:59.5").unwrap();
        assert_eq!(over_midnight, 1_000_000_000);
    }

    #[test]
    fn malformed_timestamps_are_rejected_with_the_expected_format() {
        for bad in [
            "2023-11-16",
            "2023-13-01 00:00:00",
            "2023-02-29 00:00:00",
            "2023-11-16 25:00:00",
            "x-y-z 1:2:3",
            "2023-11-16 10:00:00.1234567890",
        ] {
            let e = parse_timestamp_ns(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(parse_timestamp_ns("16/11/2023 18:15").unwrap_err().contains("YYYY-MM-DD"));
    }
}
