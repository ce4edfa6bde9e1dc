//! `modelsguard explain` from the command line: shards run in parallel by `xargs -P` (as a Slurm
//! array or a Kubernetes Indexed Job would run them) merge into the unsharded explanation byte for
//! byte, and `simulate --explain` refuses anything but two variants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_modelsguard");

fn seed() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed-6xh100.toml").display().to_string()
}

/// The explain arguments shared by every run: the seed cut to 3 s phases, 2 replications.
fn common() -> String {
    format!(
        "explain {} --from baseline --to managed --replications 2 --no-operating-point \
         --set workload.phases.*.duration_s=3",
        seed()
    )
}

fn sh(script: &str) -> std::process::Output {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn shards_run_by_xargs_merge_into_the_unsharded_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    sh(&format!("'{BIN}' {} --out '{d}/whole'", common()));
    sh(&format!(
        // `@` as the placeholder: xargs -I replaces it everywhere, and a temp dir's random name
        // may hold any letter.
        "printf '1\\n2\\n3\\n' | xargs -P 3 -I @ sh -c \"'{BIN}' {} --shard @/3 --out '{d}/shard-@'\"",
        common()
    ));
    let out =
        sh(&format!("'{BIN}' explain merge '{d}/shard-1' '{d}/shard-2' '{d}/shard-3' --out '{d}/merged'"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("llama-3.3-70b-awq - p90 TTFT"));
    for f in ["explain.json", "sweep.csv", "explain-spec.json"] {
        let a = std::fs::read(dir.path().join("whole").join(f)).unwrap();
        let b = std::fs::read(dir.path().join("merged").join(f)).unwrap();
        assert!(a == b, "{f} differs between the unsharded and the merged explanation");
    }
    assert!(dir.path().join("merged/waterfall-llama-3.3-70b-awq-ttft_p90.png").is_file());
}

#[test]
fn simulate_explain_needs_exactly_two_variants() {
    let out = Command::new(BIN)
        .args(["simulate", &seed(), "--variant", "baseline", "--explain", "--no-report"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exactly two variants") && err.contains("--variant A --variant B"), "{err}");
}
