//! The result analyzer: records what the encoders did and answers for it.
//!
//! It keeps the original example's four routes byte for byte (`POST /create/count`,
//! `POST /kill/count`, `POST /reset`, `GET /get/count`), so scripts that `curl /get/count | jq`
//! keep working, and adds richer ones: `POST /events`, `GET /events`, `GET /summary`, `GET /runs`,
//! `GET /requests/{request_id}`, `GET /metrics`, `GET /healthz` and a dashboard at `GET /`. Events
//! are stored in SQLite (WAL) at `DATABASE_PATH` and acknowledged only once committed, together
//! with the aggregates every read route answers from, so no read scans the history. With
//! `RETENTION_DAYS`, older events are deleted in the background; the aggregates keep counting them.
//!
//! ```text
//! result-analyzer --listen-addr 127.0.0.1:8080 --database-path analyzer.db
//! curl -s -X POST localhost:8080/create/count   # {"message": "Count incremented"}
//! curl -s localhost:8080/get/count | jq         # ["2026-01-17 05:50:45 - processed count 1"]
//! ```
//!
//! # Layout
//!
//! - [`store`]: the SQLite event store, its aggregates, its group-commit writer thread.
//! - [`summary`]: the answers of the read routes, as data.
//! - [`metrics`]: the Prometheus text of the store's counters.
//! - `routes`: the HTTP layer (auth, limits, timeout, every route's answers).
//! - `dashboard`: the page served at `GET /`.
//!
//! [`Application`] ties them together: [`Application::build`] opens the database and binds the
//! port, [`Application::run_until`] serves until a shutdown future resolves, then drains and closes.

mod dashboard;
pub mod metrics;
mod player;
mod routes;
pub mod store;
pub mod summary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

pub use store::{Store, StoreError, Synchronous};

/// Default listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
/// Default database file.
pub const DEFAULT_DATABASE_PATH: &str = "analyzer.db";
/// Default largest request body, in bytes: an event is well under 4 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default seconds a request may take.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: f64 = 10.0;
/// Seconds the shutdown waits, beyond the request timeout, for in-flight requests before it
/// closes the database anyway.
const DRAIN_GRACE_SECONDS: f64 = 5.0;
/// Default seconds between two retention passes.
pub const DEFAULT_RETENTION_INTERVAL_SECONDS: f64 = 300.0;
/// Events deleted per transaction by a retention pass: a few milliseconds between group commits.
const PRUNE_BATCH: u32 = 500;
/// Pause between two batches of a retention pass, so that writes are never held up for long.
const PRUNE_PAUSE: Duration = Duration::from_millis(20);

/// Errors of the analyzer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The database could not be opened.
    #[error("opening the database {path}: {source}")]
    Database {
        /// The file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

/// Settings of `result-analyzer`.
#[derive(Clone, Parser)]
#[command(
    name = "result-analyzer",
    version,
    about = "HTTP service that records the encoders' outcomes; /get/count answers like the original example."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// The SQLite file that keeps the events.
    #[arg(long, env = "DATABASE_PATH", default_value = DEFAULT_DATABASE_PATH)]
    pub database_path: PathBuf,
    /// When set, every write route requires `Authorization: Bearer <token>`.
    #[arg(long, env = "ANALYZER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seconds a request (reading its body included) may take before it is answered 408; the
    /// shutdown waits this long plus 5 s for in-flight requests.
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECONDS)]
    pub request_timeout_seconds: f64,
    /// Largest request body in bytes; larger is answered 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// `full`: an event is acknowledged once flushed to disk (survives power loss). `normal`: once
    /// in the WAL file (survives the analyzer being killed, not the machine losing power; faster
    /// where a disk flush is slow).
    #[arg(long, env = "DATABASE_SYNCHRONOUS", default_value_t = Synchronous::Full)]
    pub synchronous: Synchronous,
    /// When set, events recorded more than this many days ago (fractions allowed) are deleted in
    /// the background, a few hundred at a time. The aggregates (`/summary`, `/runs`, `/metrics`,
    /// the dashboard) keep counting them, and the remaining `/get/count` lines keep their
    /// numbers; `GET /events` and `/get/count` no longer list them.
    #[arg(long, env = "RETENTION_DAYS")]
    pub retention_days: Option<f64>,
    /// Seconds between two retention passes.
    #[arg(long, env = "RETENTION_INTERVAL_SECONDS", default_value_t = DEFAULT_RETENTION_INTERVAL_SECONDS)]
    pub retention_interval_seconds: f64,
    /// The HTTP(S) address the output bucket is served from (a CDN, or the bucket's endpoint):
    /// the dashboard's player page plays `s3://bucket/key` from `{PLAYER_URL_BASE}/key`.
    #[arg(long, env = "PLAYER_URL_BASE")]
    pub player_url_base: Option<String>,
}

