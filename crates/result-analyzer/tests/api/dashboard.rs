//! The dashboard at `GET /`, rendered by headless Chromium (Debian's `chromium` package; install it
//! with `scripts/install-browser.sh`). Without Chromium these tests fail, naming that script.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use encoding_common::{Event, EventKind};
use regex::Regex;
use serde_json::json;

use crate::helpers::{TestApp, TestDir, chromium, content_type, run_chromium, spawn_app, spawn_with};

#[tokio::test]
async fn the_page_is_html_that_loads_nothing_from_elsewhere() {
    let app = spawn_app("page").await;
    let resp = app.get("/").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "text/html; charset=utf-8");
    let page = resp.text().await.unwrap();
    assert!(page.starts_with("<!doctype html>"));
    for external in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}

/// `data-*` attributes of every element whose opening tag matches `tag_start`.
fn tags_with(dom: &str, tag_start: &str) -> Vec<BTreeMap<String, String>> {
    let tag = Regex::new(&format!("{}[^>]*>", regex::escape(tag_start))).unwrap();
    // Data attributes, and `href` (as `data-href`).
    let attr = Regex::new(r#"(data-[a-z-]+|href)="([^"]*)""#).unwrap();
    tag.find_iter(dom)
        .map(|m| {
            attr.captures_iter(m.as_str())
                .map(|c| {
                    let name = if &c[1] == "href" {
                        "data-href".to_owned()
                    } else {
                        c[1].to_owned()
                    };
                    (name, c[2].to_owned())
                })
                .collect()
        })
        .collect()
}

fn dump_counts(dom: &str) -> BTreeMap<String, String> {
    tags_with(dom, "<li class=\"card\"")
        .into_iter()
        .map(|a| (a["data-kind"].clone(), a["data-count"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_counts_and_one_bar_per_run_coloured_by_outcome() {
    chromium();
    let app = spawn_app("dom").await;
    // Six runs: three processed, one killed, one still running, one that found the queue empty;
    // and two legacy counts, which are no runs.
    for (run, outcome) in [
        ("r1", "processed"),
        ("r2", "processed"),
        ("r3", "killed"),
        ("r4", "processed"),
        ("r5", ""),
    ] {
        app.event(json!({"kind": "started", "run_id": run, "video_id": format!("video-{run}"), "qualities": ["720p"]}))
            .await;
        if !outcome.is_empty() {
            app.event(
                json!({"kind": outcome, "run_id": run, "video_id": format!("video-{run}"), "qualities": ["720p"],
                "encode_seconds": 2.5, "fps": 48.0}),
            )
            .await;
        }
    }
    app.event(json!({"kind": "empty", "run_id": "r6", "elapsed_seconds": 1.0}))
        .await;
    app.post("/create/count").await;
    app.post("/kill/count").await;

    let dom = run_chromium(
        TestDir::new("dom-chromium").path(),
        &format!("{}/", app.url),
        &["--dump-dom".into()],
    )
    .await;
    let counts = dump_counts(&dom);
    let expected: BTreeMap<String, String> = [
        ("started", "5"),
        ("processed", "4"),
        ("killed", "2"),
        ("failed", "0"),
        ("rejected", "0"),
        ("duplicate", "0"),
        ("empty", "1"),
        ("lost", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(counts, expected, "the cards");

    let bars = tags_with(&dom, "<div class=\"bar\"");
    let mut outcomes: Vec<(String, String)> = bars
        .iter()
        .map(|b| (b["data-run-id"].clone(), b["data-outcome"].clone()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("r1", "processed"),
            ("r2", "processed"),
            ("r3", "killed"),
            ("r4", "processed"),
            ("r5", "running"),
            ("r6", "empty"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let table_rows = tags_with(&dom, "<tr data-run-id=");
    assert_eq!(table_rows.len(), 6, "the table fallback lists every run");
    // Each processed video links to its player page, nothing else does.
    let mut plays: Vec<(String, String)> = tags_with(&dom, "<a ")
        .iter()
        .filter(|a| a.contains_key("data-play"))
        .map(|a| (a["data-play"].clone(), a["data-href"].clone()))
        .collect();
    plays.sort();
    assert_eq!(
        plays,
        ["r1", "r2", "r4"].map(|r| (format!("video-{r}"), format!("/player?video_id=video-{r}"))),
        "a player link per processed video"
    );
    assert_eq!(
        tags_with(&dom, "<li class=")
            .iter()
            .filter(|a| a.contains_key("data-legend"))
            .count(),
        8,
        "the legend"
    );
    assert!(dom.contains("Refreshes every 3 s"), "no error banner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_a_progress_bar_per_running_run_and_lost_runs_as_lost() {
    chromium();
    let app = spawn_app("dom-live").await;
    // r1 reports progress, r2 has not yet; r3 went silent longer than its lease; r4 is done.
    for run in ["r1", "r2", "r4"] {
        app.event(json!({"kind": "started", "run_id": run, "video_id": format!("video-{run}"), "lease_seconds": 600}))
            .await;
    }
    let resp = app
        .post_json(
            "/events",
            &json!({"kind": "progress", "run_id": "r1", "stage": "encoding", "percent": 42.5, "fps": 61.0}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let mut lost = Event::new(EventKind::Started);
    (lost.run_id, lost.video_id, lost.lease_seconds) = (Some("r3".into()), Some("video-r3".into()), Some(30));
    app.store
        .record_at(lost, Utc::now() - Duration::seconds(40))
        .await
        .unwrap();
    app.event(json!({"kind": "processed", "run_id": "r4"})).await;

    let dom = run_chromium(
        TestDir::new("dom-live-chromium").path(),
        &format!("{}/", app.url),
        &["--dump-dom".into()],
    )
    .await;
    let live: BTreeMap<String, (String, String)> = tags_with(&dom, "<li data-progress-run=")
        .into_iter()
        .map(|a| {
            (
                a["data-progress-run"].clone(),
                (a["data-stage"].clone(), a["data-percent"].clone()),
            )
        })
        .collect();
    let want: BTreeMap<String, (String, String)> = [("r1", ("encoding", "42.5")), ("r2", ("", ""))]
        .into_iter()
        .map(|(r, (s, p))| (r.to_owned(), (s.to_owned(), p.to_owned())))
        .collect();
    assert_eq!(live, want, "one progress bar per running run");
    assert!(dom.contains("encoding 43% · 61 fps"), "{dom}");
    assert!(
        dom.contains(r#"aria-valuenow="42.5""#),
        "the bar is a progressbar at 42.5%"
    );
    assert!(dom.contains("width: 42.5%"), "the bar is filled to 42.5%");
    let bars: BTreeMap<String, String> = tags_with(&dom, "<div class=\"bar\"")
        .into_iter()
        .map(|b| (b["data-run-id"].clone(), b["data-outcome"].clone()))
        .collect();
    assert_eq!(bars["r3"], "lost");
    assert_eq!(bars["r1"], "running");
    assert_eq!(dump_counts(&dom)["lost"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_a_split_request_as_its_videos_runs_each_naming_its_part() {
    chromium();
    let app = spawn_app("dom-split").await;
    crate::split::play_split_request(&app).await;
    let dom = run_chromium(
        TestDir::new("dom-split-chromium").path(),
        &format!("{}/", app.url),
        &["--dump-dom".into()],
    )
    .await;
    let mut parts: BTreeMap<String, usize> = BTreeMap::new();
    for a in tags_with(&dom, "<span class=\"part\"") {
        *parts.entry(a["data-part"].clone()).or_default() += 1;
    }
    // Each run's part in its timeline row and in its table row.
    let want: BTreeMap<String, usize> = [
        ("split → 3 chunks", 2),
        ("chunk 1/3", 2),
        ("chunk 2/3", 4),
        ("chunk 3/3", 4),
        ("stitch of 3", 4),
    ]
    .into_iter()
    .map(|(p, n)| (p.to_owned(), n))
    .collect();
    assert_eq!(parts, want, "the parts of the runs");
    assert_eq!(tags_with(&dom, "<tr data-run-id=").len(), 8, "every run in the table");
    let legend: Vec<String> = tags_with(&dom, "<li class=")
        .into_iter()
        .filter_map(|a| a.get("data-legend").cloned())
        .collect();
    assert_eq!(legend.len(), 10, "{legend:?}");
    assert!(legend.contains(&"split".to_owned()) && legend.contains(&"chunk".to_owned()));
    assert!(
        dom.contains("Split requests: <b>1 · 5 chunk runs · 3 chunks stored</b>"),
        "the split figures: {dom}"
    );
    assert_eq!(
        dump_counts(&dom)["processed"],
        "1",
        "the split request is processed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_empty_state_before_any_run() {
    chromium();
    let app = spawn_app("dom-empty").await;
    let dom = run_chromium(
        TestDir::new("dom-empty-chromium").path(),
        &format!("{}/", app.url),
        &["--dump-dom".into()],
    )
    .await;
    assert!(dom.contains("No encoder run recorded yet."), "{dom}");
    assert!(dom.contains("No run in progress."), "{dom}");
    assert!(dump_counts(&dom).values().all(|n| n == "0"));
    assert!(tags_with(&dom, "<div class=\"bar\"").is_empty());
}

/// A run of the screenshot's fixture: video, qualities, start and end in seconds, outcome, and
/// the suffix of its pod's name.
type FixtureRun = (&'static str, &'static [&'static str], f64, f64, EventKind, &'static str);

/// A realistic first two minutes of a batch: KEDA fans twelve requests out to encoder Jobs (eight at
/// the first poll, four as the first ones finish), one is killed by a node drain and its message
/// retried, one fails and is retried, one is rejected, one was a duplicate, one goes silent (its
/// pod evicted: lost once its 30 s lease runs out after its last progress report); then two Jobs
/// find the queue empty.
async fn seed_fan_out(app: &TestApp) -> usize {
    let t0: DateTime<Utc> = "2026-01-17T05:50:00Z".parse().unwrap();
    let at = |s: f64| t0 + Duration::milliseconds((s * 1000.0) as i64);
    let runs: [FixtureRun; 15] = [
        (
            "big-buck-bunny",
            &["480p", "720p", "1080p"],
            1.2,
            78.4,
            EventKind::Processed,
            "x5kq2",
        ),
        ("sintel", &["720p", "1080p"], 1.4, 64.9, EventKind::Processed, "b7w9d"),
        ("tears-of-steel", &["720p"], 1.5, 41.8, EventKind::Killed, "m2c8f"),
        (
            "elephants-dream",
            &["360p", "720p"],
            1.9,
            52.3,
            EventKind::Processed,
            "q4z1h",
        ),
        (
            "cosmos-laundromat",
            &["1080p"],
            2.1,
            70.6,
            EventKind::Processed,
            "t8n3v",
        ),
        ("spring", &["720p"], 2.4, 33.0, EventKind::Processed, "k1r6s"),
        ("agent-327", &["480p", "720p"], 2.6, 6.3, EventKind::Failed, "p9d2m"),
        ("caminandes", &["360p"], 2.8, 3.4, EventKind::Rejected, "h6f4j"),
        ("glass-half", &["720p"], 33.8, 55.1, EventKind::Processed, "w3x7c"),
        (
            "agent-327",
            &["480p", "720p"],
            34.1,
            81.9,
            EventKind::Processed,
            "z2g5n",
        ),
        ("spring", &["720p"], 34.5, 36.2, EventKind::Duplicate, "v8l1q"),
        ("tears-of-steel", &["720p"], 64.2, 104.7, EventKind::Processed, "c5y9e"),
        // `Progress`: no outcome; lost at the end time.
        ("sprite-fright", &["1080p"], 36.0, 89.5, EventKind::Progress, "f2k8w"),
        ("", &[], 94.0, 114.0, EventKind::Empty, "j7s3a"),
        ("", &[], 95.1, 115.1, EventKind::Empty, "n4u8r"),
    ];
    for (i, (video, qualities, start, end, outcome, host)) in runs.iter().enumerate() {
        let mut e = Event::new(EventKind::Started);
        e.run_id = Some(format!("{:08x}-run-{i:02}", 0x3b0e_7c1e_u32 + i as u32 * 7919));
        e.host = Some(format!("encoder-7f9c2-{host}"));
        if !video.is_empty() {
            e.video_id = Some((*video).into());
            e.qualities = qualities.iter().map(|q| (*q).to_owned()).collect();
            e.request_id = Some(format!("req-{video}"));
            e.message_id = Some(format!("msg-{i:02}"));
            e.receive_count = Some(if i == 9 || i == 11 { 2 } else { 1 });
            e.lease_seconds = (*outcome == EventKind::Progress).then_some(30);
            app.store.record_at(e.clone(), at(*start)).await.unwrap();
        }
        if *outcome == EventKind::Progress {
            (e.kind, e.stage, e.percent, e.fps) = (*outcome, Some("encoding".into()), Some(64.0), Some(38.5));
            e.elapsed_seconds = Some(end - 30.0 - start);
            app.store.report_progress(e, Some(at(end - 30.0))).unwrap();
            continue;
        }
        e.kind = *outcome;
        e.elapsed_seconds = Some(end - start);
        match outcome {
            EventKind::Processed => {
                let seconds = (end - start) * 0.86;
                e.encode_seconds = Some(seconds);
                e.source_seconds = Some(60.0);
                e.frames = Some(1440);
                e.fps = Some(1440.0 / seconds);
            }
            EventKind::Failed => e.reason = Some("downloading the source: connection reset".into()),
            EventKind::Rejected => e.reason = Some("source s3://media-in/uploads/caminandes.mov does not exist".into()),
            _ => {}
        }
        app.store.record_at(e, at(*end)).await.unwrap();
    }
    runs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_of_a_realistic_fan_out_is_saved_to_docs_dashboard_png() {
    chromium();
    let dir = TestDir::new("screenshot");
    let app = spawn_with(TestDir::new("screenshot-db"), |_| {}).await;
    let runs = seed_fan_out(&app).await;
    let url = format!("{}/", app.url);

    let dom = run_chromium(dir.path(), &url, &["--dump-dom".into()]).await;
    assert_eq!(tags_with(&dom, "<div class=\"bar\"").len(), runs);
    assert_eq!(dump_counts(&dom)["processed"], "8");
    assert_eq!(dump_counts(&dom)["lost"], "1");

    let shot = dir.path().join("dashboard.png");
    run_chromium(
        dir.path(),
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,800".into(),
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("Chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // The IHDR chunk: width and height.
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1200, 800));
    assert!(
        png.len() > 20_000,
        "a page with content, not a blank one ({} bytes)",
        png.len()
    );

    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
    if std::fs::read(&docs).ok().as_deref() != Some(png.as_slice()) {
        std::fs::write(&docs, &png).expect("write docs/dashboard.png");
        eprintln!("updated {}", docs.display());
    }
}
