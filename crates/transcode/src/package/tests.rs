use super::*;

#[test]
fn content_types_follow_the_extension() {
    assert_eq!(content_type("master.m3u8"), "application/vnd.apple.mpegurl");
    assert_eq!(content_type("manifest.mpd"), "application/dash+xml");
    assert_eq!(content_type("stream/v/720p.mp4"), "video/mp4");
    assert_eq!(content_type("stream/v/audio.mp4"), "audio/mp4");
    assert_eq!(content_type("thumbnails.vtt"), "text/vtt");
    assert_eq!(content_type("poster.jpg"), "image/jpeg");
    assert_eq!(content_type("notes"), "application/octet-stream");
}
