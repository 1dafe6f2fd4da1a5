//! The aggregates against a full recomputation ([`crate::oracle`]): after random event streams,
//! after a clean restart, after a `kill -9` under load, and for a database written by an analyzer
//! from before the aggregates (the events table alone), counted when it is first opened.

use std::time::Duration;

use chrono::{DateTime, Utc};
use encoding_common::{Event, EventKind};
use serde_json::Value;

use crate::helpers::{DbPath, Program, TestApp, TestDir, all_events, spawn_with};
use crate::oracle::{Recomputed, Report, recompute, samples};

/// A small seeded generator (xorshift64), so that every failure replays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 0 to `n - 1`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One step of a stream: an event to store, or a progress report.
#[derive(Debug, Clone)]
pub enum Step {
    Store(Event),
    Progress(Event),
}

const QUALITIES: [&str; 4] = ["360p", "480p", "720p", "1080p"];
const OUTCOMES: [EventKind; 5] = [
    EventKind::Processed,
    EventKind::Killed,
    EventKind::Failed,
    EventKind::Rejected,
    EventKind::Duplicate,
];
/// The outcomes of a chunk run: mostly its chunk stored.
const CHUNK_OUTCOMES: [EventKind; 6] = [
    EventKind::Chunk,
    EventKind::Chunk,
    EventKind::Killed,
    EventKind::Failed,
    EventKind::Duplicate,
    EventKind::Rejected,
];

/// Makes `e` an outcome of its run, as the encoder would give it: a chunk run's from
/// [`CHUNK_OUTCOMES`], a stitch run's from [`OUTCOMES`], a whole request's from those or `split`
/// (which says how many chunks it planned).
fn end(rng: &mut Rng, e: &mut Event) {
    e.kind = if e.chunk.is_some() {
        *rng.pick(&CHUNK_OUTCOMES)
    } else if e.chunks.is_some() || rng.below(8) != 0 {
        *rng.pick(&OUTCOMES)
    } else {
        e.chunks = Some(2 + rng.below(4) as u32);
        EventKind::Split
    };
}

