use std::path::PathBuf;

use super::*;
use crate::package::boxes::{Fragment, Layout};

/// A track of `n` fragments of `seconds` each at 90 kHz, `bytes` each after a 700-byte init.
fn track(file: &str, n: u64, seconds: f64, bytes: u64) -> Track {
    let timescale = 90_000u32;
    let d = (seconds * f64::from(timescale)) as u64;
    let fragments = (0..n)
        .map(|i| Fragment {
            bytes: 700 + i * bytes..700 + (i + 1) * bytes,
            start: i * d,
            duration: d,
            samples: 60,
            presentation: (i * d) as i64,
        })
        .collect();
    Track {
        path: PathBuf::from(format!("/tmp/x/{file}")),
        layout: Layout {
            init: 0..700,
            index: None,
            timescale,
            fragments,
        },
        codecs: "avc1.64001f".into(),
        size: Some((1280, 720)),
        frame_rate: Some(29.97),
        audio: None,
        peak_bitrate: 3_000_000,
        average_bitrate: 2_500_000,
        duration: n as f64 * seconds,
    }
}

fn audio() -> Track {
    Track {
        codecs: "mp4a.40.2".into(),
        size: None,
        frame_rate: None,
        audio: Some((48_000, 2)),
        peak_bitrate: 130_000,
        average_bitrate: 128_000,
        ..track("audio.mp4", 3, 2.0, 32_000)
    }
}

fn set() -> StreamSet {
    let mut small = track("480p.mp4", 3, 2.0, 300_000);
    small.size = Some((854, 480));
    (small.peak_bitrate, small.average_bitrate) = (1_200_000, 1_000_000);
    StreamSet {
        media: "stream/v1/".into(),
        videos: vec![
            ("720p".into(), track("720p.mp4", 3, 2.0, 600_000)),
            ("480p".into(), small),
        ],
        audio: Some(audio()),
        subtitles: vec![SubtitleTrack {
            file: "subtitles-0.vtt".into(),
            language: "fra".into(),
            name: "Français \"forcé\"".into(),
        }],
        duration: 6.0,
    }
}

#[test]
fn a_media_playlist_addresses_the_init_and_every_fragment_by_byte_range() {
    let p = media_playlist(&track("720p.mp4", 3, 2.0, 1000));
    assert_eq!(
        p,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n\
         #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"720p.mp4\",BYTERANGE=\"700@0\"\n\
         #EXTINF:2.000000,\n#EXT-X-BYTERANGE:1000@700\n720p.mp4\n\
         #EXTINF:2.000000,\n#EXT-X-BYTERANGE:1000@1700\n720p.mp4\n\
         #EXTINF:2.000000,\n#EXT-X-BYTERANGE:1000@2700\n720p.mp4\n#EXT-X-ENDLIST\n"
    );
}

#[test]
fn the_target_duration_is_the_longest_fragment_rounded() {
    let mut t = track("720p.mp4", 2, 2.0, 10);
    t.layout.fragments[1].duration = 90_000 * 5 / 2 + 9_000; // 2.6 s
    assert!(media_playlist(&t).contains("#EXT-X-TARGETDURATION:3\n"));
}

#[test]
fn the_master_playlist_names_measured_figures_audio_and_subtitles() {
    let m = master_playlist(&set());
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(
        lines[0..3],
        ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    );
    assert!(
        lines[3].starts_with("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\""),
        "{m}"
    );
    assert!(lines[3].ends_with("CHANNELS=\"2\",URI=\"stream/v1/audio.m3u8\""), "{m}");
    assert_eq!(
        lines[4],
        "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"Français 'forcé'\",LANGUAGE=\"fra\",DEFAULT=NO,AUTOSELECT=YES,URI=\"stream/v1/subtitles-0.m3u8\""
    );
    assert_eq!(
        lines[5],
        "#EXT-X-STREAM-INF:BANDWIDTH=3130000,AVERAGE-BANDWIDTH=2628000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",FRAME-RATE=29.970,AUDIO=\"audio\",SUBTITLES=\"subs\""
    );
    assert_eq!(lines[6], "stream/v1/720p.m3u8");
    assert!(
        lines[7].contains("BANDWIDTH=1330000,AVERAGE-BANDWIDTH=1128000,RESOLUTION=854x480"),
        "{m}"
    );
    assert_eq!(lines[8], "stream/v1/480p.m3u8");
    assert_eq!(lines.len(), 9);
}

#[test]
fn without_audio_or_subtitles_the_master_names_neither() {
    let mut s = set();
    s.audio = None;
    s.subtitles.clear();
    let m = master_playlist(&s);
    assert!(
        !m.contains("EXT-X-MEDIA") && !m.contains("AUDIO=") && !m.contains("SUBTITLES="),
        "{m}"
    );
    assert!(
        m.contains("BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2500000,RESOLUTION=1280x720,CODECS=\"avc1.64001f\""),
        "{m}"
    );
}

