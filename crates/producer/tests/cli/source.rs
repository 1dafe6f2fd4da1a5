//! `--source` and the environment variables the Kubernetes Job (`k8s/jobs/producer.yaml`) sets;
//! `--json` and `--dry-run`.

use std::collections::BTreeSet;

use crate::helpers::*;

async fn the_jobs_environment_alone_sends_count_copies_per_quality(kind: Kind) {
    let s = Setup::start(kind, "source-env").await;
    let env = s.env(&[
        ("SOURCE", "s3://media-in/uploads/sample.mp4"),
        ("VIDEO_ID", "sample"),
        ("QUALITIES", "360p,720p"),
        ("COUNT", "3"),
        ("OUTPUT_URI", "s3://media-out/renditions"),
    ]);
    let out = run(&[], &env, None);
    assert_exit(&out, 0);

    let got = s.requests().await;
    let pairs: Vec<(String, String)> = got
        .iter()
        .map(|r| (r.video_id.clone(), r.qualities[0].to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let expected: Vec<(String, String)> = ["sample-1", "sample-2", "sample-3"]
        .iter()
        .flat_map(|v| ["360p", "720p"].map(|q| (v.to_string(), q.to_string())))
        .collect();
    assert_eq!(pairs, expected);
    for r in &got {
        assert_eq!(r.source.to_string(), "s3://media-in/uploads/sample.mp4");
        assert_eq!(r.output.as_ref().unwrap().to_string(), "s3://media-out/renditions");
        assert!(!r.list_form);
    }
    let ids: BTreeSet<_> = got.iter().map(|r| r.request_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), 6, "every request has its own id");
}

async fn one_message_puts_every_quality_in_one_request(kind: Kind) {
    let s = Setup::start(kind, "source-one").await;
    let out = s.producer(&[
        "--source",
        "s3://media-in/uploads/talk.mov",
        "--quality",
        "480p",
        "--quality",
        "1080p",
        "--one-message",
    ]);
    assert_exit(&out, 0);
    let got = s.requests().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].video_id, "talk");
    assert!(got[0].list_form);
    assert_eq!(got[0].qualities.len(), 2);
}

async fn json_prints_one_line_per_sent_message_matching_the_queue(kind: Kind) {
    let s = Setup::start(kind, "source-json").await;
    let out = s.producer(&[
        "--source",
        "s3://media-in/uploads/clip.mp4",
        "--quality",
        "360p,480p,720p",
        "--video-id",
        "clip",
        "--json",
    ]);
    assert_exit(&out, 0);
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let mut printed = BTreeSet::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["message_id", "request_id", "video_id"]);
        assert_eq!(v["video_id"], "clip");
        printed.insert((
            v["message_id"].as_str().unwrap().to_owned(),
            v["request_id"].as_str().unwrap().to_owned(),
        ));
    }
    let on_queue: BTreeSet<(String, String)> = s
        .drain(&s.queue)
        .await
        .iter()
        .map(|m| {
            let r = encoding_common::EncodeRequest::from_json(m.body().unwrap()).unwrap();
            (m.message_id().unwrap().to_owned(), r.request_id.unwrap())
        })
        .collect();
    assert_eq!(printed, on_queue);
}

async fn a_dry_run_prints_the_messages_and_sends_nothing(kind: Kind) {
    let s = Setup::start(kind, "source-dry").await;
    let out = s.producer(&[
        "--source",
        "s3://media-in/uploads/clip.mp4",
        "--quality",
        "480p,720p",
        "--count",
        "2",
        "--dry-run",
    ]);
    assert_exit(&out, 0);
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        encoding_common::EncodeRequest::from_json(l).expect("a valid message body");
    }
    assert!(stderr(&out).contains("dry run: nothing sent"));
    assert!(s.requests().await.is_empty());

    // Without a queue at all.
    let env: Vec<(String, String)> = s.aws.env();
    let out = run(
        &[
            "--source",
            "s3://media-in/uploads/clip.mp4",
            "--quality",
            "480p",
            "--dry-run",
        ],
        &env,
        None,
    );
    assert_exit(&out, 0);
    assert_eq!(stdout_lines(&out).len(), 1);
}

async fn invalid_flags_send_nothing(kind: Kind) {
    let s = Setup::start(kind, "source-invalid").await;
    for (args, code) in [
        (&["--source", "http://example.com/a.mp4", "--quality", "480p"][..], 1),
        (
            &[
                "--source",
                "s3://media-in/uploads/a.mp4",
                "--quality",
                "480p",
                "--video-id",
                "../x",
            ],
            1,
        ),
        (
            &[
                "--source",
                "s3://media-in/uploads/a.mp4",
                "--quality",
                "480p",
                "--count",
                "0",
            ],
            1,
        ),
        (&["--source", "s3://media-in/uploads/a.mp4", "--quality", "481p"], 2),
        (&["--source", "s3://media-in/uploads/a.mp4"], 2),
        (&[], 2),
    ] {
        let out = s.producer(args);
        assert_exit(&out, code);
    }
    assert!(s.requests().await.is_empty());
}

test_support::on_both_emulators!(
    the_jobs_environment_alone_sends_count_copies_per_quality,
    one_message_puts_every_quality_in_one_request,
    json_prints_one_line_per_sent_message_matching_the_queue,
    a_dry_run_prints_the_messages_and_sends_nothing,
    invalid_flags_send_nothing,
);