/// A random stream of `n` steps by encoder runs whose ids start with `prefix`: runs that start,
/// report progress, end (or never do: lost or still running, by their lease), outcomes whose
/// `started` never came, empty-queue runs, reports after the outcome, requests processed twice,
/// and legacy events without a run; some runs are part of a split request (a run that splits, a
/// chunk run, a stitch run), their request ids shared with the others'. `leases` are the leases
/// runs give (`None`: none given).
pub fn stream(rng: &mut Rng, prefix: &str, n: usize, leases: &[Option<u64>], progress: bool) -> Vec<Step> {
    let mut steps = Vec::with_capacity(n);
    let mut open: Vec<Event> = Vec::new();
    let mut ended: Vec<Event> = Vec::new();
    let mut runs = 0;
    while steps.len() < n {
        let roll = rng.below(100);
        let new_run = |rng: &mut Rng, runs: &mut usize, kind| {
            *runs += 1;
            let mut e = Event::new(kind);
            e.run_id = Some(format!("{prefix}-run-{runs}"));
            e.video_id = Some(format!("video-{}", rng.below(12)));
            let k = 1 + rng.below(3) as usize;
            let first = rng.below(QUALITIES.len() as u64) as usize;
            e.qualities = QUALITIES
                .iter()
                .cycle()
                .skip(first)
                .take(k)
                .map(|q| (*q).to_owned())
                .collect();
            // Few request ids, so that some requests are processed twice.
            e.request_id = Some(format!("{prefix}-req-{}", rng.below(40)));
            e.host = Some(format!("encoder-{}", rng.below(5)));
            e.lease_seconds = *rng.pick(leases);
            e.elapsed_seconds = Some(rng.below(50_000) as f64 / 1000.0);
            // Every event of a chunk run carries its chunk, every event of a stitch run the plan's
            // number of chunks; few of them, so that chunks are stored twice.
            match rng.below(10) {
                0 | 1 => {
                    let n = 2 + rng.below(3) as u32;
                    (e.chunk, e.chunks) = (Some(rng.below(u64::from(n)) as u32), Some(n));
                }
                2 => e.chunks = Some(2 + rng.below(3) as u32),
                _ => {}
            }
            e
        };
        match roll {
            0..=29 => {
                let e = new_run(rng, &mut runs, EventKind::Started);
                open.push(e.clone());
                steps.push(Step::Store(e));
            }
            30..=49 if progress && !open.is_empty() => {
                let i = rng.below(open.len() as u64) as usize;
                let mut e = open[i].clone();
                e.kind = EventKind::Progress;
                e.stage = Some((*rng.pick(&["downloading", "encoding", "uploading"])).to_owned());
                e.percent = Some(rng.below(1001) as f64 / 10.0);
                e.fps = (rng.below(2) == 0).then(|| rng.below(900) as f64 / 7.0);
                e.lease_seconds = *rng.pick(leases);
                steps.push(Step::Progress(e));
            }
            50..=74 if !open.is_empty() => {
                let i = rng.below(open.len() as u64) as usize;
                let mut e = open.swap_remove(i);
                end(rng, &mut e);
                e.lease_seconds = None;
                e.stage = None;
                e.percent = None;
                // Repeats, so that percentiles meet ties.
                e.encode_seconds = Some(rng.below(40) as f64 * 0.75);
                e.fps = Some(rng.below(30) as f64 * 2.5);
                e.outputs = e.qualities.iter().map(|q| format!("s3://out/v/{q}.mp4")).collect();
                ended.push(e.clone());
                steps.push(Step::Store(e));
            }
            75..=82 => {
                // An outcome whose started never came, or an empty-queue run.
                let empty = rng.below(2) == 0;
                let mut e = new_run(rng, &mut runs, EventKind::Empty);
                e.lease_seconds = None;
                if empty {
                    (e.video_id, e.request_id, e.qualities) = (None, None, Vec::new());
                    (e.chunk, e.chunks) = (None, None);
                } else {
                    end(rng, &mut e);
                }
                steps.push(Step::Store(e));
            }
            83..=87 if !ended.is_empty() => {
                // A report after the outcome: a progress report, or a second outcome.
                let mut e = rng.pick(&ended).clone();
                if progress && rng.below(2) == 0 {
                    e.kind = EventKind::Progress;
                    e.stage = Some("uploading".into());
                    e.percent = Some(100.0);
                    steps.push(Step::Progress(e));
                } else {
                    end(rng, &mut e);
                    steps.push(Step::Store(e));
                }
            }
            88..=92 => {
                let kind = if rng.below(2) == 0 {
                    EventKind::Processed
                } else {
                    EventKind::Killed
                };
                steps.push(Step::Store(Event::new(kind)));
            }
            _ => {}
        }
    }
    steps
}

/// Plays `steps` into the store in-process, the `i`-th at `t0` plus `gaps` before it; returns the
/// reports in the order taken (stored events as `GET /events` lists them are read afterwards).
pub async fn play(app: &TestApp, steps: &[Step], t0: DateTime<Utc>, rng: &mut Rng) -> Vec<Taken> {
    let mut at = t0;
    let mut taken = Vec::new();
    for step in steps {
        at += chrono::Duration::milliseconds(rng.below(4000) as i64);
        match step {
            Step::Store(e) => {
                app.store.record_at(e.clone(), at).await.expect("stored");
                taken.push(Taken::Stored);
            }
            Step::Progress(e) => {
                app.store.report_progress(e.clone(), Some(at)).expect("taken");
                taken.push(Taken::Progress(Box::new((e.clone(), at))));
            }
        }
    }
    taken
}

/// What [`play`] did, in order.
#[derive(Debug, Clone)]
pub enum Taken {
    Stored,
    Progress(Box<(Event, DateTime<Utc>)>),
}

