//! The LB's client limits over real sockets (issue 12, item 4): idle and half-sent connections
//! are closed, slow bodies get a 408 and oversized ones a 413 in vLLM's error shape, connections
//! over the cap get a clear 503, and `/health` and a live run keep working while 500 idle
//! connections and a hundred half-sent requests are held open. Timeouts in these tests are
//! generous upper bounds that fail a test instead of hanging it, never measurements.

use crate::server_fixtures::scenario;
use live::emulator::{EmulatorHandle, EmulatorOptions};
use live::loadgen::{FixedSchedule, stop_pair};
use live::proxy::{LbOptions, LbServer, LbState};
use live::run::{LiveRunOptions, ProgressMode, Target, live_run_with_source};
use serde_json::Value;
use sim::ids::{InstanceId, ModelId, RequestId};
use sim::scenario::RouterPolicy;
use sim::time::SimTime;
use sim::workload::RequestSpec;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any single step may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

/// An LB with `opts` over backends that need not exist; stops when the sender is dropped.
async fn lb(ports: [u16; 3], opts: LbOptions) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, LbState) {
    let server = LbServer::bind(&scenario(RouterPolicy::RoundRobin, ports), LbOptions { port: 0, ..opts })
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let state = server.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, tx, state)
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the LB never closed the connection; it sent {:?}", String::from_utf8_lossy(&buf));
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `raw` on a new connection and reads one response (the LB closes after error answers).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw).await.unwrap();
    read_to_close(&mut conn).await
}

/// The JSON body of a raw HTTP response.
fn json_body(resp: &str) -> Value {
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}"))
}

/// A GET /health on a kept-alive connection; returns the status line.
async fn health_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /health HTTP/1.1\r\nhost: lb\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_half_sent_heads_are_closed_after_the_header_timeout() {
    let opts = LbOptions { client_header_timeout: Duration::from_millis(300), ..LbOptions::default() };
    let (addr, _stop, _) = lb([1, 1, 1], opts).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: lb\r\ncontent-").await.unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    assert_eq!(health_on(&mut kept_alive).await, "HTTP/1.1 200 OK");
    // Each read ends (EOF) only because the LB closed the connection.
    read_to_close(&mut idle).await;
    read_to_close(&mut half).await;
    read_to_close(&mut kept_alive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_a_408_in_vllms_error_shape() {
    let opts = LbOptions { client_body_timeout: Duration::from_millis(300), ..LbOptions::default() };
    let (addr, _stop, _) = lb([1, 1, 1], opts).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: lb\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf)).await.unwrap().unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    let body = json_body(&resp);
    assert_eq!(body["object"], "error", "the fixture's vLLM 0.6.4 engines answer the flat shape: {body}");
    assert_eq!(body["code"], 408);
    assert!(body["message"].as_str().unwrap().contains("did not arrive"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_a_413_in_vllms_error_shape_declared_or_chunked() {
    let opts = LbOptions { max_body_bytes: 1000, ..LbOptions::default() };
    let (addr, _stop, _) = lb([1, 1, 1], opts).await;
    // Declared too large: refused before the body is read (none is sent).
    let resp = exchange(
        addr,
        b"POST /v1/completions HTTP/1.1\r\nhost: lb\r\nconnection: close\r\ncontent-length: 5000\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    let body = json_body(&resp);
    assert_eq!((body["object"].as_str(), body["code"].as_u64()), (Some("error"), Some(413)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("1000 bytes"), "{body}");
    // Chunked, no length: refused once the limit is crossed.
    let mut raw = b"POST /v1/chat/completions HTTP/1.1\r\nhost: lb\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(format!("{:x}\r\n{}\r\n0\r\n\r\n", 2000, "x".repeat(2000)).as_bytes());
    let resp = exchange(addr, &raw).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(json_body(&resp)["code"], 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_gets_a_503_and_a_freed_slot_serves_again() {
    let opts = LbOptions { max_connections: 3, ..LbOptions::default() };
    let (addr, _stop, state) = lb([1, 1, 1], opts).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        // Served (not refused): each holds one of the 3 slots.
        assert_eq!(health_on(&mut c).await, "HTTP/1.1 200 OK");
        held.push(c);
    }
    let resp = exchange(addr, b"GET /health HTTP/1.1\r\nhost: lb\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    let body = json_body(&resp);
    assert_eq!(body["code"], 503);
    assert!(body["message"].as_str().unwrap().contains("maximum of 3 client connections"), "{body}");
    assert_eq!(state.rejected_connections_total(), 1, "the refusal is counted for /metrics");

    drop(held.pop());
    // The slot is given back once the LB sees the close; until then new connections get 503s.
    let mut served = false;
    for _ in 0..600 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        if health_on(&mut c).await == "HTTP/1.1 200 OK" {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "a closed connection gives its slot back");
}

fn req(id: u64, at_ms: u64, model: u32) -> RequestSpec {
    RequestSpec {
        id: RequestId(id),
        phase: 0,
        arrival: SimTime(at_ms * 1_000_000),
        model: ModelId(model),
        num_prompt_tokens: 16,
        max_tokens: 4,
        content: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_and_a_live_run_completes_through_the_lb_under_500_idle_connections() {
    let sc = scenario(RouterPolicy::RoundRobin, [0, 0, 0]);
    let emu = EmulatorHandle::start(&sc, None, EmulatorOptions::default()).await.unwrap();
    let ports = [0, 1, 2].map(|i| emu.addr(InstanceId(i)).unwrap().port());
    // The defaults: a 30 s header timeout keeps every idle connection open through the test.
    let (addr, _stop, _) = lb(ports, LbOptions::default()).await;

    let mut held = Vec::new();
    for _ in 0..500 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    for k in 0..100 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let partial: &[u8] = if k % 2 == 0 {
            b"POST /v1/completions HTTP/1.1\r\nhost: lb\r\ncontent-le"
        } else {
            b"POST /v1/completions HTTP/1.1\r\nhost: lb\r\ncontent-length: 500\r\n\r\n{\"model\": \"org/a\", "
        };
        c.write_all(partial).await.unwrap();
        held.push(c);
    }

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = tokio::time::timeout(PATIENCE, http.get(format!("http://{addr}/health")).send()).await;
    assert_eq!(health.unwrap().unwrap().status(), 200);

    let dir = tempfile::tempdir().unwrap();
    let mut o = LiveRunOptions::new(Target::Lb(format!("http://{addr}")), dir.path());
    o.progress = ProgressMode::Never;
    o.scrape_interval = None;
    let (stop_handle, signal) = stop_pair();
    o.stop = Some(signal);
    let mut source = FixedSchedule::new((0..30).map(|i| req(i, i * 20, (i % 2) as u32)).collect());
    let run = tokio::time::timeout(PATIENCE, live_run_with_source(&sc, &mut source, o)).await;
    let report = run.unwrap().unwrap();
    assert_eq!((report.load.sent, report.load.ok), (30, 30), "{:?}", report.load);
    drop(stop_handle);
    drop(held);
    emu.shutdown().await;
}
