//! Every way a run can end: the stop reason, the message's fate, the exit code and the reports,
//! with in-memory stand-ins for the queue, the work and the analyzer (no AWS, no FFmpeg).

use std::time::Duration;

use encoding_common::EventKind;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fakes::{Fate, MemoryQueue, NoticeBox, Recorder, StubWork};
use crate::media::Encoded;
use crate::work::AfterSplit;
use encoding_common::notice::NoticeOutput;

const REQUEST: &str = r#"{"video_id":"clip","source":"s3://in-b/clip.mp4","quality":"480p","request_id":"req-1"}"#;

fn output(uri: &str) -> NoticeOutput {
    NoticeOutput {
        uri: uri.into(),
        size: Some(1234),
        duration_seconds: Some(5.0),
        video_codec: Some("h264".into()),
        audio_codec: Some("aac".into()),
        width: Some(854),
        height: Some(480),
    }
}

fn settings() -> Settings {
    Settings {
        receive_wait_seconds: 0,
        visibility_timeout: Duration::from_secs(30),
        host: "encoder-test".into(),
    }
}

fn encoded() -> Result<Done, Stop> {
    Ok(Done::Encoded {
        encoded: Encoded {
            files: Vec::new(),
            frames: 150,
            source_seconds: Some(5.0),
            encode_seconds: 2.5,
        },
        outputs: vec![output("s3://out-b/r/clip/480p.mp4")],
    })
}

/// What a run did: its outcome, the message's endings (renewals left out), the reports' kinds.
struct Ran {
    outcome: Outcome,
    endings: Vec<Fate>,
    kinds: Vec<EventKind>,
    events: Vec<encoding_common::Event>,
}

async fn run_noticed(queue: MemoryQueue, work: StubWork, shutdown: CancellationToken, notices: NoticeBox) -> Ran {
    let reports = Recorder::default();
    let parts = Parts {
        queue: queue.clone(),
        work,
        reports: reports.clone(),
        notices,
    };
    let outcome = Run::new(parts, settings(), shutdown, "run-1".into()).go().await;
    let events = reports.events();
    Ran {
        outcome,
        endings: queue.endings(),
        kinds: events.iter().map(|e| e.kind).collect(),
        events,
    }
}

async fn run_with(queue: MemoryQueue, work: StubWork, shutdown: CancellationToken) -> Ran {
    run_noticed(queue, work, shutdown, NoticeBox::none()).await
}

async fn run(queue: MemoryQueue, work: StubWork) -> Ran {
    run_with(queue, work, CancellationToken::new()).await
}

/// A run with a results queue whose notices land on the queue's timeline.
async fn run_with_notices(queue: MemoryQueue, work: StubWork) -> (Ran, NoticeBox) {
    let notices = NoticeBox::on(&queue);
    let ran = run_noticed(queue, work, CancellationToken::new(), notices.clone()).await;
    (ran, notices)
}

fn released() -> Fate {
    Fate::Visibility(Duration::ZERO)
}

#[test]
fn exit_codes_follow_the_contract() {
    assert_eq!(Outcome::Processed.exit_code(), 0);
    assert_eq!(Outcome::Duplicate.exit_code(), 0);
    assert_eq!(Outcome::Empty.exit_code(), 0);
    assert_eq!(Outcome::Rejected.exit_code(), 0);
    assert_eq!(Outcome::Failed.exit_code(), 1);
    assert_eq!(Outcome::ConfigError.exit_code(), 2);
    assert_eq!(Outcome::Killed.exit_code(), 143);
}

#[tokio::test]
async fn stored_renditions_are_reported_processed_before_the_message_is_deleted() {
    let r = run(MemoryQueue::with_messages(&[REQUEST]), StubWork::answering(encoded)).await;
    assert_eq!(r.outcome, Outcome::Processed);
    assert_eq!(r.outcome.exit_code(), 0);
    assert_eq!(r.endings, [Fate::Deleted]);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Processed]);
    let p = &r.events[1];
    assert_eq!(p.request_id.as_deref(), Some("req-1"));
    assert_eq!(p.video_id.as_deref(), Some("clip"));
    assert_eq!(p.qualities, ["480p"]);
    assert_eq!(p.frames, Some(150));
    assert_eq!(p.fps, Some(60.0));
    assert_eq!(p.outputs, ["s3://out-b/r/clip/480p.mp4"]);
    assert_eq!(p.run_id.as_deref(), Some("run-1"));
    assert_eq!(p.host.as_deref(), Some("encoder-test"));
    assert_eq!(p.message_id.as_deref(), Some("m-1"));
    assert_eq!(p.receive_count, Some(1));
}