/// The oracle's reports: `taken` with its stored events filled in, in order, from `stored`.
pub fn reports(taken: &[Taken], stored: &[Value]) -> Vec<Report> {
    let mut stored = stored.iter();
    let out: Vec<Report> = taken
        .iter()
        .map(|t| match t {
            Taken::Stored => Report::Stored(stored.next().expect("as many stored as taken").clone()),
            Taken::Progress(p) => Report::Progress(p.clone()),
        })
        .collect();
    assert!(stored.next().is_none(), "more events stored than taken");
    out
}

/// What the analyzer at `url` answers, in the oracle's shape.
pub async fn answers(client: &reqwest::Client, url: &str) -> Recomputed {
    let get = |path: String| {
        let client = client.clone();
        async move {
            let resp = client.get(path).send().await.expect("the analyzer answers");
            assert_eq!(resp.status(), 200);
            resp.text().await.expect("a body")
        }
    };
    let summary: Value = serde_json::from_str(&get(format!("{url}/summary")).await).unwrap();
    let mut runs = std::collections::BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page: Value =
            serde_json::from_str(&get(format!("{url}/runs?order=oldest&limit=97{cursor}")).await).unwrap();
        for r in page["runs"].as_array().unwrap() {
            let previous = runs.insert(r["run_id"].as_str().unwrap().to_owned(), r.clone());
            assert!(previous.is_none(), "a run listed twice: {r}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => {
                assert_eq!(page["total"].as_u64(), Some(runs.len() as u64), "total");
                break;
            }
        }
    }
    let metrics = samples(&get(format!("{url}/metrics")).await);
    Recomputed { summary, runs, metrics }
}

/// Asserts that the analyzer's answers equal the recomputation, naming the first difference.
pub fn assert_same(got: &Recomputed, want: &Recomputed, when: &str) {
    // Through text, as the answers came: serde_json reads some floats back an ulp away.
    let text = |v: &Value| -> Value { serde_json::from_str(&v.to_string()).unwrap() };
    let want = Recomputed {
        summary: text(&want.summary),
        runs: want.runs.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        metrics: want.metrics.clone(),
    };
    assert_eq!(got.summary, want.summary, "{when}: /summary");
    let ids = |r: &Recomputed| r.runs.keys().cloned().collect::<Vec<_>>();
    assert_eq!(ids(got), ids(&want), "{when}: the runs listed");
    for (id, run) in &want.runs {
        assert_eq!(&got.runs[id], run, "{when}: run {id}");
    }
    assert_eq!(got.metrics, want.metrics, "{when}: /metrics");
}

async fn check(app: &TestApp, taken: &[Taken], when: &str) -> Recomputed {
    app.store.sync().await.expect("synced");
    let stored = all_events(&app.client, &app.url).await;
    let want = recompute(&reports(taken, &stored), Utc::now());
    let got = answers(&app.client, &app.url).await;
    assert_same(&got, &want, when);
    got
}

/// Leases giving every fate: the default (120 s), lost within seconds, running for ever.
const LEASES: [Option<u64>; 4] = [None, Some(1), Some(30), Some(1_000_000_000)];

