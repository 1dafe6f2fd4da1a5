//! Verify before publishing: every rendition is probed and compared with what was asked and with
//! the decoded source, so a short or broken output is never stored as a success.

use transcode::chunk::StitchReport;
use transcode::{RenditionOutput, TranscodeReport};

/// The largest gap allowed between a rendition's duration and the decoded source's: two frames,
/// or 0.1 s when that is more.
fn duration_tolerance(fps: f64) -> f64 {
    if fps > 0.0 { (2.0 / fps).max(0.1) } else { 0.1 }
}

/// Checks one rendition file against the transcode that made it.
///
/// # Errors
///
/// A description of the first mismatch: unreadable file, wrong codec, size, pixel format,
/// rotation flag left, duration off, audio missing or unexpected.
pub fn check_rendition(out: &RenditionOutput, report: &TranscodeReport) -> anyhow::Result<()> {
    let path = out.path.display();
    let info = transcode::probe(&out.path).map_err(|e| anyhow::anyhow!("the rendition {path} cannot be read: {e}"))?;
    let Some(v) = info.video else {
        anyhow::bail!("the rendition {path} has no video stream");
    };
    let fail = |what: String| Err(anyhow::anyhow!("the rendition {path} {what}"));
    if v.codec != "h264" {
        return fail(format!("is {} instead of H.264", v.codec));
    }
    if (v.width, v.height) != (out.width, out.height) {
        return fail(format!(
            "is {}x{} instead of {}x{}",
            v.width, v.height, out.width, out.height
        ));
    }
    if v.pixel_format.as_deref() != Some("yuv420p") {
        return fail(format!("has pixel format {:?} instead of yuv420p", v.pixel_format));
    }
    if v.rotation != 0 {
        return fail(format!("still carries a rotation of {}°", v.rotation));
    }
    let duration = v.duration_seconds.or(info.duration_seconds).unwrap_or(0.0);
    let tolerance = duration_tolerance(report.source.video.as_ref().map_or(0.0, |s| s.frame_rate));
    if (duration - report.decoded_seconds).abs() > tolerance {
        return fail(format!(
            "lasts {duration:.3} s but the source decoded to {:.3} s",
            report.decoded_seconds
        ));
    }
    if out.frames < report.frames_decoded {
        return fail(format!(
            "has {} frames for {} decoded",
            out.frames, report.frames_decoded
        ));
    }
    match (&info.audio, report.has_audio) {
        (Some(a), true) if a.codec != "aac" => fail(format!("has {} audio instead of AAC", a.codec)),
        (None, true) => fail("has lost its audio".into()),
        (Some(_), false) => fail("has audio the source does not have".into()),
        _ => Ok(()),
    }
}

/// Checks one stitched rendition: H.264 4:2:0 with every chunk's frames, and AAC audio exactly
/// when the source has audio (`source_has_audio`; the stitch itself checks the frames and the
/// durations against the chunks).
///
/// # Errors
///
/// A description of the first mismatch.
pub fn check_stitched(r: &StitchReport, source_has_audio: bool) -> anyhow::Result<()> {
    let path = r.output.display();
    let info = transcode::probe(&r.output).map_err(|e| anyhow::anyhow!("the rendition {path} cannot be read: {e}"))?;
    let fail = |what: String| Err(anyhow::anyhow!("the stitched rendition {path} {what}"));
    let Some(v) = info.video else {
        return fail("has no video stream".into());
    };
    if v.codec != "h264" || v.pixel_format.as_deref() != Some("yuv420p") {
        return fail(format!("is {} {:?} instead of H.264 yuv420p", v.codec, v.pixel_format));
    }
    if r.frames == 0 {
        return fail("has no frame".into());
    }
    match (&info.audio, source_has_audio) {
        (Some(a), true) if a.codec != "aac" => fail(format!("has {} audio instead of AAC", a.codec)),
        (None, true) => fail("has lost its audio".into()),
        (Some(_), false) => fail("has audio the source does not have".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_tolerance_is_two_frames_or_a_tenth_of_a_second() {
        assert!((duration_tolerance(30.0) - 0.1).abs() < 1e-9);
        assert!((duration_tolerance(10.0) - 0.2).abs() < 1e-9);
        assert!((duration_tolerance(0.0) - 0.1).abs() < 1e-9);
    }
}
