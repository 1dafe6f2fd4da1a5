//! The most encoder runs at once (`peak_concurrent_runs`), kept exactly as runs start, end, report
//! and get lost, whatever order their events come in.
//!
//! Every run holds an interval: from its start to its end, or, while it has no outcome, to its
//! expiry (its last report plus its lease). The concurrency at an instant is how many intervals
//! hold it, and the peak is the largest running sum of the intervals' edges (+1 at a start, -1 at
//! an end) swept in time order, ends before starts at the same instant.
//!
//! `peak_points` holds the edges counted per instant (microseconds): how many intervals end and
//! start there. Above them, `peak_buckets` is a tree over time with fixed boundaries: level 1
//! buckets span 2^17 µs (131 ms) of points, and each higher level 64 buckets of the level below, up
//! to level 5 (2^41 µs, 25 days). A bucket keeps the sum of its edges and the largest running sum
//! within it, so a changed edge recomputes one bucket per level, once per group commit, and the
//! peak folds at most 64 buckets per level. The writer keeps the part of the tree its last
//! commits changed in memory ([`PeakCache`]), so a commit folds it without reading it back.
//!
//! A run still going does not end at its expiry but now: when the peak is read, the edges at or
//! after now are swept again without the running runs' edges, which end now instead.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, params};

use super::StoreError;

/// Microseconds spanned by a level-1 bucket, as a shift: 2^17 µs.
const LEAF_SHIFT: u32 = 17;
/// Buckets of the level below in each bucket, as a shift: 64.
const FAN_SHIFT: u32 = 6;
/// The top level; the peak folds every bucket of it.
const TOP: u32 = 5;

fn shift(level: u32) -> u32 {
    LEAF_SHIFT + (level - 1) * FAN_SHIFT
}

/// The first instant of bucket `b` at `level`, and the first after it.
fn span(level: u32, b: i64) -> (i64, i64) {
    let s = shift(level);
    let lo = b.saturating_mul(1 << s);
    (lo, lo.saturating_add(1 << s))
}

/// A run of edges summed up: their total, and the largest running sum after each of them (`None`
/// when there are no edges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fold {
    /// The sum of the edges.
    pub net: i64,
    /// The largest running sum, counted from 0 before the first edge.
    pub max: Option<i64>,
}

impl Fold {
    /// The edges at one instant: `ends` times -1, then `starts` times +1.
    pub fn point(ends: i64, starts: i64) -> Self {
        let net = starts - ends;
        let max = if ends > 0 {
            Some(net.max(-1))
        } else if starts > 0 {
            Some(net)
        } else {
            None
        };
        Self { net, max }
    }

    /// Edges folded one after another, in the order given.
    pub fn chain(folds: impl IntoIterator<Item = Fold>) -> Self {
        folds.into_iter().fold(Self::default(), Self::then)
    }