#[tokio::test]
async fn renditions_stored_by_an_earlier_delivery_of_the_request_count_as_processed() {
    let work = StubWork::answering(|| {
        Ok(Done::AlreadyStored {
            same_request: true,
            outputs: vec![output("s3://o/v/480p.mp4")],
        })
    });
    let r = run(MemoryQueue::with_messages(&[REQUEST]), work).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Processed, 0));
    assert_eq!(r.endings, [Fate::Deleted]);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Processed]);
    assert!(r.events[1].reason.as_deref().unwrap().contains("earlier delivery"));
}

#[tokio::test]
async fn renditions_stored_by_another_request_are_a_duplicate_and_the_message_is_deleted() {
    let work = StubWork::answering(|| {
        Ok(Done::AlreadyStored {
            same_request: false,
            outputs: vec![],
        })
    });
    let r = run(MemoryQueue::with_messages(&[REQUEST]), work).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Duplicate, 0));
    assert_eq!(r.endings, [Fate::Deleted]);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Duplicate]);
}

#[tokio::test]
async fn a_delete_that_fails_after_the_report_still_ends_processed() {
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    queue.fail_delete();
    let r = run(queue, StubWork::answering(encoded)).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Processed, 0));
    assert_eq!(r.endings, []);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Processed]);
}

#[tokio::test]
async fn a_rejected_request_is_dead_lettered_with_its_reason_and_reported() {
    let work = StubWork::answering(|| {
        Err(Stop::Reject(
            "the source object s3://in-b/clip.mp4 does not exist".into(),
        ))
    });
    let r = run(MemoryQueue::with_messages(&[REQUEST]), work).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Rejected, 0));
    assert_eq!(
        r.endings,
        [Fate::DeadLettered(
            "the source object s3://in-b/clip.mp4 does not exist".into()
        )]
    );
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Rejected]);
    assert!(r.events[1].reason.as_deref().unwrap().contains("does not exist"));
}

#[tokio::test]
async fn a_body_that_is_not_a_request_is_dead_lettered_without_any_work() {
    let work = StubWork::answering(|| panic!("no work for an invalid request"));
    let r = run(
        MemoryQueue::with_messages(&[r#"{"video_id":"v","qualty":"720p"}"#]),
        work,
    )
    .await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Rejected, 0));
    assert!(
        matches!(&r.endings[..], [Fate::DeadLettered(why)] if why.contains("unknown field `qualty`")),
        "{:?}",
        r.endings
    );
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Rejected]);
    assert_eq!(r.events[1].video_id, None, "an invalid body names no video");
}

#[tokio::test]
async fn without_a_dead_letter_queue_a_rejected_message_is_deleted_and_reported() {
    let queue = MemoryQueue::with_messages(&["{not json"]);
    queue.without_dead_letter_queue();
    let r = run(queue, StubWork::answering(encoded)).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Rejected, 0));
    assert!(
        matches!(&r.endings[..], [Fate::DeletedWithoutDeadLetterQueue(_)]),
        "{:?}",
        r.endings
    );
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Rejected]);
}

#[tokio::test]
async fn a_rejection_that_cannot_be_dead_lettered_releases_the_message_and_fails() {
    let queue = MemoryQueue::with_messages(&["{not json"]);
    queue.fail_dead_letter();
    let r = run(queue, StubWork::answering(encoded)).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Failed, 1));
    assert_eq!(r.endings, [released()]);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Failed]);
    assert!(
        r.events[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("dead-lettering a rejected request")
    );
}

#[tokio::test]
async fn a_failure_releases_the_message_at_once_and_reports_the_error() {
    let work = StubWork::answering(|| {
        Err(Stop::Fail(anyhow::anyhow!(
            "uploading s3://o/v/480p.mp4: InternalError"
        )))
    });
    let r = run(MemoryQueue::with_messages(&[REQUEST]), work).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Failed, 1));
    assert_eq!(r.endings, [released()]);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Failed]);
    assert!(r.events[1].reason.as_deref().unwrap().contains("InternalError"));
}

#[tokio::test]
async fn a_failure_whose_release_fails_still_exits_1_and_the_lease_brings_the_message_back() {
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    queue.fail_visibility(true);
    let work = StubWork::answering(|| Err(Stop::Fail(anyhow::anyhow!("boom"))));
    let r = run(queue, work).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Failed, 1));
    assert_eq!(r.endings, [], "left leased");
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Failed]);
}

