//! Bad scenarios: each kind of mistake is an error naming the field and the reason, never a panic.

use sim::InstanceId;
use sim::scenario::{Override, ScenarioError, ScenarioFile, parse_scenario};
use std::path::Path;

/// A small valid scenario: an 8B and a Qwen on two H100s, one open-loop phase.
pub const BASE: &str = r#"
name = "t"
seed = 1

[cluster]
gpu = "H100-80GB-SXM"
num_gpus = 2

[[instances]]
model = "llama-3.1-8b"
gpu = 0

[[instances]]
model = "qwen2.5-7b"
gpu = 1

[[workload.phases]]
duration_s = 10
arrival = { process = "poisson", rate = 5.0 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 10 }
"#;

pub fn parse(text: &str, sets: &[&str]) -> Result<ScenarioFile, ScenarioError> {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    parse_scenario(text, Path::new("dir/test.toml"), &overrides)
}

#[track_caller]
fn fails(text: &str, sets: &[&str], field: &str, fragment: &str) -> ScenarioError {
    let e = parse(text, sets).expect_err("the scenario should be rejected");
    assert_eq!(e.field, field, "wrong field in: {e}");
    assert!(e.reason.contains(fragment), "reason lacks {fragment:?}: {e}");
    assert!(e.to_string().starts_with("dir/test.toml: "), "display: {e}");
    e
}

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn the_base_scenario_is_valid() {
    let f = parse(BASE, &[]).unwrap();
    assert_eq!(f.variants.len(), 1);
    assert_eq!(f.variants[0].variant, "default");
}

#[test]
fn an_unknown_field_is_named_with_its_path() {
    fails(&with("[router]\npolcy = \"random\""), &[], "router.polcy", "unknown field `polcy`");
}

#[test]
fn an_unknown_field_in_an_instance_engine_is_named_with_its_index() {
    fails(BASE, &["instances.1.engine.max_num_seq=8"], "instances[1].engine.max_num_seq", "unknown field");
}

#[test]
fn a_value_of_the_wrong_type_is_named() {
    fails(
        BASE,
        &["instances.0.engine.max_num_seqs=\"many\""],
        "instances[0].engine.max_num_seqs",
        "invalid type",
    );
}

#[test]
fn a_misspelt_enum_value_lists_the_choices() {
    fails(BASE, &["router.policy=fastest"], "router.policy", "round_robin");
}

#[test]
fn a_toml_syntax_error_gives_the_line() {
    let e = fails("name = \"t\"\n[cluster\n", &[], "line 2, column 9", "TOML syntax error");
    assert!(e.reason.len() < 200, "{e}");
}

#[test]
fn a_negative_arrival_rate_is_rejected() {
    fails(BASE, &["workload.phases.0.arrival.rate=-2.0"], "workload.phases[0].arrival.rate", "positive");
}

#[test]
fn a_zero_rate_is_rejected() {
    fails(BASE, &["workload.phases.0.arrival.rate=0"], "workload.phases[0].arrival.rate", "positive");
}

#[test]
fn a_zero_duration_is_rejected() {
    fails(BASE, &["workload.phases.0.duration_s=0"], "workload.phases[0].duration_s", "positive");
}

#[test]
fn a_zero_concurrency_is_rejected() {
    fails(
        BASE,
        &["workload.phases.0.arrival={ process = \"closed_loop\", concurrency = 0 }"],
        "workload.phases[0].arrival.concurrency",
        "at least 1",
    );
}

#[test]
fn a_workload_without_phases_is_rejected() {
    fails(BASE, &["workload.phases=[]"], "workload.phases", "no phases");
}

#[test]
fn a_phase_that_never_ends_is_rejected() {
    let text = BASE.replace("duration_s = 10\n", "");
    fails(&text, &[], "workload.phases[0]", "never ends");
}

#[test]
fn a_replay_phase_may_omit_duration_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    std::fs::write(&trace, "TIMESTAMP,ContextTokens,GeneratedTokens\n").unwrap();
    let text = BASE.replace("duration_s = 10\n", "").replace(
        "arrival = { process = \"poisson\", rate = 5.0 }",
        "arrival = { process = \"replay\", path = \"trace.csv\" }",
    );
    let f = parse_scenario(&text, &dir.path().join("s.toml"), &[]).unwrap();
    assert_eq!(f.variants[0].workload.phases[0].duration_s, None);
}

