//! A split request from end to end with S3 and the media in memory: the plan, the chunk
//! messages, resumes, the one stitch, the removal of the chunks, and every refusal.

use std::collections::HashMap;

use encoding_common::EncodeRequest;
use encoding_common::part::Part;
use test_support::TempDir;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fakes::{FakeMedia, MediaAnswer, MemoryStore, StoreFault};
use crate::work::Work;

const SOURCE: &str = "s3://in-b/uploads/long.mp4";
const REQUEST: &str =
    r#"{"video_id":"long","source":"s3://in-b/uploads/long.mp4","qualities":["480p","720p"],"request_id":"req-9"}"#;

fn job(dir: &TempDir, chunks: usize) -> Job<MemoryStore, FakeMedia> {
    let store = MemoryStore::default();
    store.put(SOURCE, b"a long source video", "\"etag-1\"", HashMap::new());
    Job {
        store,
        media: FakeMedia {
            split_into: Some(chunks),
            ..FakeMedia::default()
        },
        default_output: Some(S3Uri::parse("OUTPUT_URI", "s3://out-b/r", false).unwrap()),
        formats: vec![encoding_common::Format::Mp4],
        work_dir: dir.to_path_buf(),
        split_seconds: 4.0,
    }
}

async fn work(job: &Job<MemoryStore, FakeMedia>, body: &str) -> Result<Done, Stop> {
    let r = EncodeRequest::from_json(body).unwrap();
    job.work_on(&r, "run-1", &CancellationToken::new(), &Progress::unread())
        .await
}

/// Splits [`REQUEST`]: the chunk messages' bodies.
async fn split(job: &Job<MemoryStore, FakeMedia>) -> Vec<Outgoing> {
    match work(job, REQUEST).await {
        Ok(Done::Split { messages, .. }) => messages,
        other => panic!("expected a split, got {other:?}"),
    }
}

/// A chunk's answer: whether it encoded, and the stitch message it sends.
async fn chunk(job: &Job<MemoryStore, FakeMedia>, body: &str) -> (bool, Option<Outgoing>, Option<String>) {
    match work(job, body).await {
        Ok(Done::Chunk { encoded, stitch, note }) => (encoded.is_some(), stitch, note),
        other => panic!("expected a chunk, got {other:?}"),
    }
}

