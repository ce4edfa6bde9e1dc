//! `steps.csv`: the engines' `GET /steps` logs gathered at the end of a live run, with the
//! instance name first; engines without the endpoint are no failure.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use live::step_log::{StepLogTarget, fetch_step_logs};
use tokio::net::TcpListener;

const LOG: &str = "step,start_unix_s,duration_s,num_scheduled_requests,num_prefill_tokens,num_decode_seqs,\
num_kv_tokens_read,num_padded_tokens,cuda_graph,captured\n\
0,1764650000.0,0.2,1,128,0,128,128,1,1\n\
1,1764650000.2,0.011,1,0,1,129,1,1,0\n";

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/steps")
}

#[tokio::test]
async fn step_logs_are_gathered_with_the_instance_first_and_missing_ones_are_no_failure() {
    let with_log = serve(Router::new().route("/steps", get(|| async { LOG }))).await;
    let broken =
        serve(Router::new().route("/steps", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") })))
            .await;
    let without = serve(Router::new()).await;
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/steps", l.local_addr().unwrap())
    };
    let targets: Vec<StepLogTarget> =
        [("a#0", &with_log), ("a#1", &without), ("b#0", &gone), ("b#1", &broken)]
            .into_iter()
            .map(|(instance, url)| StepLogTarget { instance: instance.into(), url: url.clone() })
            .collect();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let got = fetch_step_logs(&http, &targets, dir.path()).await.unwrap();
    assert_eq!(got.written, [("a#0".to_string(), 2)]);
    assert_eq!(got.absent, ["a#1", "b#0"], "a 404 and a closed port mean no log");
    assert_eq!(got.skipped.len(), 1);
    assert!(got.skipped[0].1.contains("500"), "{:?}", got.skipped);
    let text = std::fs::read_to_string(dir.path().join("steps.csv")).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("instance,step,start_unix_s,duration_s,"));
    assert_eq!(lines.next(), Some("a#0,0,1764650000.0,0.2,1,128,0,128,128,1,1"));
    assert_eq!(lines.count(), 1);

    // A later run whose engines have no log leaves no stale steps.csv behind.
    let none = fetch_step_logs(&http, &targets[1..3], dir.path()).await.unwrap();
    assert_eq!(none.path, None);
    assert!(!dir.path().join("steps.csv").exists());
}