#[test]
fn a_missing_trace_or_profile_is_typed_with_its_path() {
    let text = BASE.replace("duration_s = 10\n", "").replace(
        "arrival = { process = \"poisson\", rate = 5.0 }",
        "arrival = { process = \"replay\", path = \"traces/gone.csv\" }",
    );
    let e = fails(&text, &[], "workload.phases[0].arrival.path", "does not exist");
    assert_eq!(e.missing_file.as_deref(), Some(Path::new("dir/traces/gone.csv")));
    let text = BASE.replace("gpu = 0\n", "gpu = 0\nprofile = \"gone.toml\"\n");
    let e = fails(&text, &[], "instances[0].profile", "does not exist");
    assert_eq!(e.missing_file.as_deref(), Some(Path::new("dir/gone.toml")));
    // Any other error carries none.
    let e = fails(&with("[router]\npolcy = \"random\""), &[], "router.polcy", "unknown field");
    assert_eq!(e.missing_file, None);
}

#[test]
fn a_ramp_needs_a_duration() {
    let text = BASE.replace("duration_s = 10\n", "num_requests = 50\n").replace(
        "{ process = \"poisson\", rate = 5.0 }",
        "{ process = \"ramp\", start_rate = 1.0, end_rate = 9.0 }",
    );
    fails(&text, &[], "workload.phases[0].duration_s", "ramp needs duration_s");
}

#[test]
fn an_instance_on_a_gpu_that_does_not_exist_is_rejected() {
    fails(
        BASE,
        &["instances.1.gpu=2"],
        "instances[1].gpu",
        "GPU index 2 does not exist: the cluster has 2 GPU(s)",
    );
}

#[test]
fn an_unknown_model_lists_the_known_ones() {
    let e = fails(BASE, &["instances.0.model=llama-4"], "instances[0].model", "unknown model \"llama-4\"");
    assert!(e.reason.contains("\"llama-3.3-70b-awq\""), "{e}");
}

#[test]
fn an_unknown_gpu_lists_the_known_ones() {
    let e = fails(BASE, &["cluster.gpu=B200"], "cluster.gpu", "unknown GPU \"B200\"");
    assert!(e.reason.contains("\"H100-80GB-SXM\", \"H200\", \"A100-80GB\", \"L40S\""), "{e}");
}

#[test]
fn a_duplicate_port_is_rejected() {
    fails(BASE, &["instances.*.port=9000"], "instances[1].port", "port 9000 is already used by instances[0]");
}

#[test]
fn a_mix_naming_a_model_without_instance_is_rejected() {
    fails(
        BASE,
        &["workload.phases.0.mix={ \"llama-3.3-70b-awq\" = 1 }"],
        "workload.phases[0].mix.llama-3.3-70b-awq",
        "has no instance",
    );
}

#[test]
fn a_mix_naming_an_unknown_model_lists_the_known_ones() {
    fails(BASE, &["workload.phases.0.mix={ gpt = 1 }"], "workload.phases[0].mix.gpt", "known models");
}

#[test]
fn a_mix_of_zero_weights_is_rejected() {
    fails(
        BASE,
        &["workload.phases.0.mix={ \"llama-3.1-8b\" = 0, \"qwen2.5-7b\" = 0.0 }"],
        "workload.phases[0].mix",
        "every mix weight is 0",
    );
}

#[test]
fn gpu_memory_utilization_above_one_is_rejected() {
    fails(
        BASE,
        &["instances.0.engine.gpu_memory_utilization=1.2"],
        "instances[0].engine.gpu_memory_utilization",
        "(0, 1]",
    );
}

#[test]
fn gpu_memory_utilization_of_zero_in_defaults_is_named_there() {
    fails(
        BASE,
        &["defaults.engine.gpu_memory_utilization=0"],
        "defaults.engine.gpu_memory_utilization",
        "(0, 1]",
    );
}

#[test]
fn static_instances_sharing_a_gpu_must_not_oversubscribe_it() {
    let e = fails(
        BASE,
        &["instances.*.gpu=0"],
        "instances[1].engine.gpu_memory_utilization",
        "reserve 1.80 of its memory",
    );
    assert!(e.reason.contains("llama-3.1-8b#0, qwen2.5-7b#0"), "{e}");
}

#[test]
fn shared_static_instances_at_half_the_gpu_each_are_accepted() {
    let f = parse(
        BASE,
        &[
            "instances.*.gpu=0",
            "instances.*.engine.gpu_memory_utilization=0.45",
            "instances.*.engine.max_model_len=8192",
        ],
    )
    .unwrap();
    assert_eq!(f.variants[0].instances[1].gpu.index(), 0);
}

