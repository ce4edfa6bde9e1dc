//! Shared rig of the end-to-end tests: a scenario's instances emulated on free ports, the LB in
//! front of them on a free port, and live-run options that never depend on Ctrl-C.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use live::emulator::{EmulatorHandle, EmulatorOptions};
use live::loadgen::stop_pair;
use live::proxy::{LbOptions, LbServer, LbState};
use live::run::{LiveRunOptions, ProgressMode, Target};
use sim::InstanceId;
use sim::scenario::{Override, Scenario, ScenarioFile, load_scenario};
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A file of the workspace, from the test's working directory or not.
pub fn workspace_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The one variant of a shipped scenario, with `--set`-style overrides.
pub fn load(rel: &str, overrides: &[&str]) -> (ScenarioFile, Scenario) {
    let ovs: Vec<Override> = overrides.iter().map(|o| o.parse().unwrap()).collect();
    let file = load_scenario(&workspace_file(rel), &ovs).unwrap();
    let s = file.variants[0].clone();
    (file, s)
}

/// Emulated instances and the LB in front of them, all on loopback.
pub struct Rig {
    pub emu: EmulatorHandle,
    /// The scenario with the ports the instances actually listen on.
    pub scenario: Scenario,
    pub lb: LbState,
    pub lb_url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Rig {
    pub async fn start(scenario: &Scenario, lb: LbOptions) -> Rig {
        let mut s = scenario.clone();
        for i in &mut s.instances {
            i.port = 0;
        }
        let emu = EmulatorHandle::start(&s, None, EmulatorOptions::default()).await.unwrap();
        for (k, i) in s.instances.iter_mut().enumerate() {
            i.port = emu.addr(InstanceId(k as u32)).unwrap().port();
        }
        let server = LbServer::bind(&s, LbOptions { port: 0, ..lb }).await.unwrap();
        let lb_url = format!("http://{}", server.local_addr().unwrap());
        let state = server.state().clone();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Rig { emu, scenario: s, lb: state, lb_url, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.emu.shutdown().await;
    }
}

/// Live-run options against `target` writing `dir`: no progress line, scraping every 250 ms,
/// and a stop signal that never fires (tests must not depend on Ctrl-C).
pub fn run_opts(target: Target, dir: &Path) -> LiveRunOptions {
    let mut o = LiveRunOptions::new(target, dir);
    o.progress = ProgressMode::Never;
    let (handle, signal) = stop_pair();
    std::mem::forget(handle);
    o.stop = Some(signal);
    o
}
