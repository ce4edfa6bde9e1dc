//! The one reader of Linux's `/proc` (proc(5)): a process's state, CPU time and start time from
//! `/proc/<pid>/stat`, and this process's peak resident memory from `/proc/self/status`. Every
//! function returns `None` off Linux or when the file cannot be read or parsed.

/// What the harness needs of `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 14: user-mode CPU time, clock ticks.
    pub utime_ticks: u64,
    /// Field 15: kernel-mode CPU time, clock ticks.
    pub stime_ticks: u64,
    /// Field 22: start time after boot, clock ticks (with the pid, identifies a process).
    pub start_ticks: u64,
}

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux ABI the harness runs on).
pub const TICKS_PER_S: f64 = 100.0;

/// `/proc/<pid>/stat` of `pid`, or of this process for `None`.
pub fn stat(pid: Option<u32>) -> Option<ProcStat> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// Parses a `stat` line. The command name (field 2) may hold spaces and parentheses: the fields
/// are split after its last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        utime_ticks: f.get(11)?.parse().ok()?,
        stime_ticks: f.get(12)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// This process's CPU time so far (user + system), seconds.
pub fn cpu_seconds() -> Option<f64> {
    let s = stat(None)?;
    Some((s.utime_ticks + s.stime_ticks) as f64 / TICKS_PER_S)
}

/// This process's peak resident set size (`VmHWM` of `/proc/self/status`), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.state, s.utime_ticks, s.stime_ticks, s.start_ticks), ('S', 17, 5, 987654));
        assert_eq!(parse_stat("12 (x) R 1 2"), None, "a truncated line is None, not a panic");
    }

    #[test]
    fn this_process_has_a_stat_cpu_time_and_peak_memory_on_linux() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let s = stat(None).unwrap();
        assert_eq!(stat(Some(std::process::id())).map(|t| t.start_ticks), Some(s.start_ticks));
        assert!(cpu_seconds().unwrap() >= 0.0);
        assert!(peak_rss_mib().unwrap() > 0.0);
    }
}
