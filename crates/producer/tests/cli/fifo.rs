//! FIFO queues: each message carries its video id as group and its request id as deduplication id,
//! so a request sent again within SQS's deduplication window is enqueued once.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName as Attr, QueueAttributeName};

use crate::helpers::*;

async fn fifo_setup(kind: Kind, tag: &str) -> Setup {
    // As scripts/aws/create-queue.sh makes it: duplicates are recognised by the producer's
    // MessageDeduplicationId only, never by comparing bodies.
    Setup::with_queue(
        kind,
        tag,
        "requests.fifo",
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::ContentBasedDeduplication, "false"),
        ],
    )
    .await
}

fn attribute(m: &Message, name: Attr) -> String {
    m.attributes()
        .and_then(|a| a.get(&name))
        .cloned()
        .unwrap_or_else(|| panic!("{name:?} missing on {m:?}"))
}

/// (request id → (group id, deduplication id)) of the messages on the queue.
async fn read_back(s: &Setup) -> BTreeMap<String, (String, String)> {
    s.drain(&s.queue)
        .await
        .iter()
        .map(|m| {
            let r = encoding_common::EncodeRequest::from_json(m.body().unwrap()).unwrap();
            let ids = (
                attribute(m, Attr::MessageGroupId),
                attribute(m, Attr::MessageDeduplicationId),
            );
            (r.request_id.unwrap(), ids)
        })
        .collect()
}

async fn a_fifo_queue_gets_group_and_deduplication_ids_and_a_resent_file_is_enqueued_once(kind: Kind) {
    let s = fifo_setup(kind, "fifo-dedup").await;
    let text = [
        line("talk", "talk.mov", "480p", Some("r-talk-480")),
        line("talk", "talk.mov", "720p", Some("r-talk-720")),
        line("intro", "intro.mp4", "720p", Some("batch 7 intro")),
    ]
    .join("\n");
    let file = s.write("requests.jsonl", &text);
    let first = s.producer(&["--from-file", file.to_str().unwrap()]);
    assert_exit(&first, 0);
    assert!(stderr(&first).contains("fifo=true"), "{}", stderr(&first));
    // The same requests again, within the five-minute deduplication window: SQS accepts and drops them.
    let again = s.producer(&["--from-file", file.to_str().unwrap()]);
    assert_exit(&again, 0);

    let got = read_back(&s).await;
    assert_eq!(got.len(), 3, "each request once: {got:?}");
    assert_eq!(got["r-talk-480"], ("talk".into(), "r-talk-480".into()));
    assert_eq!(got["r-talk-720"], ("talk".into(), "r-talk-720".into()));
    let (group, dedup) = &got["batch 7 intro"];
    assert_eq!(group, "intro");
    // A request id with spaces is not a valid deduplication id: a stable UUID stands for it.
    assert!(uuid::Uuid::parse_str(dedup).is_ok(), "{dedup}");
}

async fn requests_built_from_flags_reach_a_fifo_queue(kind: Kind) {
    let s = fifo_setup(kind, "fifo-source").await;
    let out = s.producer(&[
        "--source",
        "s3://media-in/uploads/clip.mp4",
        "--quality",
        "360p,720p",
        "--count",
        "2",
        "--video-id",
        "clip",
    ]);
    assert_exit(&out, 0);
    let got = read_back(&s).await;
    assert_eq!(got.len(), 4);
    for (request_id, (group, dedup)) in &got {
        assert!(group == "clip-1" || group == "clip-2", "{group}");
        assert_eq!(dedup, request_id);
    }
}

test_support::on_both_emulators!(
    a_fifo_queue_gets_group_and_deduplication_ids_and_a_resent_file_is_enqueued_once,
    requests_built_from_flags_reach_a_fifo_queue,
);
