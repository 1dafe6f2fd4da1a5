//! The result analyzer: records what the encoders did and answers for it.
//!
//! It keeps the original example's four routes byte for byte (`POST /create/count`,
//! `POST /kill/count`, `POST /reset`, `GET /get/count`), so scripts that `curl /get/count | jq`
//! keep working, and adds richer ones: `POST /events`, `GET /events`, `GET /summary`, `GET /runs`,
//! `GET /metrics`, `GET /healthz` and a dashboard at `GET /`. Events are stored in SQLite (WAL) at
//! `DATABASE_PATH` and acknowledged only once committed.
//!
//! ```text
//! result-analyzer --listen-addr 127.0.0.1:8080 --database-path analyzer.db
//! curl -s -X POST localhost:8080/create/count   # {"message": "Count incremented"}
//! curl -s localhost:8080/get/count | jq         # ["2026-01-17 05:50:45 - processed count 1"]
//! ```

mod dashboard;
mod routes;
pub mod store;
pub mod summary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

pub use store::Store;

/// Default listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
/// Default database file.
pub const DEFAULT_DATABASE_PATH: &str = "analyzer.db";
/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
    /// Seconds a request may take before it is answered 408.
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
    pub request_timeout_seconds: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("database_path", &self.database_path)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("request_timeout_seconds", &self.request_timeout_seconds)
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
}

impl Application {
    /// Opens the database and binds the listener (port 0 picks a free port, for tests).
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or the address cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (store, writer) = Store::open(&config.database_path)
            .with_context(|| format!("opening the database {}", config.database_path.display()))?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("listening on {}", config.listen_addr))?;
        Ok(Self {
            listener,
            store,
            writer,
            config,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish and closes the
    /// database.
    ///
    /// # Errors
    ///
    /// When the server fails.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = routes::router(
            self.store.clone(),
            self.config.token.clone(),
            Duration::from_secs(self.config.request_timeout_seconds),
        );
        tracing::info!(addr = %self.local_addr(), database = %self.config.database_path.display(), auth = self.config.token.is_some(), "listening");
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        // Dropping the last handle stops the writer thread, which commits and closes the file.
        drop(self.store);
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .context("closing the database")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "draining in-flight requests");
}
