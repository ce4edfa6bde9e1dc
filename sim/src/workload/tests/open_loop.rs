use super::*;
use crate::workload::{WorkloadError, open_loop_requests};

fn all(w: &WorkloadSpec, num_models: usize, seed: u64) -> Vec<RequestSpec> {
    open_loop_requests(w, num_models, seed, Path::new(".")).unwrap()
}

fn gap_stats(reqs: &[RequestSpec]) -> (f64, f64) {
    let gaps: Vec<f64> = reqs.windows(2).map(|w| secs(w[1].arrival) - secs(w[0].arrival)).collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt() / mean)
}

#[test]
fn constant_arrivals_are_spaced_exactly_one_over_the_rate() {
    let reqs = all(&workload(vec![counted(ArrivalSpec::Constant { rate: 4.0 }, 6)]), 1, 1);
    let t: Vec<u64> = reqs.iter().map(|r| r.arrival.0).collect();
    assert_eq!(t, vec![250_000_000, 500_000_000, 750_000_000, 1_000_000_000, 1_250_000_000, 1_500_000_000]);
    let ids: Vec<u64> = reqs.iter().map(|r| r.id.0).collect();
    assert_eq!(ids, (0..6).collect::<Vec<_>>());
}

#[test]
fn poisson_gaps_average_one_over_the_rate_over_100k_requests() {
    let reqs = all(&workload(vec![counted(ArrivalSpec::Poisson { rate: 20.0 }, 100_000)]), 1, 42);
    let (mean, cv) = gap_stats(&reqs);
    assert!((mean - 0.05).abs() < 0.0005, "mean gap {mean}");
    assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
}

#[test]
fn gamma_gaps_have_a_cv_of_one_over_sqrt_burstiness_over_100k_requests() {
    for k in [0.5, 2.0] {
        let reqs =
            all(&workload(vec![counted(ArrivalSpec::Gamma { rate: 5.0, burstiness: k }, 100_000)]), 1, 42);
        let (mean, cv) = gap_stats(&reqs);
        assert!((mean - 0.2).abs() < 0.003, "k {k}: mean gap {mean}");
        let want = 1.0 / f64::sqrt(k);
        assert!((cv - want).abs() < 0.03 * want, "k {k}: cv {cv}, want {want}");
    }
}

#[test]
fn a_count_bounded_phase_ends_at_its_last_arrival_and_the_next_starts_there() {
    let w = workload(vec![
        counted(ArrivalSpec::Constant { rate: 10.0 }, 5),
        counted(ArrivalSpec::Constant { rate: 1.0 }, 2),
    ]);
    let reqs = all(&w, 1, 1);
    assert_eq!(arrivals(&reqs), vec![0.1, 0.2, 0.3, 0.4, 0.5, 1.5, 2.5]);
    let phases: Vec<u32> = reqs.iter().map(|r| r.phase).collect();
    assert_eq!(phases, vec![0, 0, 0, 0, 0, 1, 1]);
}

#[test]
fn a_duration_bounded_phase_ends_at_start_plus_duration() {
    let w = workload(vec![
        timed(ArrivalSpec::Constant { rate: 10.0 }, 1.05),
        counted(ArrivalSpec::Constant { rate: 2.0 }, 2),
    ]);
    let reqs = all(&w, 1, 1);
    assert_eq!(reqs.iter().filter(|r| r.phase == 0).count(), 10, "arrivals at 0.1 .. 1.0");
    assert_eq!(arrivals(&reqs[10..]), vec![1.55, 2.05]);
}

#[test]
fn an_arrival_exactly_at_the_end_belongs_to_the_phase() {
    let reqs = all(&workload(vec![timed(ArrivalSpec::Constant { rate: 4.0 }, 1.0)]), 1, 1);
    assert_eq!(arrivals(&reqs), vec![0.25, 0.5, 0.75, 1.0]);
}

#[test]
fn with_both_bounds_whichever_comes_first_ends_the_phase() {
    let count_first =
        PhaseSpec { num_requests: Some(3), ..timed(ArrivalSpec::Constant { rate: 10.0 }, 100.0) };
    let time_first =
        PhaseSpec { num_requests: Some(1000), ..timed(ArrivalSpec::Constant { rate: 10.0 }, 0.5) };
    let next = counted(ArrivalSpec::Constant { rate: 1.0 }, 1);
    let reqs = all(&workload(vec![count_first, next.clone()]), 1, 1);
    assert_eq!(arrivals(&reqs), vec![0.1, 0.2, 0.3, 1.3]);
    let reqs = all(&workload(vec![time_first, next]), 1, 1);
    assert_eq!(arrivals(&reqs), vec![0.1, 0.2, 0.3, 0.4, 0.5, 1.5]);
}

