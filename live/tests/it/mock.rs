//! A tiny hand-written HTTP/1.1 mock of vLLM's OpenAI server for loopback tests: the `model`
//! field of each request picks a behaviour, so one scenario can mix them.
//!
//! - `ok`: 200, a role-free completions stream of `max_tokens` chunks with small delays, a
//!   keep-alive comment, the usage chunk and `[DONE]`;
//! - `err500`: 500 with the nested error body of current vLLM;
//! - `err400flat`: 400 with vLLM 0.6.4's flat error body;
//! - `cut`: 200, two chunks, then the connection closes without `[DONE]`;
//! - `stall`: 200, one chunk, then nothing until the client gives up.
//!
//! `GET /metrics` answers vLLM V1-style gauges; any other GET is a 404 (vLLM has no `/steps`).
//! The server counts requests and the most it saw at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicUsize,
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    pub metrics: AtomicUsize,
}

pub struct Mock {
    pub port: u16,
    pub stats: Arc<Stats>,
}

impl Mock {
    pub async fn start() -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                tokio::spawn(serve(sock, s.clone()));
            }
        });
        Mock { port, stats }
    }

    /// Waits (bounded) until `n` completion requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..3000 {
            if self.stats.requests.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the mock never saw {n} requests");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Reads one request: (method and path line, body).
async fn read_request(sock: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let first = head.lines().next().unwrap_or("").to_string();
    Some((first, buf[head_end..head_end + len].to_vec()))
}

const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

fn chunk(text: &str) -> String {
    format!(
        "data: {{\"object\":\"text_completion\",\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"finish_reason\":null}}],\"usage\":null}}\n\n"
    )
}

async fn serve(mut sock: TcpStream, stats: Arc<Stats>) {
    let Some((line, body)) = read_request(&mut sock).await else { return };
    if line.starts_with("GET /metrics") {
        stats.metrics.fetch_add(1, Ordering::SeqCst);
        let text = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\",model_name=\"m\"} 2.0\nvllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 1.0\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.5\nvllm:num_preemptions_total{engine=\"0\",model_name=\"m\"} 4.0\n";
        let resp =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len());
        let _ = sock.write_all(resp.as_bytes()).await;
        return;
    }
    if !line.starts_with("POST ") {
        // Like vLLM: no other endpoint (e.g. the reference engine's GET /steps) exists here.
        let _ =
            sock.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        return;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = v["model"].as_str().unwrap_or("").to_string();
    let n = v["max_tokens"].as_u64().unwrap_or(1);
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let now = stats.active.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_active.fetch_max(now, Ordering::SeqCst);
    respond(&mut sock, &model, n).await;
    let _ = sock.shutdown().await;
    stats.active.fetch_sub(1, Ordering::SeqCst);
}

async fn respond(sock: &mut TcpStream, model: &str, n: u64) {
    let pause = || tokio::time::sleep(Duration::from_millis(5));
    match model {
        "err500" => {
            let b =
                r#"{"error":{"message":"engine died","type":"InternalServerError","param":null,"code":500}}"#;
            let r = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                b.len()
            );
            let _ = sock.write_all(r.as_bytes()).await;
        }
        "err400flat" => {
            let b = r#"{"object":"error","message":"prompt too long","type":"BadRequestError","param":null,"code":400}"#;
            let r = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                b.len()
            );
            let _ = sock.write_all(r.as_bytes()).await;
        }
        "cut" => {
            let _ = sock.write_all(SSE_HEAD.as_bytes()).await;
            for _ in 0..2 {
                pause().await;
                let _ = sock.write_all(chunk("x").as_bytes()).await;
            }
        }
        "stall" => {
            let _ = sock.write_all(SSE_HEAD.as_bytes()).await;
            let _ = sock.write_all(chunk("x").as_bytes()).await;
            // Until the client hangs up (bounded so the test server never lingers).
            let mut b = [0u8; 16];
            let _ = tokio::time::timeout(Duration::from_secs(60), sock.read(&mut b)).await;
        }
        _ => {
            let _ = sock.write_all(SSE_HEAD.as_bytes()).await;
            for k in 0..n {
                pause().await;
                let mut s = chunk("tok");
                if k == 0 {
                    s.insert_str(0, ": keep-alive\n\n");
                }
                let _ = sock.write_all(s.as_bytes()).await;
            }
            let usage = format!(
                "data: {{\"object\":\"text_completion\",\"choices\":[],\"usage\":{{\"prompt_tokens\":4,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
                n + 4
            );
            let _ = sock.write_all(usage.as_bytes()).await;
        }
    }
}