#[test]
fn a_subtitle_playlist_is_the_whole_file_as_one_segment() {
    let sub = SubtitleTrack {
        file: "subtitles-0.vtt".into(),
        language: "eng".into(),
        name: "English".into(),
    };
    let p = subtitle_playlist(&sub, 61.2);
    assert!(p.contains("#EXT-X-TARGETDURATION:62\n"), "{p}");
    assert!(
        p.contains("#EXTINF:61.200000,\nsubtitles-0.vtt\n#EXT-X-ENDLIST\n"),
        "{p}"
    );
}

#[test]
fn the_mpd_lists_every_representation_with_its_byte_ranges_and_a_compact_timeline() {
    let m = mpd(&set());
    assert!(
        m.contains("type=\"static\" mediaPresentationDuration=\"PT6.000S\""),
        "{m}"
    );
    assert!(
        m.contains("profiles=\"urn:mpeg:dash:profile:isoff-main:2011\""),
        "without indexes: {m}"
    );
    assert!(
        m.contains("<Representation id=\"720p\" bandwidth=\"3000000\" width=\"1280\" height=\"720\" sar=\"1:1\" codecs=\"avc1.64001f\" frameRate=\"30000/1001\">"),
        "{m}"
    );
    assert!(m.contains("<BaseURL>stream/v1/720p.mp4</BaseURL>"), "{m}");
    assert!(m.contains("<Initialization range=\"0-699\"/>"), "{m}");
    assert!(
        m.contains("<S t=\"0\" d=\"180000\" r=\"2\"/>"),
        "three equal fragments are one S with r=2: {m}"
    );
    assert!(m.contains("<SegmentURL mediaRange=\"700-600699\"/>"), "{m}");
    assert!(m.contains("<SegmentURL mediaRange=\"1200700-1800699\"/>"), "{m}");
    assert!(m.contains("codecs=\"mp4a.40.2\" audioSamplingRate=\"48000\""), "{m}");
    assert!(m.contains("value=\"2\"/>"), "{m}");
    assert!(m.contains("lang=\"fra\""), "{m}");
    assert!(m.contains("<Label>Français &quot;forcé&quot;</Label>"), "{m}");
    assert!(m.contains("<BaseURL>stream/v1/subtitles-0.vtt</BaseURL>"), "{m}");
    assert!(m.trim_end().ends_with("</MPD>"));
}

#[test]
fn a_gap_or_a_different_duration_starts_a_new_timeline_run() {
    let mut t = track("720p.mp4", 3, 2.0, 10);
    t.layout.fragments[2].duration = 90_000;
    let list = segment_list(&t, "");
    assert!(
        list.contains("<S t=\"0\" d=\"180000\" r=\"1\"/>\n    <S t=\"360000\" d=\"90000\"/>"),
        "{list}"
    );
}

#[test]
fn frame_rates_are_integers_or_ntsc_fractions() {
    assert_eq!(frame_rate(25.0), "25");
    assert_eq!(frame_rate(29.97), "30000/1001");
    assert_eq!(frame_rate(23.976), "24000/1001");
    assert_eq!(frame_rate(59.94), "60000/1001");
    assert_eq!(frame_rate(12.5), "12.500");
}

#[test]
fn playlist_names_replace_the_extension() {
    assert_eq!(playlist_name("720p.mp4"), "720p.m3u8");
    assert_eq!(playlist_name("subtitles-0.vtt"), "subtitles-0.m3u8");
    assert_eq!(playlist_name("audio"), "audio.m3u8");
}

#[test]
fn with_segment_indexes_the_mpd_is_on_demand_and_names_each_index() {
    let mut s = set();
    for t in s.videos.iter_mut().map(|(_, t)| t).chain(s.audio.iter_mut()) {
        t.layout.init = 0..640;
        t.layout.index = Some(640..700);
    }
    let m = mpd(&s);
    assert!(
        m.contains("profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\""),
        "{m}"
    );
    assert!(
        m.contains("<SegmentBase timescale=\"90000\" indexRange=\"640-699\" indexRangeExact=\"true\">\n          <Initialization range=\"0-639\"/>\n        </SegmentBase>"),
        "{m}"
    );
    assert!(!m.contains("SegmentList"), "{m}");
    // One track without an index: the whole MPD is main profile, that track by SegmentList.
    s.audio.as_mut().unwrap().layout.index = None;
    let m = mpd(&s);
    assert!(
        m.contains("isoff-main:2011") && m.contains("<SegmentList") && m.contains("<SegmentBase"),
        "{m}"
    );
}