#[test]
fn a_phase_with_no_arrival_in_its_duration_is_skipped_but_its_time_passes() {
    let w = workload(vec![
        timed(ArrivalSpec::Constant { rate: 0.1 }, 5.0),
        counted(ArrivalSpec::Constant { rate: 1.0 }, 1),
    ]);
    let reqs = all(&w, 1, 1);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].phase, secs(reqs[0].arrival)), (1, 6.0));
}

#[test]
fn a_ramp_sends_three_times_as_much_in_its_second_half_when_rising_from_zero() {
    let p = timed(ArrivalSpec::Ramp { start_rate: 0.0, end_rate: 200.0 }, 100.0);
    let reqs = all(&workload(vec![p]), 1, 9);
    let first = reqs.iter().filter(|r| secs(r.arrival) < 50.0).count() as f64;
    let n = reqs.len() as f64;
    assert!((n - 10_000.0).abs() < 300.0, "{n} requests, expected about 10000");
    assert!((first / n - 0.25).abs() < 0.015, "first-half share {}", first / n);
    assert!(reqs.iter().all(|r| secs(r.arrival) <= 100.0));
}

#[test]
fn the_mix_picks_models_in_proportion_to_their_weights() {
    let p = PhaseSpec {
        mix: vec![(ModelId(0), 1.0), (ModelId(1), 2.0), (ModelId(2), 7.0)],
        ..counted(ArrivalSpec::Poisson { rate: 100.0 }, 100_000)
    };
    let reqs = all(&workload(vec![p]), 3, 5);
    let mut counts = [0f64; 3];
    for r in &reqs {
        counts[r.model.index()] += 1.0;
    }
    let chi2: f64 = counts.iter().zip([0.1, 0.2, 0.7]).map(|(&o, p)| (o - 1e5 * p).powi(2) / (1e5 * p)).sum();
    // Chi-square with 2 degrees of freedom: 13.8 is the 0.1% critical value.
    assert!(chi2 < 13.8, "counts {counts:?}, chi2 {chi2}");
}

#[test]
fn a_model_with_weight_zero_is_never_picked() {
    let p = PhaseSpec {
        mix: vec![(ModelId(0), 0.0), (ModelId(1), 1.0)],
        ..counted(ArrivalSpec::Poisson { rate: 1.0 }, 1000)
    };
    assert!(all(&workload(vec![p]), 2, 1).iter().all(|r| r.model == ModelId(1)));
}

#[test]
fn per_model_lengths_override_the_phase_distributions_for_that_model_only() {
    let p = PhaseSpec {
        mix: vec![(ModelId(0), 1.0), (ModelId(1), 1.0)],
        per_model_lengths: vec![(ModelId(1), LengthDist::Fixed { value: 7 }, LengthDist::Fixed { value: 3 })],
        ..counted(ArrivalSpec::Poisson { rate: 1.0 }, 200)
    };
    let reqs = all(&workload(vec![p]), 2, 1);
    for r in &reqs {
        let want = if r.model == ModelId(1) { (7, 3) } else { (100, 10) };
        assert_eq!((r.num_prompt_tokens, r.max_tokens), want);
    }
    assert!(reqs.iter().any(|r| r.model == ModelId(0)) && reqs.iter().any(|r| r.model == ModelId(1)));
}

#[test]
fn prefixes_are_unique_per_model_and_group_and_never_longer_than_the_prompt() {
    let p = PhaseSpec {
        mix: vec![(ModelId(0), 1.0), (ModelId(1), 1.0)],
        input_tokens: LengthDist::Uniform { min: 10, max: 400 },
        ..counted(ArrivalSpec::Poisson { rate: 1.0 }, 20_000)
    };
    let mut w = workload(vec![p]);
    w.prefix = PrefixSpec { tokens: 200, groups: 4, fraction: 0.3 };
    let reqs = all(&w, 2, 3);
    let with: Vec<_> = reqs.iter().filter(|r| r.content.as_prefix().is_some()).collect();
    let share = with.len() as f64 / reqs.len() as f64;
    assert!((share - 0.3).abs() < 0.015, "prefix share {share}");
    let mut groups = std::collections::BTreeSet::new();
    for r in with {
        let p = r.content.as_prefix().unwrap();
        assert_eq!(p.group / 4, u64::from(r.model.0), "group ids are model * groups + g");
        assert_eq!(p.num_tokens, r.num_prompt_tokens.min(200));
        groups.insert(p.group);
    }
    assert_eq!(groups.into_iter().collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
}

#[test]
fn changing_one_models_lengths_leaves_arrivals_choices_and_other_models_untouched() {
    let base = PhaseSpec {
        mix: vec![(ModelId(0), 1.0), (ModelId(1), 1.0)],
        input_tokens: LengthDist::Lognormal { mean: 500.0, std: 200.0, min: 1, max: 4000 },
        ..counted(ArrivalSpec::Gamma { rate: 3.0, burstiness: 0.5 }, 2000)
    };
    let changed = PhaseSpec {
        per_model_lengths: vec![(
            ModelId(1),
            LengthDist::Normal { mean: 50.0, std: 5.0, min: 1, max: 100 },
            LengthDist::Uniform { min: 1, max: 9 },
        )],
        ..base.clone()
    };
    let a = all(&workload(vec![base]), 2, 77);
    let b = all(&workload(vec![changed]), 2, 77);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.arrival, x.model), (y.arrival, y.model));
        if x.model == ModelId(0) {
            assert_eq!(x, y);
        }
    }
}