#[test]
fn weights_that_do_not_fit_the_share_name_gpu_instance_and_sizes() {
    let e = fails(
        BASE,
        &["instances.1.model=llama-3.3-70b-awq", "instances.1.engine.gpu_memory_utilization=0.4"],
        "instances[1].engine.gpu_memory_utilization",
        "llama-3.3-70b-awq#0 does not fit on GPU 1 (H100-80GB-SXM)",
    );
    assert!(e.reason.contains("weights 37.03 GiB"), "{e}");
    assert!(e.reason.contains("79.18 GiB x gpu_memory_utilization 0.4 = 31.67 GiB"), "{e}");
}

#[test]
fn elastic_co_tenants_whose_weights_exceed_the_gpu_are_rejected() {
    let weights = sim::scenario::model_catalog()[0].weight_bytes();
    let text = with(&format!(
        "[gpu_catalog.tiny]\nmemory_bytes = {}\nbf16_flops = 1e14\nhbm_bytes_per_s = 1e12\n",
        weights + (1 << 20)
    ));
    fails(
        &text,
        &[
            "cluster.gpu=tiny",
            "instances.1.model=llama-3.1-8b",
            "instances.*.gpu=0",
            "instances.*.engine={ kv_cache = \"elastic\", gpu_memory_utilization = 1.0, activation_reserve_bytes = 0 }",
        ],
        "instances[1].engine.gpu_memory_utilization",
        "the instances on GPU 0 (tiny, 14.96 GiB) need 29.91 GiB before any elastic KV",
    );
}

#[test]
fn an_instance_with_less_than_one_block_of_memory_left_has_no_kv_blocks() {
    let weights = sim::scenario::model_catalog()[0].weight_bytes();
    let text = with(&format!(
        "[gpu_catalog.tiny]\nmemory_bytes = {}\nbf16_flops = 1e14\nhbm_bytes_per_s = 1e12\n",
        weights + (1 << 20)
    ));
    fails(
        &text,
        &[
            "cluster.gpu=tiny",
            "instances.0.engine={ gpu_memory_utilization = 1.0, activation_reserve_bytes = 0 }",
            "instances.1.model=llama-3.1-8b",
            "instances.1.engine={ gpu_memory_utilization = 1.0, activation_reserve_bytes = 0 }",
        ],
        "instances[0].engine.gpu_memory_utilization",
        "No available memory for the cache blocks",
    );
}

#[test]
fn max_model_len_above_the_models_limit_is_rejected() {
    fails(
        BASE,
        &["instances.1.engine.max_model_len=65536"],
        "instances[1].engine.max_model_len",
        "max_position_embeddings 32768",
    );
}

#[test]
fn a_70b_at_full_context_does_not_start_on_an_h100() {
    let e = fails(
        BASE,
        &["instances.1.model=llama-3.3-70b-awq"],
        "instances[1].engine.max_model_len",
        "vLLM refuses to start",
    );
    assert!(e.reason.contains("max_model_len 131072"), "{e}");
}

#[test]
fn a_length_distribution_with_min_above_max_is_rejected() {
    fails(
        BASE,
        &[
            "workload.phases.0.input_tokens={ dist = \"lognormal\", mean = 500, std = 100, min = 900, max = 800 }",
        ],
        "workload.phases[0].input_tokens.min",
        "min 900 is greater than max 800",
    );
}

#[test]
fn a_prefix_fraction_outside_zero_one_is_rejected() {
    fails(&with("[workload.prefix]\ntokens = 64\nfraction = 1.5"), &[], "workload.prefix.fraction", "[0, 1]");
}

#[test]
fn a_non_positive_poll_interval_is_rejected() {
    fails(BASE, &["router.poll_interval_s=0"], "router.poll_interval_s", "positive");
}

#[test]
fn an_unknown_variant_lists_the_available_ones() {
    let text = with("[variants.a]\n[variants.b]\n");
    let f = parse(&text, &[]).unwrap();
    let e = f.variant("c").unwrap_err();
    assert_eq!(e.field, "--variant");
    assert!(e.reason.contains("\"a\", \"b\""), "{e}");
}

#[test]
fn an_override_without_equals_sign_is_rejected() {
    let e = "router.policy".parse::<Override>().unwrap_err();
    assert_eq!(e.field, "router.policy");
    assert!(e.reason.contains("PATH=VALUE"), "{e}");
}

