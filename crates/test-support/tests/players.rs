//! The players harness (`test_support::players`) on streams the `ffmpeg` tool makes: a 3-level
//! ladder of 8 s with a separate audio track, as HLS (fMP4 segments, or one file per level in byte
//! ranges) and DASH (SegmentTemplate, or a SegmentList of byte ranges); played by hls.js and dash.js
//! in headless Chromium, and read by ffprobe over HTTP. And the harness failing: a malformed
//! manifest, a missing segment, a missing Chromium.
//!
//! Needs node, Chromium and the npm packages (`scripts/install-players.sh`) and ffmpeg; a missing
//! one fails the test naming it. Run: `cargo test -p test-support --test players`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use test_support::players::{self, Entry, Options, PlayerError, Report, Server};
use test_support::{TempDir, streams};

/// The ladder's sizes, smallest first.
const SIZES: [(u32, u32); 3] = [(320, 180), (480, 270), (640, 360)];
const SECONDS: u32 = 8;

/// Addressing of the media.
#[derive(Clone, Copy, PartialEq)]
enum Media {
    /// A file per segment.
    Segments,
    /// One file per track, segments addressed by byte range.
    ByteRanges,
}

/// ffmpeg's input and encoding arguments for the ladder: 2 s keyframe grid, AAC audio apart.
fn ladder_args() -> Vec<String> {
    let mut a: Vec<String> = ["-v", "error", "-y", "-f", "lavfi", "-i"].map(String::from).to_vec();
    a.push(format!("testsrc2=size=640x360:rate=30:duration={SECONDS}"));
    a.extend(["-f", "lavfi", "-i"].map(String::from));
    a.push(format!("sine=frequency=440:sample_rate=48000:duration={SECONDS}"));
    a.extend(
        [
            "-filter_complex",
            "[0:v]split=3[a][b][c];[b]scale=480:270[b2];[c]scale=320:180[c2]",
            "-map",
            "[a]",
            "-map",
            "[b2]",
            "-map",
            "[c2]",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v:0",
            "800k",
            "-b:v:1",
            "400k",
            "-b:v:2",
            "200k",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
        ]
        .map(String::from),
    );
    a
}

fn ffmpeg(dir: &Path, args: &[String]) {
    let out = Command::new("ffmpeg")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): install Debian's ffmpeg package (scripts/test.sh does)"));
    assert!(
        out.status.success(),
        "ffmpeg could not make the fixture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HLS ladder in `dir`: master.m3u8, v0..v2.m3u8 (video) and v3.m3u8 (audio).
fn make_hls(dir: &Path, media: Media) {
    let mut a = ladder_args();
    a.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_type",
            "fmp4",
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            "v:0,agroup:aud v:1,agroup:aud v:2,agroup:aud a:0,agroup:aud",
            "-hls_fmp4_init_filename",
            "init.mp4",
        ]
        .map(String::from),
    );
    match media {
        Media::Segments => a.extend(["-hls_segment_filename", "v%v_%03d.m4s"].map(String::from)),
        Media::ByteRanges => {
            a.extend(["-hls_flags", "single_file", "-hls_segment_filename", "v%v.m4s"].map(String::from))
        }
    }
    a.push("v%v.m3u8".into());
    ffmpeg(dir, &a);
    let master = std::fs::read_to_string(dir.join("master.m3u8")).expect("ffmpeg wrote master.m3u8");
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    if media == Media::ByteRanges {
        let v0 = std::fs::read_to_string(dir.join("v0.m3u8")).expect("ffmpeg wrote v0.m3u8");
        assert!(v0.contains("#EXT-X-BYTERANGE"), "single_file gives byte ranges:\n{v0}");
    }
}

/// A DASH ladder in `dir`: manifest.mpd, one video and one audio adaptation set.
fn make_dash(dir: &Path, media: Media) {
    let mut a = ladder_args();
    a.extend(
        [
            "-f",
            "dash",
            "-seg_duration",
            "2",
            "-use_timeline",
            "0",
            "-adaptation_sets",
            "id=0,streams=v id=1,streams=a",
        ]
        .map(String::from),
    );
    if media == Media::ByteRanges {
        a.extend(["-single_file", "1"].map(String::from));
    }
    a.push("manifest.mpd".into());
    ffmpeg(dir, &a);
    let mpd = std::fs::read_to_string(dir.join("manifest.mpd")).expect("ffmpeg wrote manifest.mpd");
    if media == Media::ByteRanges {
        // ffmpeg 5.1 writes a SegmentList of `mediaRange`s into one file per representation.
        assert!(mpd.contains("mediaRange="), "single_file gives byte ranges:\n{mpd}");
    } else {
        assert!(mpd.contains("SegmentTemplate"), "{mpd}");
    }
}

