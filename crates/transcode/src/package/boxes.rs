//! Reading the layout of a fragmented MP4 file from its boxes: where the initialization part
//! (`ftyp` + `moov`) ends, and where each fragment (`moof` + `mdat`) starts, ends, begins in time
//! and lasts. The manifests address the media by these byte ranges.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

/// One fragment of a track.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// Its bytes in the file (`moof` and `mdat`, with any box between them).
    pub bytes: Range<u64>,
    /// Its first sample's decode time, in the track's timescale.
    pub start: u64,
    /// The sum of its samples' durations, in the track's timescale.
    pub duration: u64,
    /// Its earliest presentation time (decode time plus composition offset), in the track's
    /// timescale: where a player shows it, and where renditions must line up.
    pub presentation: i64,
    /// How many samples it holds.
    pub samples: u64,
}

/// The layout of a fragmented MP4 file with one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The initialization part: `ftyp` and `moov`.
    pub init: Range<u64>,
    /// The segment index (`sidx`) between the initialization part and the first fragment, if
    /// the file has one.
    pub index: Option<Range<u64>>,
    /// The track's timescale (ticks per second), from `mdhd`.
    pub timescale: u32,
    /// The fragments, in file order.
    pub fragments: Vec<Fragment>,
}

/// Why a file's boxes cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the fragmented MP4 cannot be read: {0}")]
pub struct LayoutError(pub String);

fn bad(m: impl Into<String>) -> LayoutError {
    LayoutError(m.into())
}

/// One box: its type and where its content lies within `data` (or the file).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoxAt {
    /// Its type (`moov`, `mdat`, ...).
    pub(crate) kind: [u8; 4],
    /// Where its header starts.
    pub(crate) start: usize,
    /// Where its content starts, after the header.
    pub(crate) content: usize,
    /// Where it ends.
    pub(crate) end: usize,
}

/// The boxes directly inside `data[range]`.
fn boxes(data: &[u8], range: Range<usize>) -> Result<Vec<BoxAt>, LayoutError> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        if range.end - at < 8 {
            return Err(bad(format!("a box header is cut at byte {at}")));
        }
        let size32 = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().expect("4 bytes");
        let (size, header) = match size32 {
            0 => ((range.end - at) as u64, 8),
            1 => {
                if range.end - at < 16 {
                    return Err(bad(format!("a large box header is cut at byte {at}")));
                }
                (
                    u64::from_be_bytes(data[at + 8..at + 16].try_into().expect("8 bytes")),
                    16,
                )
            }
            n => (u64::from(n), 8),
        };
        let end = at
            .checked_add(usize::try_from(size).map_err(|_| bad("a box is too large"))?)
            .filter(|e| *e <= range.end && size >= header as u64)
            .ok_or_else(|| bad(format!("the box {} at byte {at} runs past its parent", show(kind))))?;
        out.push(BoxAt {
            kind,
            start: at,
            content: at + header,
            end,
        });
        at = end;
    }
    Ok(out)
}

fn show(kind: [u8; 4]) -> String {
    String::from_utf8_lossy(&kind).into_owned()
}

fn child(data: &[u8], parent: BoxAt, kind: &[u8; 4]) -> Result<Option<BoxAt>, LayoutError> {
    Ok(boxes(data, parent.content..parent.end)?
        .into_iter()
        .find(|b| &b.kind == kind))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, LayoutError> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| bad(format!("a field at byte {at} is cut")))
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, LayoutError> {
    data.get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| bad(format!("a field at byte {at} is cut")))
}

