//! Overrides: value typing, wildcards, quoting, precedence of variant `set` and `--set`.

use crate::scenario_errors::{BASE, parse};
use sim::scenario::*;

fn ov(s: &str) -> Override {
    s.parse().unwrap()
}

#[test]
fn override_values_keep_their_toml_types_and_bare_words_are_strings() {
    assert_eq!(ov("a.b=20").value, toml::Value::Integer(20));
    assert_eq!(ov("a=1.5").value, toml::Value::Float(1.5));
    assert_eq!(ov("a=true").value, toml::Value::Boolean(true));
    assert_eq!(ov("router.policy=queue_aware").value, toml::Value::String("queue_aware".into()));
    assert_eq!(ov("a=\"quoted\"").value, toml::Value::String("quoted".into()));
    assert_eq!(ov("a=llama-3.1-8b").value, toml::Value::String("llama-3.1-8b".into()));
    assert_eq!(ov("a=[1, 2]").value, toml::Value::Array(vec![1.into(), 2.into()]));
    assert!(ov("a={ x = 1 }").value.is_table());
    assert_eq!(ov(" router.policy = random ").path, "router.policy");
}

#[test]
fn a_malformed_number_array_table_or_quoted_value_is_an_error_not_a_string() {
    for bad in ["a=1,5", "a=1.2.3", "a=1e", "a=[1, 2", "a={ x = 1", "a=\"open", "a='open", "a=--5"] {
        let err = bad.parse::<Override>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("does not parse"), "{bad}: {err}");
        assert!(err.contains("--set"), "the error names the flag: {err}");
    }
    // Bare words stay strings, even with digits in them.
    assert_eq!(ov("a=7b-model").value, toml::Value::String("7b-model".into()));
    assert_eq!(ov("a=h100").value, toml::Value::String("h100".into()));
}

#[test]
fn a_wildcard_sets_every_instance() {
    let f = parse(BASE, &["instances.*.engine.max_num_seqs=128"]).unwrap();
    assert!(f.variants[0].instances.iter().all(|i| i.engine.max_num_seqs == 128));
}

#[test]
fn a_phase_is_addressed_by_index() {
    let f = parse(BASE, &["workload.phases.0.arrival.rate=20"]).unwrap();
    assert_eq!(f.variants[0].workload.phases[0].arrival, ArrivalSpec::Poisson { rate: 20.0 });
}

#[test]
fn a_quoted_segment_may_hold_dots() {
    let f =
        parse(BASE, &["workload.phases.0.mix.\"llama-3.1-8b\"=3", "workload.phases.0.mix.\"qwen2.5-7b\"=1"])
            .unwrap();
    let mix = &f.variants[0].workload.phases[0].mix;
    assert_eq!(mix, &vec![(sim::ModelId(0), 0.75), (sim::ModelId(1), 0.25)]);
}

#[test]
fn a_wildcard_over_a_table_sets_every_value() {
    let text = BASE.replace(
        "input_tokens = { dist = \"fixed\", value = 100 }",
        "mix = { \"llama-3.1-8b\" = 1, \"qwen2.5-7b\" = 3 }\ninput_tokens = { dist = \"fixed\", value = 100 }",
    );
    let f = parse(&text, &["workload.phases.*.mix.*=2"]).unwrap();
    assert_eq!(f.variants[0].workload.phases[0].mix, vec![(sim::ModelId(0), 0.5), (sim::ModelId(1), 0.5)]);
}

#[test]
fn missing_tables_on_the_way_are_created() {
    let f = parse(BASE, &["defaults.engine.kv_cache=elastic", "slo.ttft_s=1"]).unwrap();
    assert!(f.variants[0].instances.iter().all(|i| i.engine.kv_cache == KvCacheMode::Elastic));
    assert_eq!(f.variants[0].slo.ttft_s, Some(1.0));
}

#[test]
fn command_line_overrides_win_over_the_variant_set() {
    let text = format!(
        "{BASE}\n[variants.v]\nset = {{ \"router.policy\" = \"queue_aware\", \"router.poll_interval_s\" = 5 }}\n"
    );
    let f = parse(&text, &["router.policy=random"]).unwrap();
    let r = &f.variant("v").unwrap().router;
    assert_eq!((r.policy, r.poll_interval_s), (RouterPolicy::Random, 5.0));
}

#[test]
fn command_line_overrides_cannot_edit_variants() {
    let text = format!("{BASE}\n[variants.v]\n");
    let e = parse(&text, &["variants.v.description=x"]).unwrap_err();
    assert_eq!(e.field, "variants.v.description");
    assert!(e.reason.contains("--variant"), "{e}");
}

#[test]
fn an_override_into_a_scalar_is_rejected() {
    let e = parse(BASE, &["router.policy=random", "router.policy.x=1"]).unwrap_err();
    assert!(e.reason.contains("no `x` inside"), "{e}");
}

#[test]
fn a_wildcard_over_an_empty_array_matches_nothing_and_says_so() {
    let e = parse(BASE, &["workload.phases=[]", "workload.phases.*.duration_s=3"]).unwrap_err();
    assert!(e.reason.contains("matched nothing"), "{e}");
}

#[test]
fn an_override_can_replace_a_whole_table() {
    let f = parse(BASE, &["workload.phases.0.arrival={ process = \"gamma\", rate = 4, burstiness = 0.5 }"])
        .unwrap();
    assert_eq!(f.variants[0].workload.phases[0].arrival, ArrivalSpec::Gamma { rate: 4.0, burstiness: 0.5 });
}

#[test]
fn the_scenario_name_can_be_overridden() {
    let f = parse(BASE, &["name=renamed"]).unwrap();
    assert_eq!((f.name.as_str(), f.variants[0].name.as_str()), ("renamed", "renamed"));
}