/// A WebVTT cue file for the whole clip.
const VTT: &str = "WEBVTT\n\n00:00:00.500 --> 00:00:03.000\nHello\n\n00:00:04.000 --> 00:00:07.000\nWorld\n";

/// Adds an English WebVTT subtitle rendition to an HLS ladder (ffmpeg 5.1 cannot write one next
/// to fMP4 segments): `subs_en.m3u8` with one segment, `subs_en.vtt`; and `AVERAGE-BANDWIDTH`
/// and `FRAME-RATE` to each variant.
fn add_hls_subtitles(dir: &Path) {
    std::fs::write(dir.join("subs_en.vtt"), VTT).unwrap();
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{SECONDS}\n#EXT-X-PLAYLIST-TYPE:VOD\n\
         #EXTINF:{SECONDS}.0,\nsubs_en.vtt\n#EXT-X-ENDLIST\n"
    );
    std::fs::write(dir.join("subs_en.m3u8"), playlist).unwrap();
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    let master = master
        .replacen(
            "#EXT-X-STREAM-INF",
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\",\
             DEFAULT=NO,AUTOSELECT=YES,URI=\"subs_en.m3u8\"\n#EXT-X-STREAM-INF",
            1,
        )
        .replace("AUDIO=\"group_aud\"", "AUDIO=\"group_aud\",SUBTITLES=\"subs\"")
        // What ffmpeg 5.1 leaves out and the packager writes: read back in the report.
        .replace(
            ",RESOLUTION=",
            ",AVERAGE-BANDWIDTH=123000,FRAME-RATE=30.000,RESOLUTION=",
        );
    std::fs::write(dir.join("master.m3u8"), master).unwrap();
}

/// Adds an English WebVTT subtitle adaptation set (one side file) to a DASH ladder.
fn add_dash_subtitles(dir: &Path) {
    std::fs::write(dir.join("subs_en.vtt"), VTT).unwrap();
    let mpd = std::fs::read_to_string(dir.join("manifest.mpd")).unwrap();
    let set = "<AdaptationSet id=\"2\" contentType=\"text\" mimeType=\"text/vtt\" lang=\"en\">\
               <Label>English</Label><Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"subtitle\"/>\
               <Representation id=\"subs_en\" bandwidth=\"256\"><BaseURL>subs_en.vtt</BaseURL></Representation>\
               </AdaptationSet>\n</Period>";
    std::fs::write(dir.join("manifest.mpd"), mpd.replace("</Period>", set)).unwrap();
}

fn run(dir: &Path, entry: Entry) -> Report {
    run_with(dir, entry, &Options::default())
}

fn run_with(dir: &Path, entry: Entry, options: &Options) -> Report {
    let report = players::serve_and_play_with(dir, entry, options).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", report.summary());
    report
}

/// What every good play must show on the ladder.
fn assert_ladder_played(r: &Report) {
    r.assert_played();
    assert_eq!(r.level_sizes(), SIZES, "{}", r.summary());
    assert!(
        r.levels
            .iter()
            .all(|l| l.bitrate > 100_000 && l.codecs.contains("avc1")),
        "{}",
        r.summary()
    );
    assert_eq!(r.switches.len(), 3, "{}", r.summary());
    assert!(r.switches.iter().all(|s| s.reached), "{}", r.summary());
    for (w, h) in SIZES {
        assert!(
            r.sizes_seen.contains(&(w, h)),
            "frames of {w}x{h} shown: {}",
            r.summary()
        );
    }
    let d = r.duration.expect("a duration");
    assert!((d - f64::from(SECONDS)).abs() < 0.5, "duration {d}");
    assert!(r.current_time > d - 0.5, "{}", r.summary());
    assert!(!r.audio_tracks.is_empty(), "the audio track is found: {}", r.summary());
    assert!(
        r.blocked_requests.is_empty() && r.http_errors.is_empty(),
        "{}",
        r.summary()
    );
    let media = r
        .served
        .iter()
        .filter(|s| s.path.ends_with(".m4s") || s.path.ends_with(".mp4"));
    assert!(
        media.count() >= 12,
        "video and audio segments were fetched: {}",
        r.summary()
    );
}

/// The report fails and names the missing file.
fn assert_fails_on_missing(r: &Report, missing: &str) {
    let p = r.problems();
    assert!(
        p.iter().any(|p| p.contains("404") && p.contains(missing)),
        "the missing {missing} is reported: {p:?}\n{}",
        r.summary()
    );
    assert!(r.check().is_err());
}