/// The top-level boxes of a file, read from their headers alone (`mdat` is never read).
pub(crate) fn top_level<R: Read + Seek>(file: &mut R) -> Result<Vec<BoxAt>, LayoutError> {
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        let mut header = [0u8; 16];
        let n = usize::try_from((len - at).min(16)).expect("at most 16");
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        file.read_exact(&mut header[..n]).map_err(io)?;
        // The header parsed as a box list of its own, its size checked against the file.
        let size32 = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let (size, head) = match (size32, n) {
            (_, 0..8) => return Err(bad(format!("a box header is cut at byte {at}"))),
            (0, _) => (len - at, 8),
            (1, 0..16) => return Err(bad(format!("a large box header is cut at byte {at}"))),
            (1, _) => (u64::from_be_bytes(header[8..16].try_into().expect("8 bytes")), 16),
            (n, _) => (u64::from(n), 8),
        };
        let kind: [u8; 4] = header[4..8].try_into().expect("4 bytes");
        let end = at
            .checked_add(size)
            .filter(|e| *e <= len && size >= head)
            .ok_or_else(|| bad(format!("the box {} at byte {at} runs past its parent", show(kind))))?;
        let [start, content, end] = [at, at + head, end].map(|v| usize::try_from(v).expect("a file offset fits"));
        out.push(BoxAt {
            kind,
            start,
            content,
            end,
        });
        at = end as u64;
    }
    Ok(out)
}

fn io(e: std::io::Error) -> LayoutError {
    bad(format!("reading the file: {e}"))
}

/// The bytes of one top-level box, read on their own: its `content` and `end` then count from 0.
fn load<R: Read + Seek>(file: &mut R, b: BoxAt) -> Result<(Vec<u8>, BoxAt), LayoutError> {
    let mut data = vec![0u8; b.end - b.start];
    file.seek(SeekFrom::Start(b.start as u64)).map_err(io)?;
    file.read_exact(&mut data).map_err(io)?;
    let local = BoxAt {
        kind: b.kind,
        start: 0,
        content: b.content - b.start,
        end: data.len(),
    };
    Ok((data, local))
}

/// Reads the layout of a one-track fragmented MP4 file held in memory.
///
/// # Errors
///
/// As [`read_layout`].
pub fn layout(data: &[u8]) -> Result<Layout, LayoutError> {
    read_layout(&mut std::io::Cursor::new(data))
}

/// Reads the layout of a one-track fragmented MP4 file: the top-level box headers, and the
/// `moov` and each `moof` in full (a few kilobytes each); the media data is never read, so a
/// track of any length costs the same memory.
///
/// # Errors
///
/// [`LayoutError`] when a box is cut or missing (`moov`, `mdhd`, a fragment's `tfdt` or `trun`),
/// or the file cannot be read.
pub fn read_layout<R: Read + Seek>(file: &mut R) -> Result<Layout, LayoutError> {
    let top = top_level(file)?;
    let moov_at = *top
        .iter()
        .find(|b| &b.kind == b"moov")
        .ok_or_else(|| bad("no moov box"))?;
    let first_moof = top
        .iter()
        .position(|b| &b.kind == b"moof")
        .ok_or_else(|| bad("no fragment"))?;
    let (data, moov) = load(file, moov_at)?;
    let trak = child(&data, moov, b"trak")?.ok_or_else(|| bad("no trak box"))?;
    let mdia = child(&data, trak, b"mdia")?.ok_or_else(|| bad("no mdia box"))?;
    let mdhd = child(&data, mdia, b"mdhd")?.ok_or_else(|| bad("no mdhd box"))?;
    let version = *data.get(mdhd.content).ok_or_else(|| bad("the mdhd box is empty"))?;
    let timescale = u32_at(&data, mdhd.content + if version == 1 { 20 } else { 12 })?;
    let trex_default = match child(&data, moov, b"mvex")? {
        Some(mvex) => match child(&data, mvex, b"trex")? {
            // version+flags, track_ID, default_sample_description_index, default_sample_duration
            Some(trex) => Some(u32_at(&data, trex.content + 12)?),
            None => None,
        },
        None => None,
    };

    let mut fragments = Vec::new();
    let mut i = first_moof;
    while i < top.len() {
        if &top[i].kind != b"moof" {
            i += 1;
            continue;
        }
        let moof_at = top[i];
        // The fragment runs to the end of the next mdat.
        let mdat = top[i + 1..]
            .iter()
            .position(|b| &b.kind == b"mdat")
            .map(|p| i + 1 + p)
            .ok_or_else(|| bad(format!("the fragment at byte {} has no mdat", moof_at.start)))?;
        let (data, moof) = load(file, moof_at)?;
        let traf = child(&data, moof, b"traf")?.ok_or_else(|| bad("a fragment without traf"))?;
        let (start, duration, samples, presentation) = read_traf(&data, traf, trex_default)?;
        fragments.push(Fragment {
            bytes: moof_at.start as u64..top[mdat].end as u64,
            start,
            duration,
            samples,
            presentation,
        });
        i = mdat + 1;
    }
    Ok(Layout {
        init: 0..moov_at.end as u64,
        index: top[..first_moof]
            .iter()
            .find(|b| &b.kind == b"sidx")
            .map(|b| b.start as u64..b.end as u64),
        timescale,
        fragments,
    })
}

