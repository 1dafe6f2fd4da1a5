//! Sending in batches of ten: a request SQS refuses is named and does not hold back the others.

use std::collections::BTreeSet;

use aws_sdk_sqs::types::QueueAttributeName;

use crate::helpers::*;

/// A batch with one entry the queue really refuses: the queue is created with SQS's smallest
/// `MaximumMessageSize` (1024 bytes), and one request, valid by the contract, has a source key
/// long enough to make its message body larger than that. Moto (like SQS for some rules) refuses
/// the whole batch with `InvalidParameterValue`, and the producer then sends the batch's entries
/// one by one; LocalStack (like SQS for this rule) fails that entry alone. Either way the eleven
/// good ones arrive and the bad one is named.
async fn a_batch_with_a_failing_entry_delivers_the_others_and_names_it(kind: Kind) {
    let s = Setup::with_queue(
        kind,
        "batch-entry",
        "small-messages",
        &[(QueueAttributeName::MaximumMessageSize, "1024")],
    )
    .await;
    let long_key = format!("{}.mp4", "k".repeat(1000));
    let mut lines: Vec<String> = (1..=12)
        .map(|i| {
            line(
                &format!("v{i:02}"),
                &format!("v{i}.mp4"),
                "720p",
                Some(&format!("r-{i:02}")),
            )
        })
        .collect();
    lines[3] = line("too-big", &long_key, "720p", Some("r-big"));
    assert!(lines[3].len() > 1024);
    let file = s.write("requests.jsonl", &lines.join("\n"));

    let out = s.producer(&["--from-file", file.to_str().unwrap(), "--json"]);
    assert_exit(&out, 1);

    let printed: BTreeSet<String> = stdout_lines(&out)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let arrived: BTreeSet<String> = s.requests().await.into_iter().map(|r| r.request_id.unwrap()).collect();
    let expected: BTreeSet<String> = (1..=12).filter(|i| *i != 4).map(|i| format!("r-{i:02}")).collect();
    assert_eq!(
        arrived, expected,
        "the eleven good requests are on the queue, once each"
    );
    assert_eq!(printed, expected);

    let log = stderr(&out);
    let summary = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(" failed "))
        .unwrap_or_else(|| panic!("no final error line in:\n{log}"));
    assert!(summary.contains("1 of 12 request(s) not sent"), "{summary}");
    assert!(summary.contains("too-big [720p] (request_id r-big)"), "{summary}");
    assert!(summary.contains("Message must be shorter than 1024 bytes"), "{summary}");
    assert_eq!(
        log.contains("sending its entries one by one"),
        kind == Kind::Moto,
        "only moto refuses the whole batch: {log}"
    );
}

async fn many_requests_go_out_in_several_batches_and_all_arrive(kind: Kind) {
    let s = Setup::start(kind, "batch-many").await;
    let out = s.producer(&[
        "--source",
        "s3://media-in/uploads/load.mp4",
        "--quality",
        "360p",
        "--count",
        "25",
        "--video-id",
        "load",
    ]);
    assert_exit(&out, 0);
    let ids: BTreeSet<String> = s.requests().await.into_iter().map(|r| r.video_id).collect();
    assert_eq!(ids.len(), 25);
    assert!(ids.contains("load-1") && ids.contains("load-25"));
    assert!(stderr(&out).contains("sent=25 failed=0"), "{}", stderr(&out));
}

async fn a_missing_queue_fails_every_request_at_once_and_names_them(kind: Kind) {
    let s = Setup::start(kind, "batch-noqueue").await;
    let (base, _name) = s.queue.rsplit_once('/').expect("a queue URL has a path");
    let missing = format!("{base}/no-such-queue");
    let env = s.env(&[("QUEUE_URL", missing.as_str())]);
    let out = run(
        &[
            "--source",
            "s3://media-in/uploads/a.mp4",
            "--quality",
            "360p,720p",
            "--video-id",
            "a",
        ],
        &env,
        None,
    );
    assert_exit(&out, 1);
    let log = stderr(&out);
    assert!(log.contains("the queue refuses every request"), "{log}");
    assert!(
        log.contains("2 of 2 request(s) not sent: a [360p] (request_id"),
        "{log}"
    );
    assert!(log.contains("a [720p] (request_id"), "{log}");
    assert!(
        log.contains("NonExistentQueue") || log.contains("QueueDoesNotExist"),
        "{log}"
    );
}

test_support::on_both_emulators!(
    a_batch_with_a_failing_entry_delivers_the_others_and_names_it,
    many_requests_go_out_in_several_batches_and_all_arrive,
    a_missing_queue_fails_every_request_at_once_and_names_them,
);
