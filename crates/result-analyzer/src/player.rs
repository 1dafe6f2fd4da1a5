//! The player page at `GET /player?request_id=...`: a request's stored stream (its HLS master
//! playlist, else its DASH MPD, else its largest MP4 file) played in the browser with the same
//! hls.js and dash.js releases the tests play streams with, served from this binary
//! (`GET /player/hls.min.js`, `GET /player/dash.all.min.js`): nothing comes from the internet.
//!
//! Browsers cannot read `s3://` URIs: `PLAYER_URL_BASE` names the HTTP(S) address the output
//! bucket is served from (CloudFront, or the bucket's own endpoint), and `s3://bucket/key` is
//! played from `{PLAYER_URL_BASE}/key`. The bucket (or CDN) must allow this page's origin (CORS).

/// The page; `__TITLE__`, `__STREAM__` and `__PLAYER__` are filled in per request.
const PAGE: &str = include_str!("player.html");
/// hls.js 1.7.4, as `tests/players` pins it.
pub(crate) const HLS_JS: &[u8] = include_bytes!("../vendor/hls.min.js");
/// dash.js 5.2.1, as `tests/players` pins it.
pub(crate) const DASH_JS: &[u8] = include_bytes!("../vendor/dash.all.min.js");

/// How an output is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An HLS master playlist, with hls.js.
    Hls,
    /// A DASH MPD, with dash.js.
    Dash,
    /// An MP4 file, by the browser itself.
    Mp4,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hls => "hls",
            Kind::Dash => "dash",
            Kind::Mp4 => "mp4",
        }
    }

    /// The script the page loads (`/player/{script}`).
    fn script(self) -> &'static str {
        match self {
            Kind::Hls | Kind::Mp4 => "hls.min.js",
            Kind::Dash => "dash.all.min.js",
        }
    }
}

/// What to play of a request's outputs: its HLS master playlist, else its MPD, else its MP4 file
/// of the largest quality (the outputs name `{quality}.mp4`).
pub(crate) fn pick(outputs: &[String]) -> Option<(&str, Kind)> {
    let by_suffix = |suffix: &str| outputs.iter().find(|o| o.ends_with(suffix)).map(String::as_str);
    if let Some(o) = by_suffix(".m3u8") {
        return Some((o, Kind::Hls));
    }
    if let Some(o) = by_suffix(".mpd") {
        return Some((o, Kind::Dash));
    }
    let height = |o: &str| -> u32 {
        let name = o.rsplit('/').next().unwrap_or(o);
        name.trim_end_matches(".mp4").trim_end_matches('p').parse().unwrap_or(0)
    };
    outputs
        .iter()
        .filter(|o| o.ends_with(".mp4"))
        .max_by_key(|o| height(o))
        .map(|o| (o.as_str(), Kind::Mp4))
}

/// The HTTP(S) address of `s3://bucket/key` under `base`: `{base}/{key}`.
pub(crate) fn public_url(base: &str, uri: &str) -> Option<String> {
    let (_, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    Some(format!("{}/{key}", base.trim_end_matches('/')))
}

/// The page for `url`, played as `kind`, titled `title`.
pub(crate) fn page(title: &str, url: &str, kind: Kind) -> String {
    let stream = serde_json::json!({ "url": url, "kind": kind.name() }).to_string();
    // Inside a <script> element, "</" must not appear: JSON allows "<\/".
    let stream = stream.replace("</", "<\\/");
    let title = title.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    PAGE.replace("__TITLE__", &title)
        .replace("__STREAM__", &stream)
        .replace("__PLAYER__", kind.script())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_preferred_to_files_hls_to_dash_and_the_largest_file_to_others() {
        let outs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let both = outs(&[
            "s3://o/r/v/720p.mp4",
            "s3://o/r/v/manifest.mpd",
            "s3://o/r/v/master.m3u8",
        ]);
        assert_eq!(pick(&both), Some(("s3://o/r/v/master.m3u8", Kind::Hls)));
        let dash = outs(&["s3://o/r/v/manifest.mpd"]);
        assert_eq!(pick(&dash), Some(("s3://o/r/v/manifest.mpd", Kind::Dash)));
        let files = outs(&["s3://o/r/v/480p.mp4", "s3://o/r/v/1080p.mp4", "s3://o/r/v/720p.mp4"]);
        assert_eq!(pick(&files), Some(("s3://o/r/v/1080p.mp4", Kind::Mp4)));
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&outs(&["s3://o/r/v/poster.jpg"])), None);
    }

    #[test]
    fn s3_uris_map_under_the_base_and_others_do_not() {
        let base = "https://d111.cloudfront.net/";
        assert_eq!(
            public_url(base, "s3://media-out/renditions/v/master.m3u8").as_deref(),
            Some("https://d111.cloudfront.net/renditions/v/master.m3u8")
        );
        assert_eq!(public_url(base, "https://x/y"), None);
        assert_eq!(public_url(base, "s3://bucket-only"), None);
    }

    #[test]
    fn the_page_carries_the_stream_as_inert_json_and_loads_the_right_player() {
        let p = page("<clip>", "https://cdn/x</script><b>.m3u8", Kind::Hls);
        assert!(p.contains("<title>Player · &lt;clip&gt;</title>"), "{p}");
        assert!(
            p.contains(r#"{"kind":"hls","url":"https://cdn/x<\/script><b>.m3u8"}"#),
            "{p}"
        );
        assert!(!p.contains("x</script>"), "the URL cannot end the script element");
        assert!(p.contains(r#"<script src="/player/hls.min.js">"#));
        assert!(page("t", "u", Kind::Dash).contains(r#"<script src="/player/dash.all.min.js">"#));
        assert!(!PAGE.contains("<script src=\"http"), "no script from elsewhere");
    }

    #[test]
    fn the_vendored_players_are_the_pinned_releases() {
        let lock = include_str!("../../../tests/players/package-lock.json");
        let lock: serde_json::Value = serde_json::from_str(lock).unwrap();
        for (package, file) in [("hls.js", HLS_JS), ("dashjs", DASH_JS)] {
            let version = lock["packages"][format!("node_modules/{package}")]["version"]
                .as_str()
                .unwrap();
            let text = String::from_utf8_lossy(file);
            assert!(
                text.contains(&format!("\"{version}\"")),
                "{package} {version} is not the vendored file"
            );
        }
    }
}
