//! Chaos: encoder runs killed with SIGTERM or SIGKILL at random moments, runs started until the
//! queue is empty; every request must still end with exactly one valid output, counted once.
//!
//! The kill plan comes from a seeded generator: `CHAOS_SEED=<n>` replays a failing run.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use test_support::{Kind, LineCollector, Stack, assert_exit, media, signal, streams};

/// Requests sent: `CHAOS_REQUESTS`, default 20 (`scripts/bench.sh chaos` sends 100).
fn requests() -> usize {
    std::env::var("CHAOS_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}
/// Encoder runs at once.
const PARALLEL: usize = 2;
/// Share of runs that get a signal.
const KILL_SHARE: f64 = 0.5;

struct Running {
    child: Child,
    lines: LineCollector,
    kill: Option<(Instant, i32)>,
    delivered: Option<i32>,
}

async fn under_random_sigterm_and_sigkill_every_request_ends_with_exactly_one_output_counted_once(kind: Kind) {
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
    let requests = requests().max(1);
    let started = Instant::now();
    let stack = Stack::start_with(kind, "chaos", 4, 50).await;
    let uri = stack.upload(&source, "clip.mp4").await;
    let out = stack.producer(&[
        "--source",
        &uri,
        "--quality",
        "360p",
        "--video-id",
        "chaos",
        "--count",
        &requests.to_string(),
    ]);
    assert_exit(&out, 0, "producer");

    let deadline = Instant::now() + Duration::from_secs(60 + 15 * requests as u64);
    let mut running: Vec<Running> = Vec::new();
    let mut exits: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut sigterms_acknowledged, mut runs, mut plan) = (0usize, 0usize, Vec::new());
    let (mut killed, mut early_sigterms) = (0usize, 0usize);
    // The log of every run that exited 143, to name one whose kill was not counted.
    let mut acknowledged_logs: Vec<Vec<String>> = Vec::new();
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
                if status.signal() == Some(libc::SIGTERM) {
                    // A SIGTERM before `main` (while the dynamic loader maps FFmpeg's libraries)
                    // takes the default action; harmless only if the run had received nothing.
                    let lines = r.lines.lines();
                    assert!(
                        !lines.iter().any(|l| l.contains("received a message")),
                        "a run holding a message died of SIGTERM's default action:\n{}",
                        lines.join("\n")
                    );
                    early_sigterms += 1;
                }
                let code = test_support::exit_code(status);
                *exits.entry(code).or_default() += 1;
                // Killed: the signal, not the end of the work, ended the run.
                if code == 143 || code == 128 + libc::SIGKILL || code == 128 + libc::SIGTERM {
                    killed += 1;
                }
                match r.delivered {
                    Some(libc::SIGTERM) => {
                        assert!(
                            code == 143 || code == 0 || status.signal() == Some(libc::SIGTERM),
                            "a SIGTERMed run exited {code}:\n{}",
                            r.lines.lines().join("\n")
                        );
                        // Exited 143 itself (a death by the signal also reads 143 in `code`).
                        if status.code() == Some(143) {
                            sigterms_acknowledged += 1;
                            acknowledged_logs.push(r.lines.lines());
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
        let (visible, in_flight) = stack.depth().await;
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
    let seconds = started.elapsed().as_secs_f64();
    // One line for `scripts/bench.sh chaos` to read.
    eprintln!(
        "chaos figures: emulator={kind} requests={requests} runs={runs} killed={killed} killed_share={:.2} \
         exited_143={sigterms_acknowledged} sigkilled={} sigterm_before_main={early_sigterms} seconds={seconds:.1} \
         exits={exits:?} seed={seed}",
        killed as f64 / runs.max(1) as f64,
        exits.get(&(128 + libc::SIGKILL)).copied().unwrap_or(0),
    );

    // Exactly one valid output per request.
    let mut keys = stack.output_keys().await;
    keys.sort();
    let mut expected: Vec<String> = (1..=requests)
        .map(|i| format!("renditions/chaos-{i}/360p.mp4"))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    for i in 1..=requests {
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
    assert_eq!(processed, requests, "{count:?}");
    if kills != sigterms_acknowledged {
        let reported: Vec<String> = stack
            .events("killed")
            .await
            .iter()
            .filter_map(|e| e["run_id"].as_str().map(str::to_owned))
            .collect();
        let unreported: Vec<String> = acknowledged_logs
            .iter()
            .filter(|log| !reported.iter().any(|id| log.iter().any(|l| l.contains(id.as_str()))))
            .map(|log| log.join("\n"))
            .collect();
        panic!(
            "{kills} kills counted, {sigterms_acknowledged} runs exited 143; the runs without a killed event:\n{}",
            unreported.join("\n----\n")
        );
    }
    assert!(
        sigterms_acknowledged > 0 && exits.contains_key(&(128 + libc::SIGKILL)),
        "the plan killed nothing: {exits:?}"
    );
    assert!(
        killed * 10 >= runs * 3,
        "only {killed} of {runs} runs were killed; the chaos needs at least 30%"
    );
    assert!(stack.dead_letters().await.is_empty(), "a message was dead-lettered");
    assert_eq!(stack.depth().await, (0, 0));
}

test_support::on_both_emulators!(
    under_random_sigterm_and_sigkill_every_request_ends_with_exactly_one_output_counted_once,
);