#[test]
fn an_hls_ladder_in_segment_files_plays_every_level_to_the_end() {
    let dir = TempDir::new("players-hls");
    make_hls(&dir, Media::Segments);
    add_hls_subtitles(&dir);
    let r = run(&dir, Entry::Hls);
    assert_ladder_played(&r);
    assert_eq!(r.player, "hls");
    assert!(
        r.levels
            .iter()
            .all(|l| l.frame_rate == Some(30.0) && l.average_bitrate == Some(123_000)),
        "{}",
        r.summary()
    );
    assert_eq!(r.subtitle_tracks.len(), 1, "{}", r.summary());
    assert_eq!(
        (r.subtitle_tracks[0].lang.as_str(), r.subtitle_tracks[0].label.as_str()),
        ("en", "English")
    );
    assert_eq!(r.subtitle_cues, 2, "{}", r.summary());
    assert!(
        r.served.iter().any(|s| s.path == "/subs_en.vtt" && s.status == 200),
        "{:?}",
        r.served
    );
    assert!(
        r.served.iter().all(|s| s.range.is_none() || s.status == 206),
        "{:?}",
        r.served
    );
}

#[test]
fn an_hls_ladder_in_byte_ranges_plays_every_level_to_the_end() {
    let dir = TempDir::new("players-hls-ranges");
    make_hls(&dir, Media::ByteRanges);
    let r = run(&dir, Entry::Hls);
    assert_ladder_played(&r);
    assert!(
        r.served.iter().any(|s| s.status == 206 && s.path == "/v0.m4s"),
        "segments came as byte ranges: {:?}",
        r.served
    );
}

#[test]
fn a_dash_ladder_in_segment_files_plays_every_representation_to_the_end() {
    let dir = TempDir::new("players-dash");
    make_dash(&dir, Media::Segments);
    add_dash_subtitles(&dir);
    let r = run(&dir, Entry::Dash);
    assert_ladder_played(&r);
    assert_eq!(r.player, "dash");
    assert_eq!(r.subtitle_tracks.len(), 1, "{}", r.summary());
    assert_eq!(
        (r.subtitle_tracks[0].lang.as_str(), r.subtitle_tracks[0].label.as_str()),
        ("en", "English")
    );
    assert_eq!(r.subtitle_cues, 2, "{}", r.summary());
    assert!(
        r.served.iter().any(|s| s.path == "/subs_en.vtt" && s.status == 200),
        "{:?}",
        r.served
    );
}

#[test]
fn a_dash_ladder_in_byte_ranges_plays_every_representation_to_the_end() {
    let dir = TempDir::new("players-dash-ranges");
    make_dash(&dir, Media::ByteRanges);
    let r = run(&dir, Entry::Dash);
    assert_ladder_played(&r);
    assert!(
        r.served.iter().any(|s| s.status == 206),
        "segments came as byte ranges: {:?}",
        r.served
    );
}

#[test]
fn a_malformed_master_playlist_fails_the_report() {
    let dir = TempDir::new("players-hls-malformed");
    make_hls(&dir, Media::Segments);
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    std::fs::write(dir.join("master.m3u8"), master.replace("#EXTM3U", "#EXTM3X")).unwrap();
    let r = run(&dir, Entry::Hls);
    assert!(!r.started, "{}", r.summary());
    assert!(
        r.errors.iter().any(|e| e.fatal && e.details == "manifestParsingError"),
        "{}",
        r.summary()
    );
    assert!(r.check().is_err());
}

#[test]
fn a_malformed_mpd_fails_the_report() {
    let dir = TempDir::new("players-dash-malformed");
    make_dash(&dir, Media::Segments);
    let mpd = std::fs::read_to_string(dir.join("manifest.mpd")).unwrap();
    // Cut in the middle of the first Representation: not XML any more.
    let cut = mpd.find("<Representation").unwrap() + 20;
    std::fs::write(dir.join("manifest.mpd"), &mpd[..cut]).unwrap();
    let r = run(&dir, Entry::Dash);
    assert!(!r.started, "{}", r.summary());
    assert!(r.errors.iter().any(|e| e.fatal), "{}", r.summary());
    assert!(r.check().is_err());
}

#[test]
fn a_missing_hls_segment_fails_the_report() {
    let dir = TempDir::new("players-hls-missing");
    make_hls(&dir, Media::Segments);
    // The largest level's last segment: playing to the end must fetch it.
    std::fs::remove_file(dir.join("v0_003.m4s")).unwrap();
    let r = run(&dir, Entry::Hls);
    assert_fails_on_missing(&r, "/v0_003.m4s");
}

#[test]
fn a_missing_dash_segment_fails_the_report() {
    let dir = TempDir::new("players-dash-missing");
    make_dash(&dir, Media::Segments);
    std::fs::remove_file(dir.join("chunk-stream0-00004.m4s")).unwrap();
    let r = run(&dir, Entry::Dash);
    assert_fails_on_missing(&r, "/chunk-stream0-00004.m4s");
}

