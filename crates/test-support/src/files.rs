//! Files in tests: temporary directories, generated files, the sample media set, and what the
//! `ffprobe` tool says about a file (a check of the output, never the product's own work).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The directory of the sample media: `$MEDIA_DIR`, or `../shared/media` beside the checkout.
pub fn media_dir() -> PathBuf {
    std::env::var_os("MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/media"))
}

/// The path of a sample file, or `None` (after one visible line) when the media set is absent.
/// Under `CI=true` an absent media set fails the test instead.
pub fn media(name: &str) -> Option<PathBuf> {
    let path = media_dir().join(name);
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "SKIPPED: sample media {} not found (set MEDIA_DIR to the media set)",
        path.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}; under CI=true the media set is required");
    }
    eprintln!("{msg}");
    None
}

/// A fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates one under the system temp directory, named after `tag`.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a temp dir");
        Self(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file `name` of `bytes` pseudo-random (incompressible, never repeating) bytes, as
    /// a stand-in for a video where only the bytes matter (uploads, part boundaries).
    pub fn noise_file(&self, name: &str, bytes: usize) -> PathBuf {
        let path = self.join(name);
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let data: Vec<u8> = (0..bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&path, data).expect("writing a test file");
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `ffprobe -show_streams -show_format` of a file, as JSON.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffprobe ({e}): install Debian's ffmpeg package (scripts/test.sh does)"));
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    serde_json::from_slice(&out.stdout).expect("ffprobe prints JSON")
}

/// The streams of one type (`video`, `audio`) in an ffprobe answer.
pub fn streams<'a>(probe: &'a serde_json::Value, codec_type: &str) -> Vec<&'a serde_json::Value> {
    probe["streams"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["codec_type"] == codec_type).collect())
        .unwrap_or_default()
}

/// A number ffprobe prints as a string.
pub fn num(v: &serde_json::Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(f64::NAN)
}

/// Makes a test clip with the `ffmpeg` tool (a test input, not the product's encoding): `seconds`
/// of 1080p30 test pattern with a tone.
pub fn make_clip(path: &Path, seconds: u32) {
    lavfi_clip(
        path,
        &format!("testsrc2=size=1920x1080:rate=30:duration={seconds}"),
        seconds,
        &["-preset", "ultrafast"],
    );
}

/// Makes a test clip with the `ffmpeg` tool: `seconds` of `size` (`WxH`) 30 fps test pattern
/// with a tone.
pub fn make_clip_sized(path: &Path, size: &str, seconds: u32) {
    lavfi_clip(
        path,
        &format!("testsrc2=size={size}:rate=30:duration={seconds}"),
        seconds,
        &["-preset", "ultrafast"],
    );
}

/// Makes a clip that is expensive to compress (a test pattern under moving noise, 1080p at 10 fps,
/// with a tone), so that a 1080p rendition of it reaches the ladder's bitrate cap: `seconds` of it
/// give a rendition of about `seconds * 7 Mbit/s` (24 s: over 16 MiB, a multipart upload).
pub fn make_noisy_clip(path: &Path, seconds: u32) {
    lavfi_clip(
        path,
        &format!("testsrc2=size=1920x1080:rate=10:duration={seconds},noise=alls=60:allf=t+u"),
        seconds,
        &["-preset", "ultrafast", "-b:v", "8M"],
    );
}

/// `video` (a lavfi source and filters) with a 440 Hz tone, H.264 (with `x264` options) and AAC.
fn lavfi_clip(path: &Path, video: &str, seconds: u32, x264: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:sample_rate=48000:duration={seconds}"))
        .args(["-c:v", "libx264"])
        .args(x264)
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): install Debian's ffmpeg package (scripts/test.sh does)"));
    assert!(status.success(), "ffmpeg could not make {}", path.display());
}
