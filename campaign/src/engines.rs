//! A variant's engines for the length of its runs: `live up` (the launcher's own supervisor, on a
//! task of this process) until the campaign stops it, which tears the engines down exactly as
//! `live down` does (SIGTERM to each process group, SIGKILL after the grace period).
//!
//! Ready means the launcher has written its state file with the LB's address: every engine
//! answered `/health` and the LB listens (on a free port). With `--emulate`, each instance's
//! launch command becomes `<modelsguard> emulate <scenario> --variant V --instances <instance>`
//! with the campaign's overrides: one emulator process per instance, started, supervised and
//! stopped like a real engine. (So colocated emulated instances do not slow each other down: a
//! dry run checks the plumbing, not the contention model.)

use crate::interrupt::Interrupt;
use live::launcher::{LaunchError, LaunchOptions, STATE_FILE, live_up_until, read_state};
use sim::scenario::{Override, Scenario};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the engines ended, when they did on their own: what happened and the log that says more.
#[derive(Clone, Debug)]
pub(crate) struct EngineExit {
    /// The launcher's error.
    pub message: String,
    /// The engine's log when one engine died, else the engines' log directory.
    pub log: PathBuf,
}

/// Why the engines are not up.
pub(crate) enum StartError {
    /// An engine died, timed out or could not start.
    Failed(EngineExit),
    /// Ctrl-C while waiting (the engines were stopped).
    Interrupted,
}

/// Running engines and their LB.
pub(crate) struct Engines {
    task: Option<JoinHandle<Result<(), LaunchError>>>,
    exit: Option<EngineExit>,
    stop: Option<oneshot::Sender<()>>,
    logs: PathBuf,
    /// The LB's base URL.
    pub lb_url: String,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A literal for a launch template: braces doubled so the launcher keeps them.
fn template_literal(s: &str) -> String {
    shell_quote(s).replace('{', "{{").replace('}', "}}")
}

/// The launch template that serves one instance of `variant` with `exe emulate`.
pub(crate) fn emulate_template(
    exe: &Path,
    scenario_file: &Path,
    variant: &str,
    overrides: &[Override],
) -> String {
    let file = std::fs::canonicalize(scenario_file).unwrap_or_else(|_| scenario_file.to_path_buf());
    let mut t = format!(
        "exec {} emulate {} --variant {} --instances {{instance}} --bind {{host}}",
        template_literal(&exe.display().to_string()),
        template_literal(&file.display().to_string()),
        template_literal(variant)
    );
    for o in overrides {
        t.push_str(" --set ");
        t.push_str(&template_literal(&o.to_string()));
    }
    t
}

fn exit_of(res: Result<Result<(), LaunchError>, tokio::task::JoinError>, logs: &Path) -> EngineExit {
    match res {
        Ok(Ok(())) => EngineExit { message: "the engines stopped".into(), log: logs.to_path_buf() },
        Ok(Err(e)) => {
            let log = match &e {
                LaunchError::EngineExited { log, .. } => log.clone(),
                _ => logs.to_path_buf(),
            };
            EngineExit { message: e.to_string(), log }
        }
        Err(e) => {
            EngineExit { message: format!("the engine supervisor failed: {e}"), log: logs.to_path_buf() }
        }
    }
}

impl Engines {
    /// Starts `scenario`'s engines with `opts` and waits until they and the LB are ready.
    pub async fn start(
        scenario: &Scenario,
        opts: LaunchOptions,
        interrupt: &mut Interrupt,
    ) -> Result<Engines, StartError> {
        let state_path = opts.run_dir.join(STATE_FILE);
        let logs = opts.run_dir.join("logs");
        let (tx, rx) = oneshot::channel::<()>();
        let s = scenario.clone();
        let task = tokio::spawn(async move {
            live_up_until(&s, opts, async move {
                let _ = rx.await;
            })
            .await
        });
        let mut engines =
            Engines { task: Some(task), exit: None, stop: Some(tx), logs, lb_url: String::new() };
        let me = std::process::id();
        loop {
            if interrupt.level() > 0 {
                let _ = engines.stop().await;
                return Err(StartError::Interrupted);
            }
            tokio::select! {
                exit = engines.wait_exit() => return Err(StartError::Failed(exit)),
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Ok(state) = read_state(&state_path)
                        && state.supervisor_pid == me
                        && let Some(url) = state.lb_url
                    {
                        engines.lb_url = url;
                        return Ok(engines);
                    }
                }
                _ = interrupt.raised() => {}
            }
        }
    }

    /// Waits until the engines end on their own (cancel-safe); how they ended.
    pub async fn wait_exit(&mut self) -> EngineExit {
        if let Some(task) = self.task.as_mut() {
            let res = task.await;
            self.task = None;
            self.exit = Some(exit_of(res, &self.logs));
        }
        match &self.exit {
            Some(e) => e.clone(),
            None => EngineExit { message: "the engines stopped".into(), log: self.logs.clone() },
        }
    }

    /// Stops the engines and the LB (SIGTERM, SIGKILL after the grace period); how they ended
    /// when that was not this stop.
    pub async fn stop(mut self) -> Result<(), EngineExit> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Ok(())) => Ok(()),
                other => Err(exit_of(other, &self.logs)),
            },
            None => {
                Err(self.exit.unwrap_or(EngineExit { message: "the engines stopped".into(), log: self.logs }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn a_quoted_word_reads_back_as_itself_in_sh(word in "[ -~]{0,30}") {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(&word)))
                .output()
                .unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out.stdout), word);
        }
    }

    #[test]
    fn the_emulate_template_keeps_placeholders_and_escapes_literal_braces() {
        let mut mix = toml::Table::new();
        mix.insert("a".into(), toml::Value::Integer(1));
        let ov = Override::new("workload.phases.0.mix", toml::Value::Table(mix));
        let t = emulate_template(Path::new("/bin/mg"), Path::new("/nonexistent/s.toml"), "base line", &[ov]);
        assert!(
            t.starts_with(
                "exec /bin/mg emulate /nonexistent/s.toml --variant 'base line' --instances {instance} --bind {host} --set "
            ),
            "{t}"
        );
        assert!(t.contains("{{") && t.contains("}}"), "{t}");
    }
}
