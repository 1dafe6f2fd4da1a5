//! The folder server the players fetch from ([`Server`]): content types, single byte ranges,
//! CORS, and a log of every request ([`Served`]).

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One request the [`Server`] answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Served {
    /// `GET`, `HEAD`, `OPTIONS`, ...
    pub method: String,
    /// The path asked for, decoded, without the query (`/stream_0/seg_001.m4s`).
    pub path: String,
    /// The `Range` header, when there was one.
    pub range: Option<String>,
    /// The status answered.
    pub status: u16,
    /// Body bytes sent (those to send, while they are being sent).
    pub bytes: u64,
}

/// A static file server for one folder on 127.0.0.1 (an ephemeral port), stopped when dropped.
/// See the module's documentation for what it answers.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `dir` until dropped. Files are read when asked for: a file removed or changed
    /// meanwhile is served as it is then.
    ///
    /// # Errors
    ///
    /// `dir` is not a directory, or no port could be bound.
    pub fn serve(dir: &Path) -> io::Result<Server> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::Builder::new()
                .name("players-server".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let (root, log) = (root.clone(), log.clone());
                        std::thread::spawn(move || {
                            let _ = connection(conn, &root, &log);
                        });
                    }
                })?
        };
        Ok(Server {
            addr,
            log,
            stop,
            accept: Some(accept),
        })
    }

    /// The URL of `path` (relative to the folder) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far, in order.
    pub fn served(&self) -> Vec<Served> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop up so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Answers the requests of one connection (HTTP/1.1 keep-alive) until it closes or idles 30 s.
fn connection(stream: TcpStream, root: &Path, log: &Mutex<Vec<Served>>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (method, target, version) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or("HTTP/1.0").to_owned(),
        );
        let mut range = None;
        let mut close = version == "HTTP/1.0";
        let mut body_len = 0u64;
        for _ in 0..200 {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value.to_owned()),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "content-length" => body_len = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        io::copy(&mut (&mut reader).take(body_len), &mut io::sink())?;

        let response = respond(root, &method, &target, range.as_deref())?;
        // Logged before it is sent: whoever got the answer finds it in the log.
        let entry = {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(Served {
                method,
                path: decode_path(&target),
                range,
                status: response.status,
                bytes: if response.body.is_some() { response.len } else { 0 },
            });
            log.len() - 1
        };
        let sent = response.write(&mut out)?;
        log.lock().unwrap_or_else(|e| e.into_inner())[entry].bytes = sent;
        if close {
            return Ok(());
        }
    }
}

/// The answer to one request, before it is written.
struct Response {
    status: u16,
    reason: &'static str,
    /// Header lines beyond those every answer has, each ending in CRLF.
    headers: String,
    /// `Content-Length`.
    len: u64,
    /// The file and the first byte to send `len` bytes of (`None` for `HEAD` and errors).
    body: Option<(std::fs::File, u64)>,
}

impl Response {
    fn bare(status: u16, reason: &'static str, headers: &str) -> Self {
        Self {
            status,
            reason,
            headers: headers.to_owned(),
            len: 0,
            body: None,
        }
    }

    /// Writes it; returns the body bytes sent.
    fn write(self, out: &mut TcpStream) -> io::Result<u64> {
        write!(
            out,
            "HTTP/1.1 {} {}\r\nAccess-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges\r\n\
             Cache-Control: no-store\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\n{}\r\n",
            self.status, self.reason, self.len, self.headers
        )?;
        let mut sent = 0;
        if let Some((mut file, start)) = self.body {
            file.seek(SeekFrom::Start(start))?;
            sent = io::copy(&mut file.take(self.len), out)?;
        }
        out.flush()?;
        Ok(sent)
    }
}

