//! `RETENTION_DAYS`: old events deleted in the background, a batch at a time, while the figures
//! and the numbers of the remaining `/get/count` lines stay as if nothing was removed.

use std::time::{Duration, Instant};

use chrono::Utc;
use encoding_common::{Event, EventKind};
use serde_json::Value;

use crate::aggregates::{Rng, answers, assert_same, play, stream};
use crate::helpers::{TestDir, all_events, spawn_with};

/// Legacy `/get/count` lines: their numbers.
fn numbers(body: &str) -> Vec<String> {
    let lines: Vec<String> = serde_json::from_str(body).unwrap();
    lines
        .iter()
        .map(|l| l.split(" - ").nth(1).unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_are_deleted_in_the_background_and_every_figure_stays_as_it_was() {
    let app = spawn_with(TestDir::new("retention"), |_| {}).await;
    // Two days ago: more than a pruning batch (500) of runs, legacy counts and progress; then a
    // little of the last hour.
    let mut rng = Rng::new(11);
    let old = stream(&mut rng, "old", 1600, &[None, Some(5)], true);
    play(&app, &old, Utc::now() - chrono::Duration::days(2), &mut rng).await;
    let recent = stream(&mut rng, "new", 60, &[Some(1_000_000_000)], true);
    play(&app, &recent, Utc::now() - chrono::Duration::hours(1), &mut rng).await;
    app.store.sync().await.unwrap();
    let before = answers(&app.client, &app.url).await;
    let events = all_events(&app.client, &app.url).await;
    let count_before = app.get("/get/count").await.text().await.unwrap();
    let dir = app.stop().await;

    let app = spawn_with(dir, |c| {
        c.retention_days = Some(1.0);
        c.retention_interval_seconds = 0.2;
    })
    .await;
    let cutoff = (Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let kept: Vec<Value> = events
        .iter()
        .filter(|e| e["recorded_at"].as_str().unwrap() >= cutoff.as_str())
        .cloned()
        .collect();
    assert!(kept.len() < events.len() && !kept.is_empty());
    // Writes go on while it prunes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut written = 0;
    loop {
        let mut e = Event::new(EventKind::Failed);
        e.run_id = Some(format!("during-{written}"));
        app.store.record(e).await.unwrap();
        written += 1;
        if all_events(&app.client, &app.url).await.len() == kept.len() + written {
            break;
        }
        assert!(Instant::now() < deadline, "the old events were not deleted within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = all_events(&app.client, &app.url).await;
    assert_eq!(
        &left[..kept.len()],
        kept.as_slice(),
        "exactly the events of the last day are left"
    );

    let mut after = answers(&app.client, &app.url).await;
    // Less the failed runs written during the pruning, everything is as before.
    let s = &mut after.summary;
    s["counts"]["failed"] = (s["counts"]["failed"].as_u64().unwrap() - written as u64).into();
    s["runs"] = (s["runs"].as_u64().unwrap() - written as u64).into();
    s["last_event"] = before.summary["last_event"].clone();
    after.runs.retain(|id, _| !id.starts_with("during-"));
    let failed = "encoder_events_total{kind=\"failed\"}";
    *after.metrics.get_mut(failed).unwrap() -= written as f64;
    assert_same(&after, &before, "after the retention pass");

    // The lines left keep their numbers, and counting goes on from the last.
    let count_after = app.get("/get/count").await.text().await.unwrap();
    let (was, is) = (numbers(&count_before), numbers(&count_after));
    assert!(is.len() < was.len(), "old lines are gone");
    assert_eq!(is.as_slice(), &was[was.len() - is.len()..]);
    assert_eq!(app.post("/create/count").await.status(), 200);
    let processed = was.iter().filter(|l| l.starts_with("processed")).count();
    let last = numbers(&app.get("/get/count").await.text().await.unwrap())
        .pop()
        .unwrap();
    assert_eq!(last, format!("processed count {}", processed + 1));
}