impl Config {
    /// The defaults, listening on `listen_addr` with the database at `database_path` (for tests
    /// and embedding; the program reads flags and the environment with [`Parser::parse`]).
    pub fn new(listen_addr: SocketAddr, database_path: impl Into<PathBuf>) -> Self {
        Self {
            listen_addr,
            database_path: database_path.into(),
            token: None,
            request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            synchronous: Synchronous::Full,
            retention_days: None,
            retention_interval_seconds: DEFAULT_RETENTION_INTERVAL_SECONDS,
            player_url_base: None,
        }
    }

    /// How long events are kept, and how often the retention pass runs; `None` without
    /// `RETENTION_DAYS`.
    ///
    /// # Errors
    ///
    /// When either is not a positive number.
    fn retention(&self) -> Result<Option<(chrono::Duration, Duration)>, Error> {
        let Some(days) = self.retention_days else {
            return Ok(None);
        };
        let keep = positive(days, 86_400.0)
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .ok_or_else(|| not_positive("RETENTION_DAYS", days))?;
        let every = positive(self.retention_interval_seconds, 1.0)
            .ok_or_else(|| not_positive("RETENTION_INTERVAL_SECONDS", self.retention_interval_seconds))?;
        Ok(Some((keep, every)))
    }

    /// The request timeout.
    ///
    /// # Errors
    ///
    /// When it is not a positive number of seconds.
    fn request_timeout(&self) -> Result<Duration, Error> {
        positive(self.request_timeout_seconds, 1.0)
            .ok_or_else(|| not_positive("REQUEST_TIMEOUT_SECONDS", self.request_timeout_seconds))
    }
}

/// `value` units of `unit_seconds` each, when that is a positive, representable duration.
fn positive(value: f64, unit_seconds: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value * unit_seconds)
        .ok()
        .filter(|d| !d.is_zero())
}

/// The refusal of setting `name`, which is not a positive number.
fn not_positive(name: &str, value: f64) -> Error {
    Error::Config(format!("{name} must be a positive number, got {value}"))
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("database_path", &self.database_path)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("request_timeout_seconds", &self.request_timeout_seconds)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("synchronous", &self.synchronous)
            .field("retention_days", &self.retention_days)
            .field("retention_interval_seconds", &self.retention_interval_seconds)
            .field("player_url_base", &self.player_url_base)
            .finish()
    }
}

/// A running analyzer, bound to its port.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    store: Store,
    writer: store::Writer,
    config: Config,
    timeout: Duration,
    retention: Option<(chrono::Duration, Duration)>,
}

