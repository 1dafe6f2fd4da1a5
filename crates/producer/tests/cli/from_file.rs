//! `--from-file`: every line is checked before anything is sent.

use encoding_common::EncodeRequest;

use crate::helpers::*;

fn parse(body: &str) -> EncodeRequest {
    EncodeRequest::from_json(body).unwrap()
}

async fn a_valid_file_sends_every_request_as_written(kind: Kind) {
    let s = Setup::start(kind, "file-valid").await;
    let list = r#"{"video_id":"talk","source":"s3://media-in/uploads/talk.mov","qualities":["480p","1080p"],"output":"s3://media-out/r","request_id":"r-2"}"#;
    let text = [
        "# launch renditions".to_owned(),
        line("intro", "intro.mp4", "720p", Some("r-1")),
        String::new(),
        list.to_owned(),
        "   ".to_owned(),
        line("outro", "outro.mp4", "4k", None),
    ]
    .join("\n");
    let file = s.write("requests.jsonl", &text);
    let out = s.producer(&["--from-file", file.to_str().unwrap()]);
    assert_exit(&out, 0);

    let got = s.requests().await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], parse(&line("intro", "intro.mp4", "720p", Some("r-1"))));
    let generated = &got[1];
    assert_eq!(generated.video_id, "outro");
    assert_eq!(generated.qualities[0].as_str(), "2160p");
    let id = generated.request_id.as_deref().expect("a request id was given");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(got[2], parse(list));
    assert!(got[2].to_json().contains(r#""qualities":["480p","1080p"]"#));
}

async fn an_invalid_line_sends_nothing_and_is_named_with_its_number(kind: Kind) {
    let s = Setup::start(kind, "file-invalid").await;
    let text = [
        line("a", "a.mp4", "720p", None),
        line("b", "b.mp4", "720p", None),
        "# comment".to_owned(),
        r#"{"video_id":"c","source":"s3://media-in/uploads/c.mp4","qualty":"720p"}"#.to_owned(),
        line("d", "d.mp4", "721p", None),
    ]
    .join("\n");
    let file = s.write("requests.jsonl", &text);
    let out = s.producer(&["--from-file", file.to_str().unwrap(), "--json"]);
    assert_exit(&out, 1);

    let log = stderr(&out);
    assert!(
        log.contains("line=4") && log.contains("unknown field `qualty`"),
        "{log}"
    );
    assert!(
        log.contains("line=5") && log.contains("unknown quality \"721p\""),
        "{log}"
    );
    assert!(log.contains("2 invalid line(s), nothing sent"), "{log}");
    assert!(log.contains("line 4: ") && log.contains("line 5: "), "{log}");
    assert!(stdout_lines(&out).is_empty());
    assert!(s.requests().await.is_empty(), "nothing may reach the queue");
}

async fn skip_invalid_reports_the_bad_lines_and_sends_the_rest(kind: Kind) {
    let s = Setup::start(kind, "file-skip").await;
    let text = [
        line("a", "a.mp4", "720p", Some("r-a")),
        r#"{"video_id":".hidden","source":"s3://media-in/uploads/c.mp4","quality":"720p"}"#.to_owned(),
        line("b", "b.mp4", "480p", Some("r-b")),
        line("b-again", "b.mp4", "480p", Some("r-b")),
    ]
    .join("\n");
    let file = s.write("requests.jsonl", &text);
    let out = s.producer(&["--from-file", file.to_str().unwrap(), "--skip-invalid"]);
    assert_exit(&out, 0);

    let log = stderr(&out);
    assert!(log.contains("line=2") && log.contains("invalid video_id"), "{log}");
    assert!(
        log.contains("line=4") && log.contains("already used on line 3"),
        "{log}"
    );
    assert!(log.contains("skipped_invalid_lines=2"), "{log}");
    let ids: Vec<String> = s.requests().await.into_iter().map(|r| r.video_id).collect();
    assert_eq!(ids, ["a", "b"]);
}

async fn requests_can_come_from_standard_input_such_as_a_dry_runs_output(kind: Kind) {
    let s = Setup::start(kind, "file-stdin").await;
    let dry = s.producer(&[
        "--source",
        "s3://media-in/uploads/clip.mp4",
        "--quality",
        "360p,720p",
        "--dry-run",
    ]);
    assert_exit(&dry, 0);
    let printed = String::from_utf8(dry.stdout.clone()).unwrap();
    assert_eq!(printed.lines().count(), 2);
    assert!(s.requests().await.is_empty(), "a dry run sends nothing");

    let out = run(&["--from-file", "-"], &s.env(&[]), Some(&printed));
    assert_exit(&out, 0);
    let got = s.requests().await;
    let mut expected: Vec<_> = printed.lines().map(parse).collect();
    sort(&mut expected);
    assert_eq!(
        got, expected,
        "the printed requests are sent as they are, request ids included"
    );
}

async fn the_jobs_environment_does_not_change_a_files_requests_but_a_typed_flag_is_refused(kind: Kind) {
    let s = Setup::start(kind, "file-env").await;
    let file = s.write("requests.jsonl", &line("a", "a.mp4", "720p", Some("r-a")));
    let job_env = s.env(&[
        ("SOURCE", "s3://media-in/uploads/sample.mp4"),
        ("VIDEO_ID", "sample"),
        ("QUALITIES", "360p,720p"),
        ("COUNT", "10"),
        ("OUTPUT_URI", "s3://media-out/renditions"),
        ("INPUT_URI", "s3://media-in/uploads"),
    ]);
    let out = run(&["--from-file", file.to_str().unwrap()], &job_env, None);
    assert_exit(&out, 0);
    let got = s.requests().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], parse(&line("a", "a.mp4", "720p", Some("r-a"))));

    let typed = run(
        &["--from-file", file.to_str().unwrap(), "--quality", "480p"],
        &job_env,
        None,
    );
    assert_exit(&typed, 2);
    assert!(
        stderr(&typed).contains("--quality cannot be used with --from-file"),
        "{}",
        stderr(&typed)
    );
    assert!(s.requests().await.is_empty());
}

async fn a_file_without_requests_or_that_cannot_be_read_is_an_error(kind: Kind) {
    let s = Setup::start(kind, "file-empty").await;
    let file = s.write("empty.jsonl", "# nothing yet\n\n");
    let out = s.producer(&["--from-file", file.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("holds no valid request"), "{}", stderr(&out));
    let missing = s.tmp.join("missing.jsonl");
    let out = s.producer(&["--from-file", missing.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("reading"), "{}", stderr(&out));
}

test_support::on_both_emulators!(
    a_valid_file_sends_every_request_as_written,
    an_invalid_line_sends_nothing_and_is_named_with_its_number,
    skip_invalid_reports_the_bad_lines_and_sends_the_rest,
    requests_can_come_from_standard_input_such_as_a_dry_runs_output,
    the_jobs_environment_does_not_change_a_files_requests_but_a_typed_flag_is_refused,
    a_file_without_requests_or_that_cannot_be_read_is_an_error,
);