    /// These edges, then `next`'s.
    pub fn then(self, next: Fold) -> Self {
        let later = next.max.map(|m| self.net + m);
        Self {
            net: self.net + next.net,
            max: match (self.max, later) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Edges added (+1) and removed (-1) by a group commit, per instant: (ends, starts).
#[derive(Debug, Default)]
pub(crate) struct PeakChanges(HashMap<i64, (i64, i64)>);

impl PeakChanges {
    /// Adds (`sign` 1) or removes (`sign` -1) the interval `[start, end)`.
    pub fn interval(&mut self, (start, end): (i64, i64), sign: i64) {
        self.0.entry(start).or_default().1 += sign;
        self.0.entry(end).or_default().0 += sign;
    }

    /// Writes the changed points and recomputes the buckets above them, folding what `cache`
    /// holds of them (and reading into it what it does not hold yet).
    ///
    /// # Errors
    ///
    /// When SQLite fails.
    pub fn apply(self, conn: &Connection, cache: &mut PeakCache) -> Result<(), StoreError> {
        let mut leaves: BTreeMap<i64, Vec<(i64, i64, i64)>> = BTreeMap::new();
        for (t, (ends, starts)) in self.0 {
            if ends != 0 || starts != 0 {
                leaves.entry(t >> LEAF_SHIFT).or_default().push((t, ends, starts));
            }
        }
        cache.make_room(leaves.len());
        let mut upsert = conn.prepare_cached(
            "INSERT INTO peak_points (t, ends, starts) VALUES (?1, ?2, ?3)
             ON CONFLICT(t) DO UPDATE SET ends = ends + excluded.ends, starts = starts + excluded.starts",
        )?;
        let mut prune = conn.prepare_cached("DELETE FROM peak_points WHERE t = ?1 AND ends = 0 AND starts = 0")?;
        let mut dirty = BTreeSet::new();
        for (b, changes) in leaves {
            let points = cache.points(conn, b)?;
            for (t, ends, starts) in changes {
                upsert.execute(params![t, ends, starts])?;
                let point = points.entry(t).or_default();
                *point = (point.0 + ends, point.1 + starts);
                // Only a removed edge can leave a point with none.
                if ends < 0 || starts < 0 {
                    prune.execute(params![t])?;
                }
                if *point == (0, 0) {
                    points.remove(&t);
                }
            }
            let fold = Fold::chain(points.values().map(|&(ends, starts)| Fold::point(ends, starts)));
            store_bucket(conn, 1, b, fold)?;
            cache.set(2, b, fold);
            dirty.insert(b >> FAN_SHIFT);
        }
        for level in 2..=TOP {
            for &b in &dirty {
                let fold = Fold::chain(cache.children(conn, level, b)?.iter().copied());
                store_bucket(conn, level, b, fold)?;
                if level < TOP {
                    cache.set(level + 1, b, fold);
                }
            }
            dirty = dirty.into_iter().map(|b| b >> FAN_SHIFT).collect();
        }
        Ok(())
    }
}

/// The part of the tree the last commits changed, as committed, so that the next commit folds
/// it again without reading it back: the points of level-1 buckets, and the folds of the
/// children of buckets above them. Whatever it does not hold is read as needed; it forgets
/// everything when it would hold more than [`PEAK_CACHE_CAP`] level-1 buckets.
#[derive(Debug, Default)]
pub(crate) struct PeakCache {
    /// Each level-1 bucket's points: instant → (ends, starts).
    points: HashMap<i64, BTreeMap<i64, (i64, i64)>>,
    /// Per bucket `(level, b)` above level 1, the folds of its [`FAN`] children.
    children: HashMap<(u32, i64), Vec<Fold>>,
}

/// Children of a bucket above level 1.
const FAN: usize = 1 << FAN_SHIFT;

/// Most level-1 buckets a [`PeakCache`] holds. A commit changes a few (a run's start, end or
/// expiry each land in one), so this holds many minutes of history.
const PEAK_CACHE_CAP: usize = 1024;

impl PeakCache {
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.points.clear();
        self.children.clear();
    }

    /// Forgets everything if `leaves` more level-1 buckets would outgrow it. The children held
    /// are those of these buckets' ancestors, so they are never more than `TOP - 1` per bucket.
    fn make_room(&mut self, leaves: usize) {
        if self.points.len() + leaves > PEAK_CACHE_CAP {
            self.clear();
        }
    }

    /// The points of level-1 bucket `b`, as committed.
    fn points(&mut self, conn: &Connection, b: i64) -> Result<&mut BTreeMap<i64, (i64, i64)>, StoreError> {
        let points = match self.points.entry(b) {
            Entry::Occupied(held) => held.into_mut(),
            Entry::Vacant(slot) => {
                let (lo, hi) = span(1, b);
                let mut stmt =
                    conn.prepare_cached("SELECT t, ends, starts FROM peak_points WHERE t >= ?1 AND t < ?2")?;
                let rows = stmt.query_map(params![lo, hi], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
                slot.insert(rows.collect::<Result<BTreeMap<_, _>, _>>()?)
            }
        };
        Ok(points)
    }

    /// The folds of the children of bucket `b` at `level` (above 1), as committed.
    fn children(&mut self, conn: &Connection, level: u32, b: i64) -> Result<&[Fold], StoreError> {
        let folds = match self.children.entry((level, b)) {
            Entry::Occupied(held) => held.into_mut(),
            Entry::Vacant(slot) => {
                let lo = b << FAN_SHIFT;
                let mut stmt = conn
                    .prepare_cached("SELECT b, net, max FROM peak_buckets WHERE level = ?1 AND b >= ?2 AND b < ?3")?;
                let mut rows = stmt.query(params![level - 1, lo, lo + FAN as i64])?;
                let mut folds = vec![Fold::default(); FAN];
                while let Some(row) = rows.next()? {
                    let child: i64 = row.get(0)?;
                    folds[(child - lo) as usize] = Fold {
                        net: row.get(1)?,
                        max: row.get(2)?,
                    };
                }
                slot.insert(folds)
            }
        };
        Ok(folds)
    }

    /// Notes the fold of `child`, stored at the level below `level`, in its parent's children
    /// when they are held.
    fn set(&mut self, level: u32, child: i64, fold: Fold) {
        if let Some(folds) = self.children.get_mut(&(level, child >> FAN_SHIFT)) {
            folds[(child & (FAN as i64 - 1)) as usize] = fold;
        }
    }
}

fn fold_points(conn: &Connection, lo: i64, hi: i64) -> Result<Fold, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT ends, starts FROM peak_points WHERE t >= ?1 AND t < ?2 ORDER BY t")?;
    let mut rows = stmt.query(params![lo, hi])?;
    let mut fold = Fold::default();
    while let Some(row) = rows.next()? {
        fold = fold.then(Fold::point(row.get(0)?, row.get(1)?));
    }
    Ok(fold)
}

/// Folds the buckets `lo..hi` of `level`.
fn fold_buckets(conn: &Connection, level: u32, lo: i64, hi: i64) -> Result<Fold, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT net, max FROM peak_buckets WHERE level = ?1 AND b >= ?2 AND b < ?3 ORDER BY b")?;
    let mut rows = stmt.query(params![level, lo, hi])?;
    let mut fold = Fold::default();
    while let Some(row) = rows.next()? {
        fold = fold.then(Fold {
            net: row.get(0)?,
            max: row.get(1)?,
        });
    }
    Ok(fold)
}

fn store_bucket(conn: &Connection, level: u32, b: i64, fold: Fold) -> Result<(), StoreError> {
    if fold.max.is_none() {
        conn.prepare_cached("DELETE FROM peak_buckets WHERE level = ?1 AND b = ?2")?
            .execute(params![level, b])?;
    } else {
        conn.prepare_cached("INSERT OR REPLACE INTO peak_buckets (level, b, net, max) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![level, b, fold.net, fold.max])?;
    }
    Ok(())
}

/// The edges before `now`, folded: one bucket per level at most 64 wide, then the points of the
/// level-1 bucket that holds `now`.
fn fold_before(conn: &Connection, now: i64) -> Result<Fold, StoreError> {
    let mut fold = fold_buckets(conn, TOP, i64::MIN, now >> shift(TOP))?;
    for level in (1..TOP).rev() {
        let parent = now >> shift(level + 1);
        let (lo, _) = span(level + 1, parent);
        fold = fold.then(fold_buckets(conn, level, lo >> shift(level), now >> shift(level))?);
    }
    let (lo, _) = span(1, now >> LEAF_SHIFT);
    Ok(fold.then(fold_points(conn, lo, now)?))
}

/// The peak of concurrent runs at `now` (microseconds), and how many runs are running (no outcome,
/// and not lost: expiry at or after now).
///
/// # Errors
///
/// When SQLite fails.
pub(crate) fn peak(conn: &Connection, now: i64) -> Result<(u64, u64), StoreError> {
    let before = fold_before(conn, now)?;
    // The edges from now on, as stored: running runs' expiries, and whatever has later times.
    let mut after: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut stmt = conn.prepare_cached("SELECT t, ends, starts FROM peak_points WHERE t >= ?1")?;
    let mut rows = stmt.query(params![now])?;
    while let Some(row) = rows.next()? {
        after.insert(row.get(0)?, (row.get(1)?, row.get(2)?));
    }
    // Running runs end now, not at their expiry; those starting later do not count at all.
    let mut stmt =
        conn.prepare_cached("SELECT start_us, expiry_us FROM runs WHERE end_us IS NULL AND expiry_us >= ?1")?;
    let mut rows = stmt.query(params![now])?;
    let (mut running, mut ending_now) = (0u64, 0i64);
    while let Some(row) = rows.next()? {
        let (start, expiry): (i64, i64) = (row.get(0)?, row.get(1)?);
        running += 1;
        if expiry <= start {
            continue;
        }
        after.entry(expiry).or_default().0 -= 1;
        if start >= now {
            after.entry(start).or_default().1 -= 1;
        } else {
            ending_now += 1;
        }
    }
    after.entry(now).or_default().0 += ending_now;
    let later = Fold::chain(after.into_values().map(|(ends, starts)| Fold::point(ends, starts)));
    let peak = before.then(later).max.unwrap_or(0).max(0);
    Ok((peak as u64, running))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_come_before_starts_at_the_same_instant() {
        assert_eq!(Fold::point(1, 1), Fold { net: 0, max: Some(0) });
        assert_eq!(Fold::point(2, 0), Fold { net: -2, max: Some(-1) });
        assert_eq!(Fold::point(0, 2), Fold { net: 2, max: Some(2) });
        assert_eq!(Fold::point(2, 3), Fold { net: 1, max: Some(1) });
        assert_eq!(Fold::point(0, 0).max, None);
    }

    #[test]
    fn folds_keep_the_largest_running_sum() {
        let a = Fold::point(0, 2).then(Fold::point(1, 0));
        assert_eq!(a, Fold { net: 1, max: Some(2) });
        let b = Fold::point(0, 1).then(Fold::point(0, 1));
        assert_eq!(a.then(b), Fold { net: 3, max: Some(3) });
        assert_eq!(Fold::default().then(a), a);
        assert_eq!(a.then(Fold::default()), a);
    }

    /// The peak by brute force: every edge sorted, ends before starts at the same instant.
    fn swept(intervals: &[(i64, i64)]) -> u64 {
        let mut edges: Vec<(i64, i64)> = intervals
            .iter()
            .filter(|(s, e)| e > s)
            .flat_map(|&(s, e)| [(s, 1), (e, -1)])
            .collect();
        edges.sort_unstable();
        let (mut at_once, mut peak) = (0i64, 0i64);
        for (_, d) in edges {
            at_once += d;
            peak = peak.max(at_once);
        }
        peak as u64
    }

    /// A fresh database with the tables.
    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::prepare(&mut conn).unwrap();
        conn
    }

    /// Numbers below `n` (xorshift from `seed`: the same every run).
    fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }

    /// Adds `i` to `changes` and `live`, and one time in `one_in` removes a live interval picked
    /// at random.
    fn churn(
        changes: &mut PeakChanges,
        live: &mut Vec<(i64, i64)>,
        i: (i64, i64),
        next: &mut impl FnMut(u64) -> u64,
        one_in: u64,
    ) {
        changes.interval(i, 1);
        live.push(i);
        if next(one_in) == 0 {
            let gone = live.swap_remove(next(live.len() as u64) as usize);
            changes.interval(gone, -1);
        }
    }

    #[test]
    fn the_peak_read_at_any_instant_is_the_sweep_of_every_interval_at_every_scale() {
        let conn = database();
        let mut next = numbers(0x9e37_79b9_7f4a_7c15u64);
        let base = 1_780_000_000_000_000i64;
        let mut live: Vec<(i64, i64)> = Vec::new();
        let mut cache = PeakCache::default();
        for batch in 0..40 {
            let mut changes = PeakChanges::default();
            for _ in 0..25 {
                // From microseconds to days long, anywhere in a year; some removed again.
                let scale = 1i64 << [3, 10, 17, 23, 29, 35, 41][next(7) as usize];
                let start = base + next(1 << 45) as i64;
                let i = (start, start + next(scale as u64) as i64);
                churn(&mut changes, &mut live, i, &mut next, 4);
            }
            changes.apply(&conn, &mut cache).unwrap();
            let want = swept(&live);
            // Without runs in progress, the peak is the same read at any instant: at the edges,
            // next to them, and anywhere.
            let mut nows: Vec<i64> = (0..20).map(|_| base + next(1 << 46) as i64).collect();
            for &(s, e) in live.iter().rev().take(10) {
                nows.extend([s - 1, s, s + 1, e - 1, e, e + 1]);
            }
            for now in nows {
                assert_eq!(peak(&conn, now).unwrap(), (want, 0), "batch {batch}, now {now}");
            }
        }
    }