#[test]
fn a_missing_chromium_is_an_error_naming_it_and_the_install_script() {
    let dir = TempDir::new("players-no-chromium");
    std::fs::write(dir.join("master.m3u8"), "#EXTM3U\n").unwrap();
    let options = Options {
        chromium: Some("/nonexistent/chromium".into()),
        ..Options::default()
    };
    let err = players::serve_and_play_with(&dir, Entry::Hls, &options).expect_err("no Chromium, no report");
    assert!(matches!(err, PlayerError::Chromium(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/chromium") && msg.contains("scripts/install-players.sh"),
        "{msg}"
    );
}

#[test]
fn ffprobe_reads_the_master_playlist_and_the_mpd_over_http() {
    let dir = TempDir::new("players-ffprobe");
    make_hls(&dir, Media::Segments);
    make_dash(&dir, Media::Segments);
    for entry in [Entry::Hls, Entry::Dash] {
        let probe = players::ffprobe_served(&dir, entry).unwrap_or_else(|e| panic!("{e}"));
        let mut sizes: Vec<(u32, u32)> = streams(&probe, "video")
            .into_iter()
            .map(|s| {
                (
                    s["width"].as_u64().unwrap() as u32,
                    s["height"].as_u64().unwrap() as u32,
                )
            })
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        assert_eq!(sizes, SIZES, "{entry:?}: {probe:#}");
        assert!(
            streams(&probe, "audio").iter().any(|s| s["codec_name"] == "aac"),
            "{entry:?}: {probe:#}"
        );
    }
}

#[test]
fn ffprobe_of_a_stream_missing_its_init_segment_fails() {
    let dir = TempDir::new("players-ffprobe-missing");
    make_dash(&dir, Media::Segments);
    std::fs::remove_file(dir.join("init-stream0.m4s")).unwrap();
    let err = players::ffprobe_served(&dir, Entry::Dash).expect_err("a missing init segment fails ffprobe");
    assert!(err.to_string().contains("init-stream0.m4s"), "{err}");
}

/// One raw HTTP/1.1 exchange with the server; returns the head and the body.
fn exchange(server: &Server, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{request}Host: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    (
        String::from_utf8_lossy(&raw[..split]).into_owned(),
        raw[split..].to_vec(),
    )
}

#[test]
fn the_server_answers_ranges_cors_and_content_types_as_s3_does() {
    let dir = TempDir::new("players-server");
    std::fs::write(dir.join("master.m3u8"), "#EXTM3U\n").unwrap();
    std::fs::create_dir(dir.join("v")).unwrap();
    std::fs::write(dir.join("v/seg.m4s"), b"0123456789").unwrap();
    let server = Server::serve(&dir).unwrap();

    let (head, body) = exchange(&server, "GET /master.m3u8 HTTP/1.1\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: application/vnd.apple.mpegurl"), "{head}");
    assert!(head.contains("Access-Control-Allow-Origin: *"), "{head}");
    assert_eq!(body, b"#EXTM3U\n");

    let (head, body) = exchange(&server, "GET /v/seg.m4s HTTP/1.1\r\nRange: bytes=2-5\r\n");
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(
        head.contains("Content-Range: bytes 2-5/10") && head.contains("Content-Type: video/mp4"),
        "{head}"
    );
    assert_eq!(body, b"2345");

    let (head, _) = exchange(&server, "GET /v/seg.m4s HTTP/1.1\r\nRange: bytes=10-\r\n");
    assert!(
        head.starts_with("HTTP/1.1 416") && head.contains("Content-Range: bytes */10"),
        "{head}"
    );

    let (head, body) = exchange(&server, "HEAD /v/seg.m4s HTTP/1.1\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("Content-Length: 10"),
        "{head}"
    );
    assert!(body.is_empty());

    let (head, _) = exchange(
        &server,
        "OPTIONS /v/seg.m4s HTTP/1.1\r\nOrigin: http://127.0.0.1:1\r\nAccess-Control-Request-Headers: range\r\n",
    );
    assert!(
        head.starts_with("HTTP/1.1 204") && head.contains("Access-Control-Allow-Headers: Range"),
        "{head}"
    );

    for missing in ["/v/none.m4s", "/v", "/../master.m3u8"] {
        let (head, _) = exchange(&server, &format!("GET {missing} HTTP/1.1\r\n"));
        assert!(head.starts_with("HTTP/1.1 404"), "{missing}: {head}");
    }
    let served = server.served();
    assert_eq!(served.len(), 8, "{served:?}");
    assert_eq!(served[1].range.as_deref(), Some("bytes=2-5"));
    assert_eq!((served[1].status, served[1].bytes), (206, 4));
}
