//! Integration tests of the result analyzer: the app on a real socket, talked to over HTTP.
//!
//! - `helpers`: scratch directories, the app in-process, the real binary, raw HTTP, Chromium.
//! - `legacy`: the original example's four routes, byte for byte.
//! - `events`: `POST /events` (validation, every refusal) and `GET /events` (filters, pages).
//! - `figures`: `GET /summary`, `GET /runs`, `GET /metrics`, `GET /healthz`, and their consistency
//!   across a restart and a reset.
//! - `limits`: the bearer token, the body limit, the request timeout, unknown routes and methods.
//! - `failures`: a refused commit, damaged databases refused at start-up.
//! - `durability`: the real binary killed with SIGKILL under load, and stopped with SIGTERM while a
//!   request is in flight.
//! - `dashboard`: `GET /` rendered in headless Chromium, and the screenshot in `docs/`.
//! - `aggregates`: the figures against a full recomputation (`oracle`) after random streams, a
//!   restart, a `kill -9`, and for a database of an analyzer from before the aggregates.
//! - `lifecycle`: progress reports, lost runs, `GET /requests/{request_id}`.
//! - `player`: the player page of a processed request and the vendored players.
//! - `oracle`: every figure recomputed from the events, the slow way.
//! - `retention`: `RETENTION_DAYS`, the figures and `/get/count`'s numbers kept.
//! - `split`: a request split into chunks, in every answer; a database of the schema before them.

mod aggregates;
mod dashboard;
mod durability;
mod events;
mod failures;
mod figures;
mod helpers;
mod legacy;
mod lifecycle;
mod limits;
mod oracle;
mod player;
mod retention;
mod split;