#[tokio::test]
async fn the_aggregates_equal_a_full_recomputation_after_random_streams_and_a_restart() {
    for seed in 1..=3u64 {
        let mut rng = Rng::new(seed);
        let app = spawn_with(TestDir::new(&format!("aggregates-{seed}")), |_| {}).await;
        let t0 = Utc::now() - chrono::Duration::hours(3);
        let steps = stream(&mut rng, "a", 400, &LEASES, true);
        let mut taken = play(&app, &steps, t0, &mut rng).await;
        let before = check(&app, &taken, &format!("seed {seed}")).await;
        let lost = before.summary["counts"]["lost"].as_u64().unwrap();
        let running = before.summary["runs_in_progress"].as_u64().unwrap();
        assert!(
            lost > 0 && running > 0,
            "seed {seed}: every fate met ({lost} lost, {running} running)"
        );
        let split = &before.summary["split"];
        assert!(
            ["requests", "chunk_runs", "chunks_stored"]
                .iter()
                .all(|k| split[k].as_u64() > Some(0)),
            "seed {seed}: split requests met ({split})"
        );

        let app = spawn_with(app.stop().await, |_| {}).await;
        check(&app, &taken, &format!("seed {seed}, restarted")).await;
        // And counting goes on from there, reports of the runs before the restart included.
        let more = stream(&mut rng, "b", 200, &LEASES, true);
        let t1 = t0 + chrono::Duration::minutes(40);
        taken.extend(play(&app, &more, t1, &mut rng).await);
        check(&app, &taken, &format!("seed {seed}, after more")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_aggregates_equal_a_full_recomputation_after_a_kill_9_under_load() {
    let dir = TestDir::new("aggregates-kill9");
    let mut analyzer = Program::start(&dir.db(), &dir.path().join("first.log")).await;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..6u64 {
        let (url, acked) = (analyzer.url.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = Rng::new(100 + c);
            let client = reqwest::Client::new();
            // Leases of an hour, or of a second: those runs are lost by the time they are checked.
            let steps = stream(&mut rng, &format!("k{c}"), 5000, &[Some(3600), Some(1)], false);
            for step in steps {
                let Step::Store(e) = step else { continue };
                match client.post(format!("{url}/events")).json(&e).send().await {
                    Ok(r) if r.status().is_success() => {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(r) => panic!("a live analyzer refused {e:?}: {}", r.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < 1500 {
        assert!(std::time::Instant::now() < deadline, "too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    analyzer.signal(libc::SIGKILL);
    analyzer.wait(Duration::from_secs(10)).await;
    for c in clients {
        c.await.expect("a client");
    }
    let analyzer = Program::start(&dir.db(), &dir.path().join("second.log")).await;
    // Every run given a lease of a second is lost by now.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let client = reqwest::Client::new();
    let stored = all_events(&client, &analyzer.url).await;
    assert!(stored.len() >= 1500, "{} stored", stored.len());
    let reports: Vec<Report> = stored.into_iter().map(Report::Stored).collect();
    let want = recompute(&reports, Utc::now());
    assert_same(&answers(&client, &analyzer.url).await, &want, "after kill -9");
}

#[tokio::test]
async fn a_database_of_events_alone_is_counted_once_when_first_opened() {
    // Written as an analyzer from before the aggregates wrote it: events, in the order recorded.
    let mut rng = Rng::new(7);
    let scratch = spawn_with(TestDir::new("aggregates-old-scratch"), |_| {}).await;
    let t0 = Utc::now() - chrono::Duration::hours(3);
    let steps = stream(&mut rng, "o", 500, &LEASES, false);
    play(&scratch, &steps, t0, &mut rng).await;
    let events = all_events(&scratch.client, &scratch.url).await;
    let get_count = scratch.get("/get/count").await.text().await.unwrap();

    let dir = TestDir::new("aggregates-old");
    {
        let db = rusqlite::Connection::open(dir.db()).unwrap();
        db.execute_batch(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, recorded_at TEXT NOT NULL,
                 kind TEXT NOT NULL, run_id TEXT, video_id TEXT, request_id TEXT, body TEXT NOT NULL);
             CREATE INDEX events_request ON events(request_id, kind);",
        )
        .unwrap();
        for e in &events {
            let (event, at) = crate::oracle::event_of(e);
            db.execute(
                "INSERT INTO events (id, recorded_at, kind, run_id, video_id, request_id, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    e["id"].as_i64(),
                    at,
                    event.kind.as_str(),
                    event.run_id,
                    event.video_id,
                    event.request_id,
                    serde_json::to_string(&event).unwrap()
                ],
            )
            .unwrap();
        }
    }
    let app = spawn_with(dir, |_| {}).await;
    let reports: Vec<Report> = events.iter().cloned().map(Report::Stored).collect();
    assert_same(
        &answers(&app.client, &app.url).await,
        &recompute(&reports, Utc::now()),
        "first open",
    );
    assert_eq!(app.get("/get/count").await.text().await.unwrap(), get_count);
    // Counted once: a restart counts nothing again.
    let app = spawn_with(app.stop().await, |_| {}).await;
    assert_same(
        &answers(&app.client, &app.url).await,
        &recompute(&reports, Utc::now()),
        "second open",
    );
}
