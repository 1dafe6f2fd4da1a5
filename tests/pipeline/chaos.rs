//! Chaos: encoder runs killed with SIGTERM or SIGKILL at random moments, runs started until the
//! queue is empty; every request must still end with exactly one valid output, counted once.
//!
//! The kill plan comes from a seeded generator: `CHAOS_SEED=<n>` replays a failing run.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use pipeline_tests::{LineCollector, OUTPUT_BUCKET, Stack, assert_exit, media, signal, streams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Requests sent.
const REQUESTS: usize = 20;
/// Encoder runs at once.
const PARALLEL: usize = 2;
/// Share of runs that get a signal.
const KILL_SHARE: f64 = 0.45;

struct Running {
    child: Child,
    lines: LineCollector,
    kill: Option<(Instant, i32)>,
    delivered: Option<i32>,
}

#[tokio::test(flavor = "multi_thread")]
async fn under_random_sigterm_and_sigkill_every_request_ends_with_exactly_one_output_counted_once() {
    let Some(source) = media("h264_aac_720p30_5s.mp4") else {
        return;
    };
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_124);
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays this run)");
    let mut rng = StdRng::seed_from_u64(seed);
    // A short lease brings SIGKILLed messages back quickly; many receives are allowed so that an
    // unlucky message is not dead-lettered by the chaos itself.
    let stack = Stack::start_with("chaos", 4, 50).await;
    let uri = stack.upload(&source, "clip.mp4").await;
    let out = stack.producer(&[
        "--source",
        &uri,
        "--quality",
        "360p",
        "--video-id",
        "chaos",
        "--count",
        &REQUESTS.to_string(),
    ]);
    assert_exit(&out, 0, "producer");

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut running: Vec<Running> = Vec::new();
    let mut exits: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut sigterms_acknowledged, mut runs, mut plan) = (0usize, 0usize, Vec::new());
    loop {
        assert!(
            Instant::now() < deadline,
            "the queue was not drained in time; plan so far: {plan:?}"
        );
        // Deliver due signals.
        for r in running.iter_mut() {
            if let Some((at, sig)) = r.kill
                && Instant::now() >= at
                && r.delivered.is_none()
            {
                signal(&r.child, sig);
                r.delivered = Some(sig);
            }
        }
        // Collect finished runs.
        let mut i = 0;
        while i < running.len() {
            if let Some(status) = running[i].child.try_wait().expect("poll") {
                let r = running.remove(i);
                use std::os::unix::process::ExitStatusExt;
                assert_ne!(
                    status.signal(),
                    Some(libc::SIGTERM),
                    "a run died of SIGTERM's default action: its handler was not installed yet"
                );
                let code = pipeline_tests::exit_code(status);
                *exits.entry(code).or_default() += 1;
                match r.delivered {
                    Some(libc::SIGTERM) => {
                        assert!(
                            code == 143 || code == 0,
                            "a SIGTERMed run exited {code}:\n{}",
                            r.lines.lines().join("\n")
                        );
                        if code == 143 {
                            sigterms_acknowledged += 1;
                        }
                    }
                    Some(_) => assert!(
                        code == 128 + libc::SIGKILL || code == 0,
                        "a SIGKILLed run exited {code}"
                    ),
                    None => assert!(
                        code == 0 || code == 1,
                        "an undisturbed run exited {code}:\n{}",
                        r.lines.lines().join("\n")
                    ),
                }
            } else {
                i += 1;
            }
        }
        let (visible, in_flight) = stack.moto.depth(&stack.queue).await;
        if visible + in_flight == 0 && running.is_empty() {
            break;
        }
        while running.len() < PARALLEL && visible + in_flight > 0 {
            runs += 1;
            let (child, lines) = stack.spawn_encoder(&[]);
            let kill = rng.random_bool(KILL_SHARE).then(|| {
                let sig = if rng.random_bool(0.5) {
                    libc::SIGTERM
                } else {
                    libc::SIGKILL
                };
                let after = Duration::from_millis(rng.random_range(100..2500));
                plan.push((runs, sig, after));
                (Instant::now() + after, sig)
            });
            running.push(Running {
                child,
                lines,
                kill,
                delivered: None,
            });
            if running.len() >= PARALLEL {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{runs} runs, exit codes {exits:?}, signals planned {}", plan.len());

    // Exactly one valid output per request.
    let mut keys = stack.moto.keys(OUTPUT_BUCKET).await;
    keys.sort();
    let mut expected: Vec<String> = (1..=REQUESTS)
        .map(|i| format!("renditions/chaos-{i}/360p.mp4"))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    for i in 1..=REQUESTS {
        let probe = stack.rendition(&format!("chaos-{i}"), "360p").await;
        let v = streams(&probe, "video");
        assert_eq!(
            (v[0]["width"].as_u64(), v[0]["height"].as_u64()),
            (Some(640), Some(360)),
            "chaos-{i}"
        );
        assert_eq!(streams(&probe, "audio").len(), 1, "chaos-{i}");
        let d: f64 = probe["format"]["duration"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        assert!((d - 4.97).abs() < 0.1, "chaos-{i} lasts {d}");
    }

    // Counted once each; every acknowledged SIGTERM is one kill; nothing dead-lettered.
    let count = stack.get_count().await;
    let processed = count.iter().filter(|l| l.contains(" - processed count ")).count();
    let kills = count.iter().filter(|l| l.contains(" - kill count ")).count();
    assert_eq!(processed, REQUESTS, "{count:?}");
    assert_eq!(kills, sigterms_acknowledged, "{count:?}");
    assert!(
        sigterms_acknowledged > 0 && exits.contains_key(&(128 + libc::SIGKILL)),
        "the plan killed nothing: {exits:?}"
    );
    assert!(stack.dead_letters().await.is_empty(), "a message was dead-lettered");
    assert_eq!(stack.moto.depth(&stack.queue).await, (0, 0));
}
