//! A TCP proxy between a program and the emulator that can cut the line for a while: the network
//! fault, not a fake of SQS or S3 (every byte that passes goes to the real emulator).
//!
//! While the line is cut, connections under way are dropped and new ones are either closed at
//! once ([`Fault::Refuse`], as a host that is down) or held open with nothing passing
//! ([`Fault::Blackhole`], as a partition: the caller waits for its own timeouts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How a cut line behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Connections are closed at once (connection reset / refused).
    Refuse,
    /// Connections are accepted and held; nothing passes.
    Blackhole,
}

/// What the line does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Up,
    Down(Fault),
}

/// A running proxy on a free loopback port, stopped when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where programs connect.
    pub addr: SocketAddr,
    line: watch::Sender<Line>,
    counts: Arc<Counts>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Proxies to the `http://host:port` of `target_url` (an emulator's URL).
    pub fn to_url(target_url: &str) -> Self {
        let hostport = target_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let target: SocketAddr = hostport
            .parse()
            .unwrap_or_else(|e| panic!("{target_url} is not http://IP:PORT: {e}"));
        Self::start(target)
    }

    /// Proxies to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the proxy");
        // Bound here, so that the address is known at once; served on the proxy's own runtime
        // (a test's runtime may be single-threaded or gone before the proxy is).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the proxy's address");
        let (line, watch_line) = watch::channel(Line::Up);
        let counts = Arc::new(Counts::default());
        runtime.spawn(accept(listener, target, watch_line, counts.clone()));
        Self {
            addr,
            line,
            counts,
            runtime: Some(runtime),
        }
    }

    /// `http://ADDR`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts the line: connections under way are dropped, new ones meet `fault`.
    pub fn cut(&self, fault: Fault) {
        let _ = self.line.send(Line::Down(fault));
    }

    /// Restores the line.
    pub fn restore(&self) {
        let _ = self.line.send(Line::Up);
    }

    /// Cuts the line now and restores it after `duration`, without blocking.
    pub fn cut_for(&self, fault: Fault, duration: Duration) {
        self.cut(fault);
        let line = self.line.clone();
        if let Some(rt) = &self.runtime {
            rt.spawn(async move {
                tokio::time::sleep(duration).await;
                let _ = line.send(Line::Up);
            });
        }
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.counts.accepted.load(Ordering::Relaxed)
    }

    /// The most connections that were passing bytes at the same time.
    pub fn peak_connections(&self) -> u64 {
        self.counts.peak.load(Ordering::Relaxed)
    }
}

/// Connection counts.
#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    open: AtomicU64,
    peak: AtomicU64,
}

/// Counts one open connection while it lives.
struct Open(Arc<Counts>);

impl Open {
    fn new(counts: &Arc<Counts>) -> Self {
        let now = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
        counts.peak.fetch_max(now, Ordering::SeqCst);
        Self(counts.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(listener: std::net::TcpListener, target: SocketAddr, line: watch::Receiver<Line>, counts: Arc<Counts>) {
    let listener = TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(client, target, line.clone(), counts.clone()));
    }
}

async fn serve(mut client: TcpStream, target: SocketAddr, mut line: watch::Receiver<Line>, counts: Arc<Counts>) {
    let state = *line.borrow_and_update();
    match state {
        Line::Down(Fault::Refuse) => {
            // Closed at once, before a byte passes.
            drop(client);
            return;
        }
        Line::Down(Fault::Blackhole) => {
            // Hold the connection, pass nothing, until the line comes back; then drop it.
            while line.changed().await.is_ok() && matches!(*line.borrow(), Line::Down(_)) {}
            return;
        }
        Line::Up => {}
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client.shutdown().await;
        return;
    };
    let _open = Open::new(&counts);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return,
            changed = line.changed() => {
                // Cut mid-connection: both sides lose it (dropping the sockets closes them).
                if changed.is_err() || matches!(*line.borrow(), Line::Down(_)) {
                    return;
                }
            }
        }
    }
}