#[tokio::test]
async fn a_signal_during_the_work_releases_the_message_reports_the_kill_and_exits_143() {
    let shutdown = CancellationToken::new();
    let mut work = StubWork::answering(|| Err(Stop::Cancelled));
    work.shutdown_during = Some(shutdown.clone());
    work.wait_for_cancel = true;
    let r = run_with(MemoryQueue::with_messages(&[REQUEST]), work, shutdown).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Killed, 143));
    assert_eq!(r.endings, [released()]);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Killed]);
    assert_eq!(r.events[1].request_id.as_deref(), Some("req-1"));
}

#[tokio::test]
async fn a_signal_after_the_renditions_are_stored_still_releases_the_message_as_a_kill() {
    let shutdown = CancellationToken::new();
    let mut work = StubWork::answering(encoded);
    work.shutdown_during = Some(shutdown.clone());
    let r = run_with(MemoryQueue::with_messages(&[REQUEST]), work, shutdown).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Killed, 143));
    assert_eq!(
        r.endings,
        [released()],
        "not deleted: the next run finds the renditions"
    );
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Killed]);
}

#[tokio::test]
async fn a_signal_during_the_long_poll_reports_the_kill_and_touches_no_message() {
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    queue.hang_receive();
    let r = run_with(queue, StubWork::answering(encoded), shutdown).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Killed, 143));
    assert_eq!(r.endings, []);
    assert_eq!(r.kinds, [EventKind::Killed]);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_the_work_releases_the_message_and_fails_with_the_reason() {
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    queue.fail_visibility(true);
    let mut work = StubWork::answering(|| Err(Stop::Cancelled));
    work.wait_for_cancel = true;
    let r = run(queue, work).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Failed, 1));
    // The release is tried (and fails like the renewals): the message returns with its lease.
    assert_eq!(r.endings, []);
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Failed]);
    let reason = r.events[1].reason.as_deref().unwrap();
    assert!(reason.contains("the lease on the message was lost"), "{reason}");
}

#[tokio::test]
async fn an_empty_queue_is_reported_empty_and_exits_0() {
    let r = run(MemoryQueue::default(), StubWork::answering(encoded)).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Empty, 0));
    assert_eq!(r.endings, []);
    assert_eq!(r.kinds, [EventKind::Empty]);
}

#[tokio::test]
async fn a_receive_that_fails_is_reported_failed_and_exits_1() {
    let queue = MemoryQueue::default();
    queue.fail_receive();
    let r = run(queue, StubWork::answering(encoded)).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Failed, 1));
    assert_eq!(r.endings, []);
    assert_eq!(r.kinds, [EventKind::Failed]);
    assert!(r.events[0].reason.as_deref().unwrap().contains("connection refused"));
}

