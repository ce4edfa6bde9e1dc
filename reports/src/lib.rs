//! Reports: PNG charts and report.md drawn from run dirs.