/// A fragment's decode start, duration, sample count and earliest presentation time, from its
/// `traf`.
fn read_traf(data: &[u8], traf: BoxAt, trex_default: Option<u32>) -> Result<(u64, u64, u64, i64), LayoutError> {
    let tfhd = child(data, traf, b"tfhd")?.ok_or_else(|| bad("a fragment without tfhd"))?;
    let tfhd_flags = u32_at(data, tfhd.content)? & 0x00ff_ffff;
    // track_ID, then the optional fields in order.
    let mut at = tfhd.content + 8;
    if tfhd_flags & 0x01 != 0 {
        at += 8; // base-data-offset
    }
    if tfhd_flags & 0x02 != 0 {
        at += 4; // sample-description-index
    }
    let tfhd_default = if tfhd_flags & 0x08 != 0 {
        Some(u32_at(data, at)?)
    } else {
        None
    };
    let tfdt = child(data, traf, b"tfdt")?.ok_or_else(|| bad("a fragment without tfdt"))?;
    let start = if data[tfdt.content] == 1 {
        u64_at(data, tfdt.content + 4)?
    } else {
        u64::from(u32_at(data, tfdt.content + 4)?)
    };
    let mut duration = 0u64;
    let mut samples = 0u64;
    let mut earliest: Option<i64> = None;
    for trun in boxes(data, traf.content..traf.end)?
        .into_iter()
        .filter(|b| &b.kind == b"trun")
    {
        let signed = data[trun.content] == 1;
        let flags = u32_at(data, trun.content)? & 0x00ff_ffff;
        let count = u32_at(data, trun.content + 4)?;
        let mut at = trun.content + 8;
        if flags & 0x001 != 0 {
            at += 4; // data-offset
        }
        if flags & 0x004 != 0 {
            at += 4; // first-sample-flags
        }
        let per_sample = [0x100, 0x200, 0x400, 0x800].iter().filter(|f| flags & **f != 0).count() * 4;
        // The composition offset comes last of the per-sample fields.
        let cts_at = [0x100, 0x200, 0x400].iter().filter(|f| flags & **f != 0).count() * 4;
        for _ in 0..count {
            let offset = if flags & 0x800 != 0 {
                let raw = u32_at(data, at + cts_at)?;
                if signed { i64::from(raw as i32) } else { i64::from(raw) }
            } else {
                0
            };
            let shown = start as i64 + duration as i64 + offset;
            earliest = Some(earliest.map_or(shown, |e| e.min(shown)));
            let d = if flags & 0x100 != 0 {
                u32_at(data, at)?
            } else {
                tfhd_default
                    .or(trex_default)
                    .ok_or_else(|| bad("a sample without a duration"))?
            };
            duration += u64::from(d);
            at += per_sample;
        }
        samples += u64::from(count);
    }
    Ok((start, duration, samples, earliest.unwrap_or(start as i64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], content: &[u8]) -> Vec<u8> {
        let mut b = ((content.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(content);
        b
    }

    fn full(version: u8, flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut b = vec![version];
        b.extend_from_slice(&flags.to_be_bytes()[1..]);
        b.extend_from_slice(rest);
        b
    }

    /// A file: ftyp, moov (timescale 90000, trex default 3000), then fragments of `counts`
    /// samples, the first with per-sample durations of 3000, the others with the defaults.
    fn file(counts: &[u32]) -> Vec<u8> {
        let mdhd = mp4_box(
            b"mdhd",
            &full(0, 0, &[&[0; 8][..], &90_000u32.to_be_bytes(), &[0; 8]].concat()),
        );
        let moov = mp4_box(
            b"moov",
            &[
                mp4_box(b"trak", &mp4_box(b"mdia", &mdhd)),
                mp4_box(
                    b"mvex",
                    &mp4_box(
                        b"trex",
                        &full(0, 0, &[1u32, 1, 3000, 0, 0].map(u32::to_be_bytes).concat()),
                    ),
                ),
            ]
            .concat(),
        );
        let mut out = [mp4_box(b"ftyp", b"isomiso6"), moov].concat();
        let mut time = 0u64;
        for (n, count) in counts.iter().enumerate() {
            let tfhd = mp4_box(b"tfhd", &full(0, 0x02_0000, &1u32.to_be_bytes()));
            let tfdt = mp4_box(b"tfdt", &full(1, 0, &time.to_be_bytes()));
            let trun = if n == 0 {
                let mut rest = count.to_be_bytes().to_vec();
                for _ in 0..*count {
                    rest.extend_from_slice(&3000u32.to_be_bytes());
                }
                mp4_box(b"trun", &full(0, 0x100, &rest))
            } else {
                mp4_box(b"trun", &full(0, 0, &count.to_be_bytes()))
            };
            let moof = mp4_box(b"moof", &mp4_box(b"traf", &[tfhd, tfdt, trun].concat()));
            out.extend(moof);
            out.extend(mp4_box(b"mdat", &vec![0xAB; *count as usize * 10]));
            time += u64::from(*count) * 3000;
        }
        out
    }

    /// A reader that counts the bytes read from it.
    struct Counting<R> {
        inner: R,
        read: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn the_media_data_is_never_read() {
        let data = file(&[6000, 6000, 6000]);
        let mut reader = Counting {
            inner: std::io::Cursor::new(&data),
            read: 0,
        };
        let l = read_layout(&mut reader).unwrap();
        assert_eq!(l, layout(&data).unwrap());
        assert_eq!(l.fragments.len(), 3);
        // 180 kB of mdat, a few hundred bytes of headers, moov and moofs (the first moof lists
        // 6000 durations: 24 kB).
        assert!(reader.read < 30_000, "{} of {} bytes read", reader.read, data.len());
    }

    #[test]
    fn a_segment_index_after_the_moov_is_found_and_kept_out_of_the_init_part() {
        let plain = file(&[60, 60]);
        let moov_end = layout(&plain).unwrap().init.end as usize;
        let sidx = mp4_box(b"sidx", &[0; 24]);
        let data = [&plain[..moov_end], &sidx[..], &plain[moov_end..]].concat();
        let l = layout(&data).unwrap();
        assert_eq!(l.init, 0..moov_end as u64);
        assert_eq!(l.index, Some(moov_end as u64..(moov_end + 32) as u64));
        assert_eq!(l.fragments[0].bytes.start, (moov_end + 32) as u64);
        assert_eq!(l.fragments.len(), 2);
    }

    #[test]
    fn the_init_part_and_every_fragment_are_found_with_their_times() {
        let data = file(&[60, 60, 15]);
        let l = layout(&data).unwrap();
        assert_eq!(l.timescale, 90_000);
        assert_eq!(l.init.start, 0);
        assert_eq!(l.fragments.len(), 3);
        assert_eq!(l.init.end, l.fragments[0].bytes.start);
        assert_eq!(l.index, None);
        for w in l.fragments.windows(2) {
            assert_eq!(w[0].bytes.end, w[1].bytes.start, "fragments follow each other");
            assert_eq!(w[0].start + w[0].duration, w[1].start);
        }
        assert_eq!(l.fragments.last().unwrap().bytes.end, data.len() as u64);
        assert_eq!(
            l.fragments.iter().map(|f| (f.samples, f.duration)).collect::<Vec<_>>(),
            [(60, 180_000), (60, 180_000), (15, 45_000)]
        );
    }

    #[test]
    fn a_cut_file_or_one_without_fragments_is_refused() {
        let data = file(&[30]);
        assert!(layout(&data[..data.len() - 5]).unwrap_err().0.contains("runs past"));
        let no_fragment = [mp4_box(b"ftyp", b"isom"), mp4_box(b"moov", &[])].concat();
        assert!(layout(&no_fragment).is_err());
        assert!(layout(b"not an mp4 at all").is_err());
    }
}
