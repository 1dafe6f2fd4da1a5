//! The dashboard page at `GET /`: counts per kind (lost runs included), a few figures, a live
//! progress bar per running run (its latest progress report: stage, percent, frames per second,
//! seconds since it last reported), a legend, and a timeline with one bar per encoder run of the
//! latest 200 (start to end, coloured by outcome, lost runs black and dotted, with a hover title),
//! plus the same runs as a table for screen readers and keyboards. A split request shows as its
//! video's runs, each saying its part ("split → 12 chunks", "chunk 4/12", "stitch of 12"), and
//! the figures say how many requests were split. It refreshes itself every 3 s
//! from `GET /summary`, `GET /runs` and `GET /runs?state=running`. Self-contained: no CDN, no fonts
//! or scripts from elsewhere.
//!
//! Tests and tools find its parts by data attributes: `[data-kind][data-count]` on each count,
//! `[data-progress-run][data-stage][data-percent]` on each progress bar's row,
//! `[data-run-id][data-outcome]` on each bar, `#runs-table tbody tr` for the table rows,
//! `[data-part]` on the part a run of a split request did, `[data-fact]` on each figure.

/// The page served at `GET /`.
pub const PAGE: &str = include_str!("dashboard.html");