#[test]
fn an_override_with_an_empty_segment_is_rejected() {
    let e = "router..policy=x".parse::<Override>().unwrap_err();
    assert!(e.reason.contains("segment is empty"), "{e}");
}

#[test]
fn an_override_of_a_field_that_does_not_exist_names_it_and_its_origin() {
    let e = fails(BASE, &["router.polcy=random"], "router.polcy", "unknown field `polcy`");
    assert!(e.reason.contains("--set router.polcy"), "{e}");
}

#[test]
fn an_override_indexing_past_an_array_is_rejected() {
    fails(BASE, &["instances.5.gpu=0"], "instances.5.gpu", "has 2 element(s), so index 5 is out of range");
}

#[test]
fn a_variant_that_sets_a_field_that_does_not_exist_names_it_and_the_variant() {
    let text = with("[variants.bad]\nset = { \"router.polcy\" = \"random\" }\n");
    let e = fails(&text, &[], "router.polcy", "unknown field");
    assert!(e.reason.contains("variant `bad`"), "{e}");
}

#[test]
fn a_missing_custom_json_file_is_named() {
    let text = with(
        "[[workload.phases]]\ncustom_json = \"missing.json\"\nnum_requests = 20\narrival = { process = \"closed_loop\", concurrency = 4 }\n",
    );
    fails(&text, &[], "workload.phases[1].custom_json", "does not exist");
}

#[test]
fn a_missing_empirical_column_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lens.csv"), "ContextTokens,GeneratedTokens\n10,3\n").unwrap();
    let text = BASE.replace(
        "input_tokens = { dist = \"fixed\", value = 100 }",
        "input_tokens = { dist = \"empirical\", file = \"lens.csv\", column = \"Prompt\" }",
    );
    let e = parse_scenario(&text, &dir.path().join("s.toml"), &[]).unwrap_err();
    assert_eq!(e.field, "workload.phases[0].input_tokens.file", "{e}");
    assert!(e.reason.contains("Prompt"), "{e}");
}

#[test]
fn a_prompt_token_range_beyond_a_vocabulary_is_rejected() {
    fails(
        BASE,
        &["workload.prompt_token_id_range=[10, 200000]"],
        "workload.prompt_token_id_range",
        "vocabulary",
    );
}

#[test]
fn a_batch_budget_below_max_model_len_without_chunked_prefill_is_rejected() {
    fails(
        BASE,
        &["instances.1.engine={ preset = \"vllm-0.6.4\", max_num_batched_tokens = 4096 }"],
        "instances[1].engine.max_num_batched_tokens",
        "smaller than max_model_len (32768)",
    );
}

#[test]
fn the_full_sequence_gate_cannot_be_turned_on_before_vllm_0_19() {
    for preset in ["vllm-0.6.4", "vllm-0.9.2"] {
        let e = fails(
            BASE,
            &[
                &format!("defaults.engine.preset={preset}"),
                "instances.0.engine.scheduler_reserve_full_isl=true",
            ],
            "instances[0].engine.scheduler_reserve_full_isl",
            "added it in 0.19.0",
        );
        assert!(e.reason.contains(preset), "{e}");
    }
}

#[test]
fn a_quantization_flag_on_a_bf16_model_is_rejected() {
    fails(
        BASE,
        &["instances.1.engine.quantization=awq_marlin"],
        "instances[1].engine.quantization",
        "needs an AWQ model",
    );
}

#[test]
fn a_models_table_naming_an_unknown_model_lists_the_known_ones() {
    fails(BASE, &["models.nope.model_path=/x"], "models.nope", "known models");
    fails(BASE, &["models.\"qwen2.5-7b\".model_path=\"\""], "models.qwen2.5-7b.model_path", "is empty");
}

#[test]
fn a_scenario_name_that_would_leave_the_results_dir_is_rejected() {
    // The name is the output dir under results/ (issue 12: `../x` or an absolute path wrote
    // outside it).
    for bad in ["../x", "/tmp/x", "a/b", "..", "."] {
        let text = BASE.replace("name = \"t\"", &format!("name = {bad:?}"));
        fails(&text, &[], "name", "cannot name an output dir");
    }
    fails(BASE, &["name=\"../../etc\""], "name", "cannot name an output dir");
    assert_eq!(parse(BASE, &["name=\"ok-name_1.2\""]).unwrap().name, "ok-name_1.2");
}