impl Application {
    /// Opens the database (counting, once, the events of a database written by an older
    /// analyzer into the aggregates) and binds the listener (port 0 picks a free port, for
    /// tests).
    ///
    /// # Errors
    ///
    /// When a setting is out of range, the database cannot be opened or the address cannot be
    /// bound.
    pub async fn build(config: Config) -> Result<Self, Error> {
        let timeout = config.request_timeout()?;
        if config.max_body_bytes == 0 {
            return Err(Error::Config("MAX_BODY_BYTES must be more than 0".into()));
        }
        if config.token.as_deref() == Some("") {
            return Err(Error::Config(
                "ANALYZER_TOKEN is set but empty: unset it, or set a token".into(),
            ));
        }
        if let Some(base) = config.player_url_base.as_deref().filter(|b| !b.is_empty())
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(Error::Config(format!(
                "PLAYER_URL_BASE must be an http(s) URL, got {base:?}"
            )));
        }
        let retention = config.retention()?;
        let (path, sync) = (config.database_path.clone(), config.synchronous);
        let (store, writer) = tokio::task::spawn_blocking(move || Store::open(&path, sync))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
            .and_then(|r| r)
            .map_err(|source| Error::Database {
                path: config.database_path.clone(),
                source,
            })?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen_addr,
                source,
            })?;
        Ok(Self {
            listener,
            store,
            writer,
            config,
            timeout,
            retention,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The event store (to seed or inspect it in-process).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves; then stops accepting connections, lets in-flight requests
    /// finish (for at most the request timeout plus 5 s), commits what is queued, checkpoints the
    /// WAL and closes the database.
    ///
    /// # Errors
    ///
    /// When the server fails.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let addr = self.local_addr();
        let app = routes::router(
            self.store.clone(),
            routes::HttpSettings {
                token: self.config.token.clone(),
                timeout: self.timeout,
                max_body_bytes: self.config.max_body_bytes,
                player_base: self.config.player_url_base.clone().filter(|b| !b.is_empty()),
            },
        );
        tracing::info!(
            %addr,
            database = %self.config.database_path.display(),
            synchronous = %self.config.synchronous,
            auth = self.config.token.is_some(),
            request_timeout_seconds = self.timeout.as_secs_f64(),
            retention_days = self.config.retention_days,
            "listening"
        );
        let retention = self
            .retention
            .map(|(keep, every)| tokio::spawn(retain(self.store.clone(), keep, every)));
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let serve = axum::serve(self.listener, app).with_graceful_shutdown(signal);
        let drain_budget = self.timeout + Duration::from_secs_f64(DRAIN_GRACE_SECONDS);
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(drain_budget).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            r = serve => r.map_err(Error::Serve),
            () = deadline => {
                tracing::warn!(seconds = drain_budget.as_secs_f64(), "requests still in flight after the drain budget; closing anyway");
                Ok(())
            }
        };
        tracing::info!("no more requests; closing the database");
        if let Some(task) = retention {
            task.abort();
        }
        drop(self.store);
        let writer = self.writer;
        if let Err(e) = tokio::task::spawn_blocking(move || writer.shutdown()).await {
            tracing::error!(error = %e, "closing the database failed");
        }
        tracing::info!("stopped");
        served
    }
}

/// Deletes the events recorded more than `keep` ago, every `every`, in batches of
/// [`PRUNE_BATCH`] with a pause between them, until stopped.
async fn retain(store: Store, keep: chrono::Duration, every: Duration) {
    loop {
        let cutoff = chrono::Utc::now() - keep;
        let mut removed = 0usize;
        loop {
            match store.prune(cutoff, PRUNE_BATCH).await {
                Ok(n) => {
                    removed += n;
                    if n < PRUNE_BATCH as usize {
                        break;
                    }
                    tokio::time::sleep(PRUNE_PAUSE).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning old events failed; trying again at the next pass");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, before = %cutoff, "old events deleted (RETENTION_DAYS)");
        }
        tokio::time::sleep(every).await;
    }
}

/// Resolves on SIGTERM or SIGINT ([`encoding_common::shutdown`]), logging which.
///
/// # Panics
///
/// When the signal handlers cannot be installed (outside a Tokio runtime).
pub async fn shutdown_signal() {
    let mut signals = encoding_common::shutdown::Signals::install().expect("SIGTERM and SIGINT handlers");
    let signal = signals.recv().await;
    tracing::info!(%signal, "draining in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }

    #[test]
    fn flags_fill_the_config_and_the_token_is_never_shown() {
        let c = Config::parse_from([
            "result-analyzer",
            "--listen-addr",
            "127.0.0.1:9000",
            "--token",
            "s3cret",
            "--request-timeout-seconds",
            "0.25",
            "--synchronous",
            "normal",
        ]);
        assert_eq!(c.listen_addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.request_timeout().unwrap(), Duration::from_millis(250));
        assert_eq!(c.synchronous, Synchronous::Normal);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn retention_needs_positive_days_and_interval() {
        let mut c = Config::new("127.0.0.1:0".parse().unwrap(), "x.db");
        assert!(c.retention().unwrap().is_none());
        c.retention_days = Some(0.5);
        let (keep, every) = c.retention().unwrap().unwrap();
        assert_eq!((keep.num_hours(), every.as_secs()), (12, 300));
        for bad in [0.0, -1.0, f64::NAN] {
            c.retention_days = Some(bad);
            assert!(c.retention().is_err(), "{bad}");
        }
        c.retention_days = Some(1.0);
        c.retention_interval_seconds = 0.0;
        assert!(c.retention().is_err());
    }

    #[test]
    fn a_timeout_of_zero_or_less_is_refused() {
        let mut c = Config::new("127.0.0.1:0".parse().unwrap(), "x.db");
        for bad in [0.0, -1.0, f64::NAN] {
            c.request_timeout_seconds = bad;
            assert!(c.request_timeout().is_err(), "{bad}");
        }
    }
}
