//! The engines' own per-step logs, fetched at the end of a live run: `GET /steps` on each instance
//! (served by the reference engine, `live/reference-engine/`: CSV, header first, one row per
//! step) is written into the run dir's `steps.csv` with the instance name as a first column
//! `instance`. `calibrate` prefers it to reconstructing steps from client timestamps.
//!
//! An engine without the endpoint (stock vLLM, the emulator: 404, or nothing listening any more)
//! simply has no log; that is not a failure. Other answers (a 5xx, a body that is not CSV, a header
//! unlike the first log's) are skipped with the reason recorded. It does not interpret the
//! columns: `calibration` checks them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file written into the run dir.
pub const STEPS_CSV: &str = "steps.csv";

/// Longest wait for one instance's log (it can hold tens of thousands of rows).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// One instance whose log is fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepLogTarget {
    /// Instance name (the `instance` column).
    pub instance: String,
    /// The log's URL, e.g. `http://127.0.0.1:8001/steps`.
    pub url: String,
}

/// What fetching the logs gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepLogs {
    /// `steps.csv` when any instance had a log.
    pub path: Option<PathBuf>,
    /// Instances whose log was written, with their row counts.
    pub written: Vec<(String, usize)>,
    /// Instances with no log endpoint (404 or unreachable).
    pub absent: Vec<String>,
    /// Instances whose answer could not be used, with the reason.
    pub skipped: Vec<(String, String)>,
}

enum Fetched {
    Absent,
    Body(String),
    Unusable(String),
}

async fn fetch_one(http: &reqwest::Client, url: &str) -> Fetched {
    let resp = match http.get(url).timeout(FETCH_TIMEOUT).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Fetched::Absent,
        Err(e) => return Fetched::Unusable(format!("GET {url}: {}", crate::client::error_chain(&e))),
    };
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
        return Fetched::Absent;
    }
    if !status.is_success() {
        return Fetched::Unusable(format!("GET {url}: HTTP {status}"));
    }
    match resp.text().await {
        Ok(t) => Fetched::Body(t),
        Err(e) => {
            Fetched::Unusable(format!("GET {url}: reading the body: {}", crate::client::error_chain(&e)))
        }
    }
}

/// Parses a log body: its header and rows (each as its fields).
fn parse(body: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(body.as_bytes());
    let header: Vec<String> =
        r.headers().map_err(|e| format!("not CSV: {e}"))?.iter().map(str::to_string).collect();
    if header.is_empty() || header.iter().all(|h| h.is_empty()) {
        return Err("empty answer (no CSV header)".into());
    }
    let rows = r
        .records()
        .map(|rec| rec.map(|x| x.iter().map(str::to_string).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()
        .map_err(|e| format!("not CSV: {e}"))?;
    Ok((header, rows))
}

/// Fetches every target's log and writes the ones found to `dir/steps.csv` (removing a stale one
/// when none is found). Only writing the file can fail.
pub async fn fetch_step_logs(
    http: &reqwest::Client,
    targets: &[StepLogTarget],
    dir: &Path,
) -> io::Result<StepLogs> {
    let mut out = StepLogs::default();
    let mut header: Option<Vec<String>> = None;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for t in targets {
        match fetch_one(http, &t.url).await {
            Fetched::Absent => out.absent.push(t.instance.clone()),
            Fetched::Unusable(reason) => out.skipped.push((t.instance.clone(), reason)),
            Fetched::Body(body) => match parse(&body) {
                Err(reason) => out.skipped.push((t.instance.clone(), format!("GET {}: {reason}", t.url))),
                Ok((h, r)) => {
                    if header.as_ref().is_some_and(|first| *first != h) {
                        out.skipped.push((
                            t.instance.clone(),
                            format!("GET {}: its columns differ from the first log's", t.url),
                        ));
                        continue;
                    }
                    header.get_or_insert(h);
                    out.written.push((t.instance.clone(), r.len()));
                    rows.extend(r.into_iter().map(|mut fields| {
                        fields.insert(0, t.instance.clone());
                        fields
                    }));
                }
            },
        }
    }
    let path = dir.join(STEPS_CSV);
    let Some(header) = header else {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
        return Ok(out);
    };
    let annotate = |e: csv::Error| io::Error::other(format!("{}: {e}", path.display()));
    let mut w = csv::Writer::from_path(&path).map_err(annotate)?;
    w.write_record(std::iter::once("instance").chain(header.iter().map(String::as_str))).map_err(annotate)?;
    for r in &rows {
        w.write_record(r).map_err(annotate)?;
    }
    w.flush()?;
    out.path = Some(path);
    Ok(out)
}
