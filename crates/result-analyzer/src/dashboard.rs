//! The dashboard page: counts per kind and one bar per encoder run, refreshed every few seconds.
//! Self-contained (no CDN): it reads `/summary` and `/runs`.

/// The page served at `GET /`.
pub const PAGE: &str = include_str!("dashboard.html");