#[test]
fn planned_requests_is_known_only_for_count_bounded_phases() {
    let w = workload(vec![
        counted(ArrivalSpec::Poisson { rate: 1.0 }, 7),
        counted(ArrivalSpec::closed_loop(2), 5),
    ]);
    assert_eq!(generator(&w, 1, 0).planned_requests(), Some(12));
    let w = workload(vec![
        counted(ArrivalSpec::Poisson { rate: 1.0 }, 7),
        timed(ArrivalSpec::Poisson { rate: 1.0 }, 5.0),
    ]);
    assert_eq!(generator(&w, 1, 0).planned_requests(), None);
}

#[test]
fn the_generator_is_exhausted_after_the_last_request() {
    let mut g = generator(&workload(vec![counted(ArrivalSpec::Poisson { rate: 1.0 }, 2)]), 1, 0);
    assert!(!g.is_exhausted());
    g.pop().unwrap();
    assert!(!g.is_exhausted());
    g.pop().unwrap();
    assert!(g.is_exhausted());
    assert_eq!((g.peek_time(), g.pop()), (None, None));
}

fn error_of(w: &WorkloadSpec, num_models: usize) -> String {
    WorkloadGenerator::new(w, num_models, 0, Path::new(".")).unwrap_err().to_string()
}

#[test]
fn invalid_phases_are_rejected_with_the_phase_and_a_fix() {
    let ok = counted(ArrivalSpec::Poisson { rate: 1.0 }, 5);
    let cases: Vec<(PhaseSpec, &str)> = vec![
        (phase(ArrivalSpec::Poisson { rate: 1.0 }), "never ends"),
        (phase(ArrivalSpec::closed_loop(4)), "never ends"),
        (counted(ArrivalSpec::Ramp { start_rate: 1.0, end_rate: 2.0 }, 9), "needs duration_s"),
        (counted(ArrivalSpec::Poisson { rate: 0.0 }, 9), "rate must be"),
        (counted(ArrivalSpec::closed_loop(0), 9), "concurrency must be >= 1"),
        (PhaseSpec { num_requests: Some(0), ..ok.clone() }, "num_requests = 0"),
        (PhaseSpec { duration_s: Some(-1.0), ..ok.clone() }, "duration_s must be"),
        (
            PhaseSpec { mix: vec![(ModelId(3), 1.0)], ..ok.clone() },
            "names model 3 but the scenario has 1 models",
        ),
        (PhaseSpec { mix: vec![(ModelId(0), 0.0)], ..ok.clone() }, "every mix weight is 0"),
        (PhaseSpec { mix: vec![(ModelId(0), 1.0), (ModelId(0), 2.0)], ..ok.clone() }, "appears twice"),
        (PhaseSpec { mix: vec![], ..ok.clone() }, "needs a model mix"),
        (
            PhaseSpec { input_tokens: LengthDist::Uniform { min: 5, max: 1 }, ..ok.clone() },
            "input_tokens: min (5) is larger than max (1)",
        ),
    ];
    for (bad, want) in cases {
        let w = workload(vec![ok.clone(), PhaseSpec { name: "bad one".into(), ..bad }]);
        let e = error_of(&w, 1);
        assert!(e.starts_with("workload.phases[1] (\"bad one\")"), "{e}");
        assert!(e.contains(want), "{e} should contain {want:?}");
    }
}

#[test]
fn empty_workloads_and_bad_prefixes_are_rejected() {
    assert!(error_of(&workload(vec![]), 1).contains("no phases"));
    let mut w = workload(vec![counted(ArrivalSpec::Poisson { rate: 1.0 }, 5)]);
    w.prefix = PrefixSpec { tokens: 10, groups: 0, fraction: 0.5 };
    assert!(error_of(&w, 1).contains("groups >= 1"));
    w.prefix = PrefixSpec { tokens: 10, groups: 2, fraction: 1.5 };
    assert!(error_of(&w, 1).contains("within [0, 1]"));
}

#[test]
fn open_loop_requests_refuses_a_closed_loop_phase() {
    let w = workload(vec![
        counted(ArrivalSpec::Poisson { rate: 1.0 }, 5),
        counted(ArrivalSpec::closed_loop(2), 5),
    ]);
    let e = open_loop_requests(&w, 1, 0, Path::new(".")).unwrap_err();
    assert!(matches!(e, WorkloadError::ClosedLoop { index: 1, .. }), "{e}");
}