    /// Runs reporting in time order, densely (many edges per level-1 bucket, some at the same
    /// instant, some ending in a later bucket, some removed again): every stored level-1 bucket
    /// is what folding its points gives, and the peak is the sweep's.
    #[test]
    fn buckets_grown_in_time_order_hold_the_fold_of_their_points() {
        let conn = database();
        let mut next = numbers(0x2545_f491_4f6c_dd1du64);
        let mut t = 1_780_000_000_000_000i64;
        let mut live: Vec<(i64, i64)> = Vec::new();
        let mut cache = PeakCache::default();
        for batch in 0..60 {
            let mut changes = PeakChanges::default();
            for _ in 0..20 {
                t += next(3000) as i64;
                let i = (t, t + 1 + next(200_000) as i64);
                churn(&mut changes, &mut live, i, &mut next, 8);
            }
            changes.apply(&conn, &mut cache).unwrap();
            let mut stmt = conn
                .prepare("SELECT b, net, max FROM peak_buckets WHERE level = 1")
                .unwrap();
            let stored: Vec<(i64, Fold)> = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        Fold {
                            net: r.get(1)?,
                            max: r.get(2)?,
                        },
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for (b, fold) in stored {
                let (lo, hi) = span(1, b);
                assert_eq!(fold, fold_points(&conn, lo, hi).unwrap(), "batch {batch}, bucket {b}");
            }
            assert_eq!(peak(&conn, t + (1 << 40)).unwrap(), (swept(&live), 0), "batch {batch}");
        }
    }

    #[test]
    fn buckets_nest_and_hold_negative_times() {
        for level in 1..TOP {
            let (lo, hi) = span(level + 1, 3);
            assert_eq!(lo >> shift(level), 3 << FAN_SHIFT);
            assert_eq!(hi >> shift(level), 4 << FAN_SHIFT);
        }
        assert_eq!(-1i64 >> LEAF_SHIFT, -1);
        assert_eq!(span(1, -1), (-(1 << LEAF_SHIFT), 0));
    }
}