#[tokio::test]
async fn every_report_of_a_run_keeps_the_analyzers_rules() {
    for work in [
        StubWork::answering(encoded),
        StubWork::answering(|| Err(Stop::Reject("no".into()))),
        StubWork::answering(|| Err(Stop::Fail(anyhow::anyhow!("no")))),
    ] {
        let r = run(MemoryQueue::with_messages(&[REQUEST]), work).await;
        for e in r.events {
            e.clone().validate().unwrap_or_else(|err| panic!("{e:?}: {err}"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_working_run_reports_its_progress_while_it_changes_and_its_lease_when_it_starts() {
    let mut work = StubWork::answering(encoded);
    // 40% after 4 s, 80% after 8 s, then 12 s more of the same before the work ends.
    work.progress = vec![
        (Duration::from_secs(4), 40.0),
        (Duration::from_secs(4), 80.0),
        (Duration::from_secs(12), 80.0),
    ];
    let r = run(MemoryQueue::with_messages(&[REQUEST]), work).await;
    assert_eq!(r.outcome, Outcome::Processed);
    assert_eq!(
        r.kinds,
        [
            EventKind::Started,
            EventKind::Progress,
            EventKind::Progress,
            EventKind::Processed
        ],
        "one report per change, none while nothing changes"
    );
    assert_eq!(r.events[0].lease_seconds, Some(30));
    let percents: Vec<Option<f64>> = r.events[1..3].iter().map(|e| e.percent).collect();
    assert_eq!(percents, [Some(40.0), Some(80.0)]);
    for e in &r.events[1..3] {
        assert_eq!(e.stage.as_deref(), Some("encoding"));
        assert_eq!(e.fps, Some(25.0));
        assert_eq!(e.lease_seconds, Some(30));
        assert_eq!(e.request_id.as_deref(), Some("req-1"));
        e.clone().validate().expect("a valid progress report");
    }
}

#[tokio::test]
async fn a_processed_request_gets_its_notice_with_every_output_before_its_message_is_deleted() {
    let (r, notices) = run_with_notices(MemoryQueue::with_messages(&[REQUEST]), StubWork::answering(encoded)).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Processed, 0));
    assert_eq!(r.endings, [Fate::Notice("processed".into()), Fate::Deleted]);
    let n = &notices.sent()[0];
    assert_eq!((n.request_id.as_str(), n.video_id.as_str()), ("req-1", "clip"));
    assert_eq!(n.outputs, [output("s3://out-b/r/clip/480p.mp4")]);
    assert_eq!(
        (n.frames, n.encode_seconds, n.source_seconds),
        (Some(150), Some(2.5), Some(5.0))
    );
    assert_eq!(n.run_id.as_deref(), Some("run-1"));
    assert_eq!(n.receive_count, Some(1));
}

#[tokio::test]
async fn a_notice_that_cannot_be_sent_releases_the_message_for_the_next_delivery_to_send_it() {
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    let mut notices = NoticeBox::on(&queue);
    notices.refuse = true;
    let r = run_noticed(queue, StubWork::answering(encoded), CancellationToken::new(), notices).await;
    assert_eq!((r.outcome, r.outcome.exit_code()), (Outcome::Failed, 1));
    assert_eq!(r.endings, [released()], "not deleted");
    assert_eq!(r.kinds, [EventKind::Started, EventKind::Failed]);
    assert!(r.events[1].reason.as_deref().unwrap().contains("completion notice"));
}

#[tokio::test]
async fn duplicates_rejections_and_last_failures_are_noticed_and_other_endings_are_not() {
    let dup = StubWork::answering(|| {
        Ok(Done::AlreadyStored {
            same_request: false,
            outputs: vec![output("s3://o/v/480p.mp4")],
        })
    });
    let (r, _) = run_with_notices(MemoryQueue::with_messages(&[REQUEST]), dup).await;
    assert_eq!(r.endings, [Fate::Notice("duplicate".into()), Fate::Deleted]);

    let reject = StubWork::answering(|| Err(Stop::Reject("no video stream".into())));
    let (r, notices) = run_with_notices(MemoryQueue::with_messages(&[REQUEST]), reject).await;
    assert_eq!(
        r.endings,
        [
            Fate::Notice("rejected".into()),
            Fate::DeadLettered("no video stream".into())
        ]
    );
    assert_eq!(notices.sent()[0].reason.as_deref(), Some("no video stream"));

    let fail = || StubWork::answering(|| Err(Stop::Fail(anyhow::anyhow!("S3 is down"))));
    let last = MemoryQueue::with_messages(&[REQUEST]);
    last.delivering(5, 5);
    let (r, notices) = run_with_notices(last, fail()).await;
    assert_eq!(
        r.endings,
        [Fate::Notice("failed".into()), released()],
        "the last delivery"
    );
    assert_eq!(notices.sent()[0].reason.as_deref(), Some("S3 is down"));
    let earlier = MemoryQueue::with_messages(&[REQUEST]);
    earlier.delivering(2, 5);
    let (r, _) = run_with_notices(earlier, fail()).await;
    assert_eq!(r.endings, [released()], "retries are left: the request is not over");

    let (r, _) = run_with_notices(MemoryQueue::with_messages(&["{not json"]), StubWork::answering(encoded)).await;
    assert!(
        matches!(&r.endings[..], [Fate::DeadLettered(_)]),
        "a body that is not a request names nobody to tell: {:?}",
        r.endings
    );
}

fn outgoing(key: &str) -> crate::queue::Outgoing {
    crate::queue::Outgoing {
        body: format!(r#"{{"video_id":"clip","source":"s3://in-b/clip.mp4","quality":"480p","x":"{key}"}}"#),
        key: key.into(),
    }
}

#[tokio::test]
async fn a_split_sends_its_chunk_messages_then_deletes_the_request() {
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    let ran = run(
        queue.clone(),
        StubWork::answering(|| {
            Ok(Done::Split {
                count: 3,
                messages: vec![outgoing("p-1-c00000"), outgoing("p-1-c00002")],
                then: Some(AfterSplit::for_test("p-1")),
            })
        }),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::Split);
    assert_eq!(ran.outcome.exit_code(), 0);
    assert_eq!(
        ran.endings,
        [
            Fate::Sent("p-1-c00000".into()),
            Fate::Sent("p-1-c00002".into()),
            Fate::Deleted
        ]
    );
    assert_eq!(ran.kinds, [EventKind::Started, EventKind::Split]);
    let split = &ran.events[1];
    assert_eq!((split.chunk, split.chunks), (None, Some(3)));
    assert_eq!(split.reason.as_deref(), Some("2 of 3 chunk messages sent"));
    assert_eq!(queue.waiting().len(), 2, "the chunk messages are on the queue");
}

#[tokio::test]
async fn a_split_runs_its_after_work_once_the_request_is_deleted_and_only_when_it_was() {
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    let mut work = StubWork::answering(|| {
        Ok(Done::Split {
            count: 2,
            messages: vec![outgoing("p-1-c00000"), outgoing("p-1-c00001")],
            then: Some(AfterSplit::for_test("p-1")),
        })
    });
    work.timeline = Some(queue.clone());
    let afters = work.afters.clone();
    let ran = run(queue.clone(), work).await;
    assert_eq!(ran.outcome, Outcome::Split);
    let afters = afters.lock().unwrap().clone();
    assert_eq!(afters.len(), 1, "{afters:?}");
    assert_eq!(afters[0].0, "p-1");
    assert_eq!(
        afters[0].1,
        [
            Fate::Sent("p-1-c00000".into()),
            Fate::Sent("p-1-c00001".into()),
            Fate::Deleted
        ],
        "the chunk messages are sent and the request deleted before the after-work starts"
    );

    // A split whose chunk messages cannot be sent keeps its request: no after-work.
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    queue.fail_send();
    let mut work = StubWork::answering(|| {
        Ok(Done::Split {
            count: 2,
            messages: vec![outgoing("p-1-c00000")],
            then: Some(AfterSplit::for_test("p-1")),
        })
    });
    work.timeline = Some(queue.clone());
    let afters = work.afters.clone();
    let ran = run(queue, work).await;
    assert_eq!(ran.outcome, Outcome::Failed);
    assert!(afters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_chunk_message_that_cannot_be_sent_releases_the_request() {
    let queue = MemoryQueue::with_messages(&[REQUEST]);
    queue.fail_send();
    let ran = run(
        queue,
        StubWork::answering(|| {
            Ok(Done::Split {
                count: 2,
                messages: vec![outgoing("p-1-c00000")],
                then: Some(AfterSplit::for_test("p-1")),
            })
        }),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::Failed);
    assert_eq!(ran.endings, [Fate::Visibility(Duration::ZERO)]);
    assert_eq!(ran.kinds, [EventKind::Started, EventKind::Failed]);
    assert!(ran.events[1].reason.as_deref().unwrap().contains("connection refused"));
}

#[tokio::test]
async fn a_chunk_run_reports_its_chunk_and_the_last_one_sends_the_stitch_first() {
    const CHUNK: &str = r#"{"video_id":"clip","source":"s3://in-b/clip.mp4","quality":"480p","request_id":"req-1","chunk":{"plan":"p-1","index":2,"count":3}}"#;
    let queue = MemoryQueue::with_messages(&[CHUNK]);
    let notices = NoticeBox::on(&queue);
    let ran = run_noticed(
        queue,
        StubWork::answering(|| {
            Ok(Done::Chunk {
                encoded: Some(Encoded {
                    files: Vec::new(),
                    frames: 120,
                    source_seconds: None,
                    encode_seconds: 2.0,
                }),
                stitch: Some(outgoing("p-1-stitch")),
                note: None,
            })
        }),
        CancellationToken::new(),
        notices.clone(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::Chunk);
    assert_eq!(ran.endings, [Fate::Sent("p-1-stitch".into()), Fate::Deleted]);
    assert!(notices.sent().is_empty(), "a chunk does not end its request");
    assert_eq!(ran.kinds, [EventKind::Started, EventKind::Chunk]);
    for e in &ran.events {
        assert_eq!((e.chunk, e.chunks), (Some(2), Some(3)));
        assert_eq!(e.request_id.as_deref(), Some("req-1"));
    }
    assert_eq!(ran.events[1].frames, Some(120));
    assert_eq!(
        ran.events[1].reason.as_deref(),
        Some("every chunk is stored: the stitch message is sent")
    );
}
