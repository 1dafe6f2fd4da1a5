//! The dashboard page at `GET /`: counts per kind, a few figures, a legend, and a timeline with one
//! bar per encoder run (start to end, coloured by outcome, with a hover title), plus the same runs
//! as a table for screen readers and keyboards. It refreshes itself every 3 s from `GET /summary`
//! and `GET /runs`. Self-contained: no CDN, no fonts or scripts from elsewhere.
//!
//! Tests and tools find its parts by data attributes: `[data-kind][data-count]` on each count,
//! `[data-run-id][data-outcome]` on each bar, `#runs-table tbody tr` for the table rows.

/// The page served at `GET /`.
pub const PAGE: &str = include_str!("dashboard.html");
