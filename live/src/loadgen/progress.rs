//! The progress line on stderr: sent / in flight / done / failed / TTFT p50, at most every
//! 500 ms. Redrawn in place on a terminal, one line per update otherwise.

use sim::metrics::LogHistogram;
use std::io::Write;

/// Running counts for the progress line.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub sent: u64,
    pub planned: Option<u64>,
    pub done: u64,
    pub failed: u64,
    pub ttft: LogHistogram,
    pub terminal: bool,
    drawn: bool,
}

impl Progress {
    pub fn new(planned: Option<u64>, terminal: bool) -> Self {
        Progress { planned, terminal, ttft: LogHistogram::new(), ..Default::default() }
    }

    pub fn line(&self, in_flight: usize) -> String {
        let sent = match self.planned {
            Some(p) => format!("{}/{p}", self.sent),
            None => self.sent.to_string(),
        };
        let p50 = self.ttft.percentile(50.0).map_or("-".to_string(), |v| format!("{:.0} ms", v * 1e3));
        format!(
            "sent {sent}  in flight {in_flight}  done {}  failed {}  TTFT p50 {p50}",
            self.done, self.failed
        )
    }

    pub fn draw(&mut self, in_flight: usize) {
        let line = self.line(in_flight);
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the run.
        let _ = if self.terminal { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
        self.drawn = true;
    }

    pub fn finish(&mut self, in_flight: usize) {
        self.draw(in_flight);
        if self.terminal && self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}
