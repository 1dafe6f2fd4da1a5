//! Every file of the sample media set through the whole pipeline: uploaded to the input bucket,
//! requested at 360p on the queue, run by local-scaler with the real ScaledJob manifest, each file
//! that must be rejected found on the dead-letter queue with its reason, each other file stored as
//! a rendition of the size `media::CASES` gives, every request counted once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use test_support::{Kind, Stack, assert_exit, media, streams};

use crate::media::{CASES, Expect};
use crate::scaling::run_until_empty;

/// The video id of a media file: its name without the extension.
fn video_id(file: &str) -> String {
    file.rsplit_once('.').map_or(file, |(stem, _)| stem).to_owned()
}

async fn every_file_of_the_media_set_goes_through_the_queue_to_a_rendition_or_the_dead_letter_queue(kind: Kind) {
    if media(CASES[0].0).is_none() {
        return;
    }
    let stack = Stack::start(kind, "media-queue", 120).await;
    for (file, _) in CASES {
        let path = media(file).expect("the media set is complete");
        let source = stack.upload(&path, file).await;
        let body = json!({"video_id": video_id(file), "source": source, "quality": "360p", "request_id": file});
        stack.send(&body.to_string()).await;
    }

    let out = run_until_empty(&stack, 2, Duration::from_secs(600));
    assert_exit(&out, 0, &format!("{kind}: local-scaler"));

    // The dead-letter queue, read until every rejected request is there (or nothing more comes).
    let rejected: Vec<(&str, &str)> = CASES
        .iter()
        .filter_map(|(f, e)| match e {
            Expect::Rejected(why) => Some((*f, *why)),
            Expect::Rendition { .. } => None,
        })
        .collect();
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..20 {
        for m in stack.dead_letters().await {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
            let why = m
                .message_attributes()
                .and_then(|a| a.get("rejection-reason"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            reasons.insert(body["request_id"].as_str().unwrap_or("").to_owned(), why);
        }
        if reasons.len() >= rejected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut failures = Vec::new();
    for (file, why) in &rejected {
        match reasons.get(*file) {
            Some(reason) if reason.contains(why) => {}
            Some(reason) => failures.push(format!("{file}: rejected for {reason:?}, expected {why:?}")),
            None => failures.push(format!("{file}: not on the dead-letter queue")),
        }
    }
    assert_eq!(reasons.len(), rejected.len(), "{kind}: dead letters {reasons:?}");

    let mut expected_keys = Vec::new();
    for (file, expect) in CASES {
        let Expect::Rendition { width, height, audio } = expect else {
            continue;
        };
        let id = video_id(file);
        expected_keys.push(format!("renditions/{id}/360p.mp4"));
        let probe = stack.rendition(&id, "360p").await;
        let v = streams(&probe, "video");
        let size = (v[0]["width"].as_u64(), v[0]["height"].as_u64());
        if size != (Some(*width), Some(*height)) {
            failures.push(format!("{file}: {size:?} instead of {width}x{height}"));
        }
        if streams(&probe, "audio").len() != usize::from(*audio) {
            failures.push(format!(
                "{file}: audio {} expected {audio}",
                streams(&probe, "audio").len()
            ));
        }
    }
    expected_keys.sort();
    assert_eq!(
        stack.output_keys().await,
        expected_keys,
        "{kind}: the renditions stored"
    );
    assert!(failures.is_empty(), "{kind}:\n{}", failures.join("\n"));

    let summary = stack.analyzer.get_json("/summary").await;
    assert_eq!(
        summary["counts"]["processed"].as_u64(),
        Some(expected_keys.len() as u64),
        "{kind}: {summary}"
    );
    assert_eq!(
        summary["counts"]["rejected"].as_u64(),
        Some(rejected.len() as u64),
        "{kind}: {summary}"
    );
    assert_eq!(stack.depth().await, (0, 0), "{kind}");
}

test_support::on_both_emulators!(
    every_file_of_the_media_set_goes_through_the_queue_to_a_rendition_or_the_dead_letter_queue,
);
