//! `sweep merge`: put the shards of one sweep back together into the sweep dir an unsharded run
//! would have written, byte for byte.
//!
//! The shards must be of one sweep (same `spec_hash`, schema version and shard count), each shard
//! exactly once, and together hold every point. A point lives in exactly one shard, so the merged
//! table is the shards' rows stably sorted by point, cells copied verbatim. Run dirs (`runs/`) are
//! left where they are. This module does not run simulations.

use super::SweepError;
use super::schema::{self, SweepMeta, files};
use super::shard::Shard;
use std::path::{Path, PathBuf};

/// Merges the shard dirs `dirs` into `out` (`sweep.json` + `sweep.csv`); returns the merged meta.
pub fn merge_shards(dirs: &[PathBuf], out: &Path) -> Result<SweepMeta, SweepError> {
    let Some(first_dir) = dirs.first() else {
        return Err(SweepError::Merge("no shard dirs given".into()));
    };
    let metas = dirs.iter().map(|d| schema::read_meta(d)).collect::<Result<Vec<_>, _>>()?;
    let first = &metas[0];
    let count = first.shard.unwrap_or(Shard::WHOLE).count;
    let mut seen: Vec<Option<&Path>> = vec![None; count as usize];
    for (dir, meta) in dirs.iter().zip(&metas) {
        if meta.spec_hash != first.spec_hash {
            return Err(SweepError::Merge(format!(
                "{} and {} are shards of different sweeps (spec hashes {} and {}): the scenario file, \
                 --vary, --set, --variant, --reps or --zip differ",
                first_dir.display(),
                dir.display(),
                first.spec_hash,
                meta.spec_hash
            )));
        }
        let shard = meta.shard.unwrap_or(Shard::WHOLE);
        if shard.count != count {
            return Err(SweepError::Merge(format!(
                "{} is shard {shard} but {} is one of {count} shards: merge shards of one split",
                dir.display(),
                first_dir.display()
            )));
        }
        let slot = &mut seen[(shard.index - 1) as usize];
        if let Some(other) = slot {
            return Err(SweepError::Merge(format!(
                "{} and {} are both shard {shard}: give each shard once",
                other.display(),
                dir.display()
            )));
        }
        *slot = Some(dir.as_path());
    }
    if let Some(i) = seen.iter().position(Option::is_none) {
        return Err(SweepError::Merge(format!(
            "shard {}/{count} is missing: give every shard's dir (points {} are not covered)",
            i + 1,
            missing_points(first.total_points, Shard { index: i as u32 + 1, count })
        )));
    }

    let mut header: Option<csv::StringRecord> = None;
    let mut rows: Vec<(u32, csv::StringRecord)> = Vec::new();
    let mut covered = vec![false; first.total_points as usize];
    for (dir, meta) in dirs.iter().zip(&metas) {
        let path = dir.join(files::SWEEP_CSV);
        let (head, records) = schema::read_records(&path)?;
        match &header {
            None => header = Some(head),
            Some(h) if *h != head => {
                return Err(SweepError::Merge(format!(
                    "{} has other columns than {}",
                    path.display(),
                    first_dir.join(files::SWEEP_CSV).display()
                )));
            }
            Some(_) => {}
        }
        let shard = meta.shard.unwrap_or(Shard::WHOLE);
        for (i, rec) in records.into_iter().enumerate() {
            let point = rec.get(0).and_then(|p| p.parse::<u32>().ok()).filter(|&p| p < first.total_points);
            let Some(point) = point.filter(|&p| shard.owns(p)) else {
                return Err(SweepError::Malformed {
                    path: path.clone(),
                    reason: format!(
                        "line {}: point {:?} is not one of shard {shard}'s points of a {}-point sweep",
                        i + 2,
                        rec.get(0).unwrap_or(""),
                        first.total_points
                    ),
                });
            };
            covered[point as usize] = true;
            rows.push((point, rec));
        }
    }
    if let Some(p) = covered.iter().position(|c| !c) {
        return Err(SweepError::Merge(format!(
            "point {p} has no rows: its shard's sweep.csv is incomplete; re-run that shard"
        )));
    }
    rows.sort_by_key(|(p, _)| *p);

    let meta = SweepMeta { shard: None, ..first.clone() };
    schema::write_meta(out, &meta)?;
    let path = out.join(files::SWEEP_CSV);
    let mut w = csv::Writer::from_path(&path).map_err(SweepError::malformed(&path))?;
    if let Some(h) = &header {
        w.write_record(h).map_err(SweepError::malformed(&path))?;
    }
    for (_, rec) in &rows {
        w.write_record(rec).map_err(SweepError::malformed(&path))?;
    }
    w.flush().map_err(SweepError::io(&path))?;
    Ok(meta)
}

/// The points of `shard`, for messages: `1, 3, 5, ...`.
fn missing_points(total: u32, shard: Shard) -> String {
    let points: Vec<String> = (0..total).filter(|&p| shard.owns(p)).take(6).map(|p| p.to_string()).collect();
    let more = if (0..total).filter(|&p| shard.owns(p)).count() > 6 { ", ..." } else { "" };
    format!("{}{more}", points.join(", "))
}
