//! The real program, killed with SIGKILL under load and stopped with SIGTERM mid-request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{DbPath, Program, TestDir, all_events, event_request_head, raw_read, raw_send};

/// Concurrent clients posting while the analyzer is killed.
const CLIENTS: usize = 8;
/// Acknowledged posts to wait for before the kill.
const ACKS_BEFORE_KILL: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_a_kill_9_under_concurrent_load() {
    let dir = TestDir::new("kill9");
    let mut analyzer = Program::start(&dir.db(), &dir.path().join("first.log")).await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, acked, attempted) = (analyzer.url.clone(), acked.clone(), attempted.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            for i in 0.. {
                let id = format!("c{c}-{i}");
                attempted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let event = json!({
                    "kind": if i % 2 == 0 { "started" } else { "processed" },
                    "run_id": format!("run-{c}-{}", i / 2), "message_id": id, "video_id": format!("video-{c}"),
                    "qualities": ["720p"], "request_id": format!("req-{c}-{i}"), "encode_seconds": 1.5,
                });
                match client.post(format!("{url}/events")).json(&event).send().await {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                    Ok(r) => panic!("a live analyzer refused {event}: {}", r.status()),
                    // The analyzer is gone: this post was not acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < ACKS_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "too slow: {} acks in 60 s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    analyzer.signal(libc::SIGKILL);
    let status = analyzer.wait(Duration::from_secs(10)).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    for c in clients {
        c.await.expect("a client");
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let attempted = attempted.load(std::sync::atomic::Ordering::Relaxed);

    let analyzer = Program::start(&dir.db(), &dir.path().join("second.log")).await;
    let stored = all_events(&reqwest::Client::new(), &analyzer.url).await;
    let stored_ids: HashSet<&str> = stored.iter().filter_map(|e| e["message_id"].as_str()).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored_ids.contains(id.as_str())).collect();
    eprintln!(
        "kill -9 under load: {attempted} posts attempted, {} acknowledged, {} stored",
        acked.len(),
        stored.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(stored.len() >= acked.len());
    assert!(
        stored.len() <= attempted,
        "nothing was stored that was not posted ({} stored, {attempted} posted)",
        stored.len()
    );
    // The restarted analyzer takes new events after the replay.
    let resp = reqwest::Client::new()
        .post(format!("{}/create/count", analyzer.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0_with_the_wal_checkpointed() {
    let dir = TestDir::new("sigterm");
    let mut analyzer = Program::start(&dir.db(), &dir.path().join("analyzer.log")).await;
    // A keep-alive connection left idle in the pool must not hold the shutdown up.
    let pooled = reqwest::Client::new();
    let resp = pooled
        .post(format!("{}/create/count", analyzer.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let body = r#"{"kind":"processed","run_id":"slow","message_id":"in-flight","request_id":"slow-1"}"#;
    let (first, rest) = body.split_at(20);
    let mut slow = raw_send(analyzer.addr, format!("{}{first}", event_request_head(body)).as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    analyzer.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: no new connection is accepted, and the program waits for the slow request.
    assert!(
        tokio::net::TcpStream::connect(analyzer.addr).await.is_err(),
        "the listener closes on SIGTERM"
    );
    assert!(analyzer.child().try_wait().unwrap().is_none(), "still draining");

    tokio::io::AsyncWriteExt::write_all(&mut slow, rest.as_bytes())
        .await
        .unwrap();
    let answer = raw_read(&mut slow, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the in-flight request is answered: {answer}"
    );
    let finished = Instant::now();
    let status = analyzer.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "clean exit:\n{}", analyzer.logs());
    assert!(
        finished.elapsed() < Duration::from_secs(3),
        "exited promptly once drained ({:?})",
        finished.elapsed()
    );
    let logs = analyzer.logs();
    assert!(logs.contains("database closed"), "{logs}");

    // The WAL was checkpointed into the database file: nothing is left to replay.
    let wal = dir.path().join("analyzer.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "{} is empty or gone", wal.display());
    let analyzer = Program::start(&dir.db(), &dir.path().join("again.log")).await;
    let ids: Vec<String> = all_events(&reqwest::Client::new(), &analyzer.url)
        .await
        .iter()
        .map(|e| e["message_id"].as_str().unwrap_or("legacy").to_owned())
        .collect();
    assert_eq!(ids, ["legacy", "in-flight"]);
}