#[test]
fn a_file_stem_with_odd_characters_becomes_a_safe_default_name() {
    let text = BASE.replace("name = \"t\"\n", "");
    let overrides: Vec<Override> = Vec::new();
    let file = parse_scenario(&text, Path::new("dir/my scenario (v2).toml"), &overrides).unwrap();
    assert_eq!(file.name, "my-scenario--v2-");
    assert!(file.variants.iter().all(|v| v.name == file.name));
}

#[test]
fn a_block_count_override_on_an_elastic_instance_is_an_error_not_ignored() {
    fails(
        BASE,
        &["instances.0.engine={ kv_cache = \"elastic\", num_gpu_blocks_override = 1000 }"],
        "instances[0].engine.num_gpu_blocks_override",
        "kv_cache = \"elastic\"",
    );
}

const SESSIONS: &str = "workload.phases.0.arrival={ process = \"sessions\", concurrency = 2, turns = { dist = \"fixed\", value = 3 }, user_tokens = { dist = \"fixed\", value = 20 } }";

#[test]
fn a_sessions_phase_is_valid_and_needs_exactly_one_of_concurrency_and_rate() {
    parse(BASE, &[SESSIONS]).unwrap();
    let both = SESSIONS.replace("concurrency = 2,", "concurrency = 2, rate = 1.0,");
    fails(BASE, &[&both], "workload.phases[0].arrival", "exactly one of concurrency");
    let neither = SESSIONS.replace("concurrency = 2,", "");
    fails(BASE, &[&neither], "workload.phases[0].arrival", "exactly one of concurrency");
    let zero = SESSIONS.replace("concurrency = 2", "concurrency = 0");
    fails(BASE, &[&zero], "workload.phases[0].arrival.concurrency", "at least 1");
    let rate = SESSIONS.replace("concurrency = 2", "rate = -1.0");
    fails(BASE, &[&rate], "workload.phases[0].arrival.rate", "positive");
}

#[test]
fn bad_session_fields_are_named() {
    let turns = SESSIONS.replace("value = 3", "value = 0");
    fails(BASE, &[&turns], "workload.phases[0].arrival.turns.value", "at least 1");
    let think = SESSIONS.replace("user_tokens", "think_time_s = -1.0, user_tokens");
    fails(BASE, &[&think], "workload.phases[0].arrival.think_time_s", "[0, 86400]");
    let ctx = SESSIONS.replace("concurrency = 2,", "concurrency = 2, max_context_tokens = 0,");
    fails(BASE, &[&ctx], "workload.phases[0].arrival.max_context_tokens", "at least 1");
    let sessions = SESSIONS.replace("concurrency = 2,", "concurrency = 2, num_sessions = 0,");
    fails(BASE, &[&sessions], "workload.phases[0].arrival.num_sessions", "at least 1");
}

#[test]
fn num_sessions_bounds_a_sessions_phase_on_its_own() {
    let text = BASE.replace("duration_s = 10\n", "");
    fails(&text, &[SESSIONS], "workload.phases[0]", "never ends");
    let counted = SESSIONS.replace("concurrency = 2,", "concurrency = 2, num_sessions = 5,");
    parse(&text, &[&counted]).unwrap();
}

#[test]
fn a_zero_prefix_block_size_is_rejected() {
    fails(BASE, &["router.prefix_block_tokens=0"], "router.prefix_block_tokens", "at least 1");
    parse(BASE, &["router.policy=prefix_aware", "router.prefix_index_blocks=100"]).unwrap();
}

#[test]
fn an_error_about_one_instance_carries_its_index_and_others_carry_none() {
    // Schema (serde), resolution and memory-check errors about instances[1], each from its own stage.
    let unknown_field = parse(BASE, &["instances.1.engine.max_num_seq=8"]).unwrap_err();
    let bad_gpu = parse(BASE, &["instances.1.gpu=2"]).unwrap_err();
    let too_big =
        parse(BASE, &["instances.1.model=llama-3.3-70b-awq", "defaults.engine.max_model_len=131072"])
            .unwrap_err();
    for (e, field) in [
        (&unknown_field, "instances[1].engine.max_num_seq"),
        (&bad_gpu, "instances[1].gpu"),
        (&too_big, "defaults.engine.max_model_len"),
    ] {
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.instance, Some(InstanceId(1)), "{e}");
    }
    // The index is data, not part of the message.
    assert_eq!(bad_gpu.to_string(), format!("dir/test.toml: instances[1].gpu: {}", bad_gpu.reason));
    let not_an_instance = parse(BASE, &["router.poll_interval_s=0"]).unwrap_err();
    assert_eq!(not_an_instance.instance, None, "{not_an_instance}");
}