fn reason(result: Result<Done, Stop>) -> String {
    match result {
        Err(Stop::Reject(why)) => format!("rejected: {why}"),
        Err(Stop::Fail(e)) => format!("failed: {e:#}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn chunk_uris(store: &MemoryStore) -> Vec<String> {
    store.uris().into_iter().filter(|u| u.contains("/chunks/")).collect()
}

/// Splits [`REQUEST`]: the chunk messages and the after-work.
async fn split_then(job: &Job<MemoryStore, FakeMedia>) -> (Vec<Outgoing>, Option<AfterSplit>) {
    match work(job, REQUEST).await {
        Ok(Done::Split { messages, then, .. }) => (messages, then),
        other => panic!("expected a split, got {other:?}"),
    }
}

/// The stitch message, once every chunk of `messages` is stored.
async fn all_chunks(job: &Job<MemoryStore, FakeMedia>, messages: &[Outgoing]) -> Outgoing {
    let mut stitch = None;
    for m in messages {
        stitch = stitch.or(chunk(job, &m.body).await.1);
    }
    stitch.expect("the last chunk sends the stitch")
}

#[tokio::test]
async fn a_long_source_is_planned_encoded_in_chunks_stitched_once_and_its_chunks_removed() {
    let dir = TempDir::new("split-flow");
    let job = job(&dir, 3);
    let messages = split(&job).await;
    assert_eq!(messages.len(), 3);
    assert!(
        job.media.calls.lock().unwrap().is_empty(),
        "a split request is not encoded whole"
    );
    let key = EncodeRequest::from_json(&messages[0].body)
        .unwrap()
        .part
        .unwrap()
        .plan()
        .to_owned();
    let folder = format!("s3://out-b/r/long/chunks/{key}");
    let plan: ChunkPlan =
        serde_json::from_slice(&job.store.get(&format!("{folder}/plan.json")).unwrap().bytes).unwrap();
    assert_eq!(plan.chunks.len(), 3);

    assert_eq!(chunk(&job, &messages[0].body).await, (true, None, None));
    assert_eq!(chunk(&job, &messages[2].body).await, (true, None, None));
    let (encoded, stitch, _) = chunk(&job, &messages[1].body).await;
    assert!(encoded);
    let stitch = stitch.expect("the chunk that completes the set sends the stitch");
    assert_eq!(stitch.key, format!("{key}-stitch"));
    assert_eq!(*job.media.chunks_encoded.lock().unwrap(), [0, 2, 1]);
    let chunk_meta = job
        .store
        .get(&format!("{folder}/720p.chunk-00001.mp4"))
        .unwrap()
        .metadata;
    assert_eq!(chunk_meta["request-id"], "req-9");
    for uri in chunk_uris(&job.store) {
        let tagging = job.store.get(&uri).unwrap().tagging;
        assert_eq!(
            tagging.as_deref(),
            Some("video-encoding=split"),
            "{uri}: expires if left"
        );
    }
    assert!(job.store.get("s3://out-b/r/long/480p.mp4").is_none());

    // Redeliveries: the claimant sends the stitch again, another chunk does not; nothing is
    // encoded twice.
    let (encoded, again, _) = chunk(&job, &messages[1].body).await;
    assert!(!encoded);
    assert_eq!(again.as_ref(), Some(&stitch));
    assert_eq!(chunk(&job, &messages[0].body).await, (false, None, None));
    assert_eq!(job.media.chunks_encoded.lock().unwrap().len(), 3);

    let Ok(Done::Encoded { outputs, encoded }) = work(&job, &stitch.body).await else {
        panic!("the stitch stores the outputs");
    };
    assert_eq!(encoded.frames, 360);
    let uris: Vec<&str> = outputs.iter().map(|o| o.uri.as_str()).collect();
    assert_eq!(uris, ["s3://out-b/r/long/480p.mp4", "s3://out-b/r/long/720p.mp4"]);
    let stitched_480 = job.store.get("s3://out-b/r/long/480p.mp4").unwrap();
    assert_eq!(stitched_480.bytes, b"[480p 0][480p 1][480p 2]");
    assert_eq!(stitched_480.tagging, None, "the outputs never expire");
    let stitched = job.media.stitched.lock().unwrap().clone();
    assert_eq!(stitched.len(), 1);
    assert_eq!(
        stitched[0][1],
        ["720p.chunk-00000.mp4", "720p.chunk-00001.mp4", "720p.chunk-00002.mp4"]
    );
    assert_eq!(chunk_uris(&job.store), Vec::<String>::new(), "the chunks are removed");

    // Late messages: the stitch is done, the request is stored, a chunk has nothing to do.
    assert!(matches!(
        work(&job, &stitch.body).await,
        Ok(Done::AlreadyStored { same_request: true, .. })
    ));
    let (encoded, stitch_again, note) = chunk(&job, &messages[2].body).await;
    assert!(!encoded && stitch_again.is_none());
    assert_eq!(note.as_deref(), Some("the chunks are stitched already"));
    assert!(matches!(
        work(&job, REQUEST).await,
        Ok(Done::AlreadyStored { same_request: true, .. })
    ));
    assert_eq!(job.media.chunks_encoded.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_redelivered_request_sends_only_the_chunks_not_stored() {
    let dir = TempDir::new("split-resume");
    let job = job(&dir, 4);
    let messages = split(&job).await;
    chunk(&job, &messages[1].body).await;
    chunk(&job, &messages[3].body).await;
    let again = split(&job).await;
    let keys: Vec<&str> = again.iter().map(|m| m.key.rsplit('-').next().unwrap()).collect();
    assert_eq!(keys, ["c00000", "c00002"]);
    assert_eq!(again[0], messages[0], "the same plan, the same message");
}

#[tokio::test]
async fn two_chunks_that_find_the_set_complete_send_one_stitch() {
    let dir = TempDir::new("split-race");
    let job = job(&dir, 3);
    let messages = split(&job).await;
    for m in &messages {
        chunk(&job, m.body.as_str()).await;
    }
    // The set was complete when the last chunk (2) looked; 0 and 1 look again (redelivered).
    let sent: Vec<bool> = [
        chunk(&job, &messages[0].body).await,
        chunk(&job, &messages[1].body).await,
        chunk(&job, &messages[2].body).await,
    ]
    .into_iter()
    .map(|(_, stitch, _)| stitch.is_some())
    .collect();
    assert_eq!(sent, [false, false, true]);
}

#[tokio::test]
async fn a_short_source_or_splitting_off_encodes_the_request_whole() {
    let dir = TempDir::new("split-off");
    let mut whole = job(&dir, 3);
    whole.media.split_into = None;
    assert!(matches!(work(&whole, REQUEST).await, Ok(Done::Encoded { .. })));
    let mut off = job(&dir, 3);
    off.split_seconds = 0.0;
    assert!(matches!(work(&off, REQUEST).await, Ok(Done::Encoded { .. })));
    assert!(chunk_uris(&off.store).is_empty());
}

#[tokio::test]
async fn chunks_and_stitches_that_cannot_belong_to_the_source_are_refused() {
    let dir = TempDir::new("split-refused");
    let job = job(&dir, 3);
    let messages = split(&job).await;
    let body = |part: &str| REQUEST.replacen("\"request_id\"", &format!("{part},\"request_id\""), 1);

    let unknown = body(r#""chunk":{"plan":"p-0000000000000000","index":0,"count":3}"#);
    assert!(
        reason(work(&job, &unknown).await)
            .contains("rejected: the plan s3://out-b/r/long/chunks/p-0000000000000000/plan.json is not stored")
    );

    let key = EncodeRequest::from_json(&messages[0].body)
        .unwrap()
        .part
        .unwrap()
        .plan()
        .to_owned();
    let wrong_count = body(&format!(r#""chunk":{{"plan":"{key}","index":0,"count":4}}"#));
    assert!(reason(work(&job, &wrong_count).await).contains("names 4 chunks where the plan"));

    let early_stitch = body(&format!(r#""stitch":{{"plan":"{key}","count":3}}"#));
    assert!(reason(work(&job, &early_stitch).await).starts_with("failed: chunk 0 of the plan"));

    // The source replaced since the split: its chunks would mix two contents.
    job.store.put(SOURCE, b"another video", "\"etag-2\"", HashMap::new());
    assert!(reason(work(&job, &messages[0].body).await).contains("made for another source content"));
    assert!(job.media.chunks_encoded.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_chunk_that_fails_or_is_stopped_stores_nothing() {
    let dir = TempDir::new("split-chunk-fails");
    let mut job = job(&dir, 3);
    let messages = split(&job).await;
    for (answer, expected) in [
        (MediaAnswer::Failed, "failed: chunk 1 has 50 frames"),
        (
            MediaAnswer::Rejected,
            "rejected: the source is not a usable video: the chunk cannot be decoded",
        ),
    ] {
        job.media.answer = answer;
        assert!(reason(work(&job, &messages[1].body).await).starts_with(expected));
    }
    job.media.answer = MediaAnswer::Cancelled;
    assert!(matches!(work(&job, &messages[1].body).await, Err(Stop::Cancelled)));
    let stored: Vec<String> = chunk_uris(&job.store)
        .into_iter()
        .filter(|u| u.ends_with(".mp4"))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn a_stitch_whose_source_download_fails_stores_nothing_and_keeps_the_chunks() {
    let dir = TempDir::new("split-stitch-download");
    let mut job = job(&dir, 2);
    let messages = split(&job).await;
    let stitch = all_chunks(&job, &messages).await;
    // The source comes down short while the chunks come down beside it.
    job.store.fault = StoreFault::ShortDownload;
    let why = reason(work(&job, &stitch.body).await);
    assert!(
        why.starts_with("failed: downloaded 9 bytes of the 19 announced"),
        "{why}"
    );
    assert!(job.media.stitched.lock().unwrap().is_empty(), "nothing is stitched");
    assert!(job.store.get("s3://out-b/r/long/480p.mp4").is_none());
    assert_eq!(
        chunk_uris(&job.store).iter().filter(|u| u.ends_with(".mp4")).count(),
        4,
        "the chunks stay for the retry"
    );
}

#[test]
fn the_plan_key_changes_with_the_plan_the_source_content_and_the_qualities() {
    let r =
        EncodeRequest::from_json(r#"{"video_id":"v","source":"s3://in-b/k.mp4","qualities":["720p","480p"]}"#).unwrap();
    let key = plan_key("v1-abc", &r, "\"e1\"");
    assert!(key.starts_with("p-") && key.len() == 18, "{key}");
    assert_eq!(key, plan_key("v1-abc", &r, "\"e1\""));
    assert_ne!(key, plan_key("v1-abd", &r, "\"e1\""));
    assert_ne!(key, plan_key("v1-abc", &r, "\"e2\""));
    let fewer =
        EncodeRequest::from_json(r#"{"video_id":"v","source":"s3://in-b/k.mp4","qualities":["720p"]}"#).unwrap();
    assert_ne!(key, plan_key("v1-abc", &fewer, "\"e1\""));
}

#[test]
fn chunk_and_stitch_messages_are_the_request_with_its_part() {
    let r =
        EncodeRequest::from_json(r#"{"video_id":"v","source":"s3://in-b/k.mp4","quality":"480p","request_id":"r-1"}"#)
            .unwrap();
    let m = chunk_message(&r, "p-00ff", 2, 5);
    assert_eq!(m.key, "p-00ff-c00002");
    let back = EncodeRequest::from_json(&m.body).unwrap();
    assert_eq!(
        back.part,
        Some(Part::Chunk {
            plan: "p-00ff".into(),
            index: 2,
            count: 5
        })
    );
    assert_eq!(EncodeRequest { part: None, ..back }, r);
    let s = stitch_message(&r, "p-00ff", 5);
    assert_eq!(s.key, "p-00ff-stitch");
    assert_eq!(
        EncodeRequest::from_json(&s.body).unwrap().part.map(|p| p.count()),
        Some(5)
    );
}

#[tokio::test]
async fn a_split_stream_is_packaged_once_from_the_stitched_renditions() {
    let dir = TempDir::new("split-stream");
    let job = job(&dir, 2);
    let request = REQUEST.replacen("\"request_id\"", r#""formats":["hls"],"request_id""#, 1);
    let messages = match work(&job, &request).await {
        Ok(Done::Split { messages, .. }) => messages,
        other => panic!("expected a split, got {other:?}"),
    };
    assert!(chunk(&job, &messages[0].body).await.1.is_none());
    let stitch = chunk(&job, &messages[1].body).await.1.expect("the stitch");
    let Ok(Done::Encoded { outputs, .. }) = work(&job, &stitch.body).await else {
        panic!("the stitch stores the stream");
    };
    let uris: Vec<&str> = outputs.iter().map(|o| o.uri.as_str()).collect();
    assert_eq!(uris, ["s3://out-b/r/long/master.m3u8"]);
    let packaged = job.media.packaged.lock().unwrap().clone();
    assert_eq!(packaged.len(), 1, "packaged once, by the stitch");
    let names: Vec<&str> = packaged[0].renditions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["480p", "720p"]);
    assert!(
        packaged[0].renditions[0].1.ends_with("out/480p.mp4"),
        "the stitched file is packaged: {:?}",
        packaged[0].renditions[0].1
    );
    assert!(job.store.get("s3://out-b/r/long/480p.mp4").is_none(), "no MP4 asked");
    assert!(chunk_uris(&job.store).is_empty());
}

#[tokio::test]
async fn chunks_that_do_not_stitch_are_replaced_by_a_whole_encode_of_the_source() {
    let dir = TempDir::new("split-stitch-fails");
    let mut job = job(&dir, 2);
    let messages = split(&job).await;
    let stitch = all_chunks(&job, &messages).await;
    job.media.stitch_fails = true;
    let Ok(Done::Encoded { outputs, encoded }) = work(&job, &stitch.body).await else {
        panic!("the request still ends with its outputs");
    };
    assert_eq!(encoded.frames, 150, "made by the whole encode");
    assert_eq!(outputs.len(), 2);
    assert_eq!(
        job.store.get("s3://out-b/r/long/480p.mp4").unwrap().bytes,
        b"rendition 480p",
        "the whole encode's file, not a stitch"
    );
    assert_eq!(job.media.calls.lock().unwrap().len(), 1);
    assert!(chunk_uris(&job.store).is_empty(), "the chunks are removed all the same");
}

#[tokio::test]
async fn the_split_run_stores_the_audio_and_the_stitch_copies_it_without_the_source() {
    let dir = TempDir::new("split-audio");
    let job = job(&dir, 2);
    let (messages, then) = split_then(&job).await;
    let then = then.expect("the audio is to be encoded");
    let key = then.key().to_owned();
    let audio = format!("s3://out-b/r/long/chunks/{key}/audio.m4a");
    assert!(job.store.get(&audio).is_none(), "nothing before the request is deleted");
    job.after_split(then, &CancellationToken::new()).await;
    let sources = job.media.audio_encoded.lock().unwrap().clone();
    assert_eq!(sources.len(), 1);
    assert!(sources[0].ends_with("source"), "{sources:?}");
    let stored = job.store.get(&audio).expect("the audio is stored beside the chunks");
    assert_eq!(stored.content_type, "audio/mp4");
    assert_eq!(
        stored.tagging.as_deref(),
        Some("video-encoding=split"),
        "expires if left"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the scratch directory goes with the after-work"
    );
    // A redelivered request finds the audio stored: it is not encoded again.
    let (_, again) = split_then(&job).await;
    assert!(again.is_none());

    let stitch = all_chunks(&job, &messages).await;
    let before = job.store.downloads().len();
    let Ok(Done::Encoded { encoded, .. }) = work(&job, &stitch.body).await else {
        panic!("the stitch stores the outputs");
    };
    let downloads = job.store.downloads()[before..].to_vec();
    assert!(downloads.contains(&audio), "{downloads:?}");
    assert!(
        !downloads.contains(&SOURCE.to_owned()),
        "the source is not needed: {downloads:?}"
    );
    let used = job.media.stitch_audio.lock().unwrap().clone();
    assert!(
        matches!(&used[..], [StitchAudio::Encoded(p)] if p.ends_with("audio.m4a")),
        "{used:?}"
    );
    assert_eq!(encoded.frames, 240);
    assert!(job.store.get("s3://out-b/r/long/480p.mp4").is_some());
    assert!(chunk_uris(&job.store).is_empty(), "the audio goes with the chunks");
}

#[tokio::test]
async fn without_the_audio_stored_the_stitch_encodes_it_from_the_source() {
    for (answer, claimed, why) in [
        (MediaAnswer::Rejected, false, "a source without audio"),
        (MediaAnswer::Failed, false, "an encode that fails"),
        (MediaAnswer::Cancelled, false, "a signal during the encode"),
        (MediaAnswer::Renditions, true, "a stitch claimed first"),
    ] {
        let dir = TempDir::new("split-no-audio");
        let mut job = job(&dir, 2);
        job.media.audio_answer = answer;
        let (messages, then) = split_then(&job).await;
        let then = then.expect("the audio is to be encoded");
        let key = then.key().to_owned();
        let folder = format!("s3://out-b/r/long/chunks/{key}");
        if claimed {
            // The last chunk's run (of another pod) claimed the stitch while the audio encoded.
            job.store.put(
                &format!("{folder}/stitch.json"),
                br#"{"chunk":1}"#,
                "\"c\"",
                HashMap::new(),
            );
        }
        job.after_split(then, &CancellationToken::new()).await;
        assert!(
            job.store.get(&format!("{folder}/audio.m4a")).is_none(),
            "{why}: no audio stored"
        );
        let stitch = all_chunks(&job, &messages).await;
        let before = job.store.downloads().len();
        assert!(
            matches!(work(&job, &stitch.body).await, Ok(Done::Encoded { .. })),
            "{why}"
        );
        assert!(
            job.store.downloads()[before..].contains(&SOURCE.to_owned()),
            "{why}: the source comes down for its audio"
        );
        let used = job.media.stitch_audio.lock().unwrap().clone();
        assert!(
            matches!(&used[..], [StitchAudio::Source(p)] if p.ends_with("source")),
            "{why}: {used:?}"
        );
    }
}

#[tokio::test]
async fn the_audio_is_not_stored_when_s3_refuses_it_and_the_stitch_does_without() {
    let dir = TempDir::new("split-audio-upload");
    let mut job = job(&dir, 2);
    let (messages, then) = split_then(&job).await;
    job.store.fault = StoreFault::UploadFails;
    job.after_split(then.unwrap(), &CancellationToken::new()).await;
    job.store.fault = StoreFault::None;
    assert!(!job.store.uris().iter().any(|u| u.ends_with("audio.m4a")));
    let stitch = all_chunks(&job, &messages).await;
    assert!(matches!(work(&job, &stitch.body).await, Ok(Done::Encoded { .. })));
    assert!(matches!(
        &job.media.stitch_audio.lock().unwrap()[..],
        [StitchAudio::Source(_)]
    ));
}

#[tokio::test]
async fn a_packaged_split_copies_the_audio_and_still_has_the_source_for_its_subtitles() {
    let dir = TempDir::new("split-audio-stream");
    let job = job(&dir, 2);
    let request = REQUEST.replacen("\"request_id\"", r#""formats":["hls"],"request_id""#, 1);
    let Ok(Done::Split { messages, then, .. }) = work(&job, &request).await else {
        panic!("expected a split");
    };
    job.after_split(then.unwrap(), &CancellationToken::new()).await;
    let stitch = all_chunks(&job, &messages).await;
    let before = job.store.downloads().len();
    assert!(matches!(work(&job, &stitch.body).await, Ok(Done::Encoded { .. })));
    assert!(job.store.downloads()[before..].contains(&SOURCE.to_owned()));
    assert!(matches!(
        &job.media.stitch_audio.lock().unwrap()[..],
        [StitchAudio::Encoded(_)]
    ));
    assert_eq!(job.media.packaged.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn chunks_with_the_audio_stored_that_do_not_stitch_bring_the_source_down_to_encode_it_whole() {
    let dir = TempDir::new("split-audio-fallback");
    let mut job = job(&dir, 2);
    let (messages, then) = split_then(&job).await;
    job.after_split(then.unwrap(), &CancellationToken::new()).await;
    let stitch = all_chunks(&job, &messages).await;
    job.media.stitch_fails = true;
    let before = job.store.downloads().len();
    let Ok(Done::Encoded { encoded, .. }) = work(&job, &stitch.body).await else {
        panic!("the request still ends with its outputs");
    };
    assert_eq!(encoded.frames, 150, "made by the whole encode");
    assert!(job.store.downloads()[before..].contains(&SOURCE.to_owned()));
    let calls = job.media.calls.lock().unwrap().clone();
    assert!(calls[0].0.ends_with("source"));
}

/// The folder of the plan the chunk `message` belongs to.
fn folder_of(message: &Outgoing) -> String {
    let r = EncodeRequest::from_json(&message.body).unwrap();
    format!("s3://out-b/r/long/chunks/{}", r.part.unwrap().plan())
}

const SOURCE_BYTES: &[u8] = b"a long source video";

#[tokio::test]
async fn a_chunk_fetches_only_its_bytes_of_the_source_when_the_split_told_them() {
    let dir = TempDir::new("split-ranges");
    let mut job = job(&dir, 3);
    job.media.ranged = true;
    let messages = split(&job).await;
    let stored = job
        .store
        .get(&format!("{}/ranges.json", folder_of(&messages[0])))
        .unwrap();
    let ranges: serde_json::Value = serde_json::from_slice(&stored.bytes).unwrap();
    assert_eq!(
        ranges,
        serde_json::json!({"size": 19, "chunks": [[[0, 2], [2, 3]], [[0, 2], [3, 4]], [[0, 2], [4, 5]]]})
    );
    assert_eq!(stored.tagging.as_deref(), Some("video-encoding=split"));
    chunk(&job, &messages[2].body).await;
    // Chunk 2's bytes (joined across the gap), zeros for the rest, the source's size.
    let mut expected = SOURCE_BYTES[..5].to_vec();
    expected.resize(SOURCE_BYTES.len(), 0);
    assert_eq!(*job.media.chunk_inputs.lock().unwrap(), [expected]);
    assert_eq!(
        job.store.downloads(),
        [SOURCE.to_owned(), format!("{SOURCE} [(0, 5)]")],
        "the split run fetched the whole source, the chunk run its bytes"
    );
    // The rest of the flow is unchanged: the last chunk sends the one stitch.
    let stitch = all_chunks(&job, &messages[..2]).await;
    assert!(matches!(work(&job, &stitch.body).await, Ok(Done::Encoded { .. })));
    assert_eq!(
        chunk_uris(&job.store),
        Vec::<String>::new(),
        "ranges.json is removed too"
    );
}

#[tokio::test]
async fn a_chunk_that_does_not_encode_from_its_bytes_fetches_the_whole_source_and_is_not_rejected() {
    let dir = TempDir::new("split-ranges-fallback");
    let mut job = job(&dir, 2);
    job.media.ranged = true;
    job.media.holes_fail = true;
    let messages = split(&job).await;
    assert_eq!(chunk(&job, &messages[1].body).await, (true, None, None));
    let mut sparse = SOURCE_BYTES[..4].to_vec();
    sparse.resize(SOURCE_BYTES.len(), 0);
    assert_eq!(*job.media.chunk_inputs.lock().unwrap(), [sparse, SOURCE_BYTES.to_vec()]);
    assert_eq!(*job.media.chunks_encoded.lock().unwrap(), [1]);
    assert_eq!(
        job.store.downloads(),
        [SOURCE.to_owned(), format!("{SOURCE} [(0, 4)]"), SOURCE.to_owned()]
    );
}

#[tokio::test]
async fn stored_ranges_that_do_not_fit_the_source_are_not_used() {
    let dir = TempDir::new("split-ranges-misfit");
    let mut job = job(&dir, 2);
    job.media.ranged = true;
    let messages = split(&job).await;
    for (body, why) in [
        (&b"{\"size\": 18, \"chunks\": [[[0, 2]], [[0, 2]]]}"[..], "another size"),
        (b"{\"size\": 19, \"chunks\": [[[0, 20]], [[0, 2]]]}", "past the end"),
        (b"not json", "unreadable"),
    ] {
        job.store.put(
            &format!("{}/ranges.json", folder_of(&messages[0])),
            body,
            "\"r\"",
            HashMap::new(),
        );
        chunk(&job, &messages[0].body).await;
        let inputs = job.media.chunk_inputs.lock().unwrap().clone();
        assert_eq!(
            inputs.last().map(Vec::as_slice),
            Some(SOURCE_BYTES),
            "{why}: the whole source"
        );
        assert_eq!(job.store.downloads().last().map(String::as_str), Some(SOURCE), "{why}");
        // Encode the chunk again next time.
        job.store
            .remove_prefix(&format!("{}/480p.chunk", folder_of(&messages[0])));
    }
}

#[tokio::test]
async fn a_source_that_cannot_be_ranged_stores_no_ranges_and_its_chunks_fetch_it_whole() {
    let dir = TempDir::new("split-no-ranges");
    let job = job(&dir, 2);
    let messages = split(&job).await;
    assert!(
        job.store
            .get(&format!("{}/ranges.json", folder_of(&messages[0])))
            .is_none()
    );
    chunk(&job, &messages[0].body).await;
    assert_eq!(job.store.downloads(), [SOURCE, SOURCE]);
}