/// The answer to one request.
fn respond(root: &Path, method: &str, target: &str, range: Option<&str>) -> io::Result<Response> {
    match method {
        "GET" | "HEAD" => {}
        "OPTIONS" => {
            return Ok(Response::bare(
                204,
                "No Content",
                "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
                 Access-Control-Allow-Headers: Range, Content-Type\r\nAccess-Control-Max-Age: 600\r\n",
            ));
        }
        _ => {
            return Ok(Response::bare(
                405,
                "Method Not Allowed",
                "Allow: GET, HEAD, OPTIONS\r\n",
            ));
        }
    }
    let Some(path) = resolve(root, target) else {
        return Ok(Response::bare(404, "Not Found", ""));
    };
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(Response::bare(404, "Not Found", ""));
    };
    let len = file.metadata()?.len();
    let ctype = format!("Content-Type: {}\r\n", content_type(&path));
    let (status, reason, headers, start, count) = match range.map(|r| parse_range(r, len)) {
        None | Some(Range::Whole) => (200, "OK", ctype, 0, len),
        Some(Range::Part(a, b)) => (
            206,
            "Partial Content",
            format!("{ctype}Content-Range: bytes {a}-{b}/{len}\r\n"),
            a,
            b - a + 1,
        ),
        Some(Range::Unsatisfiable) => {
            return Ok(Response::bare(
                416,
                "Range Not Satisfiable",
                &format!("Content-Range: bytes */{len}\r\n"),
            ));
        }
    };
    Ok(Response {
        status,
        reason,
        headers,
        len: count,
        body: (method == "GET").then_some((file, start)),
    })
}

/// A `Range` header read against a file of `len` bytes.
#[derive(Debug, PartialEq)]
enum Range {
    /// Absent, several ranges, or not understood: the whole file (RFC 9110 allows ignoring it).
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: &str, len: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), _) if a >= len => Range::Unsatisfiable,
        (Ok(a), Ok(b)) if b >= a => Range::Part(a, b.min(len - 1)),
        (Ok(a), Err(_)) if b.is_empty() => Range::Part(a, len - 1),
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part(len - n.min(len), len - 1)
            }
        }
        _ => Range::Whole,
    }
}

/// The path part of a request target, percent-decoded.
fn decode_path(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file a request target names under `root`, or `None` for anything outside it or not a file.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let decoded = decode_path(target);
    let rel = Path::new(decoded.trim_start_matches('/'));
    if decoded.contains('\0') || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = root.join(rel);
    path.is_file().then_some(path)
}

/// The `Content-Type` S3 or CloudFront should be configured to send for a file of the output.
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("m4s" | "mp4" | "m4v" | "cmfv") => "video/mp4",
        Some("m4a" | "cmfa") => "audio/mp4",
        Some("ts") => "video/mp2t",
        Some("aac") => "audio/aac",
        Some("vtt") => "text/vtt",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), Range::Part(0, 99));
        assert_eq!(parse_range("bytes=900-1999", 1000), Range::Part(900, 999));
        assert_eq!(parse_range("bytes=100-", 1000), Range::Part(100, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Range::Part(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Range::Part(0, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), Range::Whole);
        assert_eq!(parse_range("items=0-1", 1000), Range::Whole);
        assert_eq!(parse_range("bytes=9-1", 1000), Range::Whole);
    }

    #[test]
    fn request_paths_never_leave_the_folder() {
        let root = std::env::temp_dir();
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/a/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(decode_path("/a%20b/c.m4s?x=1"), "/a b/c.m4s");
    }

    #[test]
    fn manifests_and_segments_get_the_content_types_players_expect() {
        assert_eq!(content_type(Path::new("master.m3u8")), "application/vnd.apple.mpegurl");
        assert_eq!(content_type(Path::new("manifest.mpd")), "application/dash+xml");
        assert_eq!(content_type(Path::new("v/seg_001.m4s")), "video/mp4");
        assert_eq!(content_type(Path::new("a.m4a")), "audio/mp4");
        assert_eq!(content_type(Path::new("thumbnails.vtt")), "text/vtt");
        assert_eq!(content_type(Path::new("poster.JPG")), "image/jpeg");
    }
}
