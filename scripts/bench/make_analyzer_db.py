"""Writes a result-analyzer database of realistic history, straight with SQLite, for the read
benchmark (scripts/bench/analyzer.sh).

    python3 scripts/bench/make_analyzer_db.py EVENTS PATH

EVENTS events, one `started` and one `processed` per run, as the encoders report them: a few
thousand runs a day (one every 29 s on average), each 20 to 140 s long, so two to five run at once;
5 000 videos, one to three qualities, realistic figures (encode seconds, fps, outputs), unique run,
request and message ids, 40 hosts. The file has the events table alone, as every analyzer version
writes it (the schema of the analyzer before its aggregates): an analyzer with aggregates counts
them into its tables the first time it opens the file, which the benchmark times apart.

Seeded: the same EVENTS give the same file.
"""

import json
import random
import sqlite3
import sys
from datetime import datetime, timedelta, timezone

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    video_id TEXT,
    request_id TEXT,
    body TEXT NOT NULL
);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, id);
CREATE INDEX IF NOT EXISTS events_video ON events(video_id, id);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id, kind);
"""
LADDERS = [["720p"], ["480p", "720p"], ["480p", "720p", "1080p"], ["1080p"], ["360p", "720p"]]


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events(total, rng):
    """(time, kind, run, video, request, body) in the order recorded."""
    t = datetime(2025, 6, 1, tzinfo=timezone.utc)
    pending = []  # (end time, processed event) of runs still going, kept sorted by end
    made = 0
    run = 0
    while made < total:
        t += timedelta(seconds=rng.expovariate(1 / 29.0))
        while pending and pending[0][0] <= t and made < total:
            yield pending.pop(0)[1]
            made += 1
        if made >= total:
            break
        run += 1
        run_id = f"{rng.getrandbits(32):08x}-4b1f-9f4a-{run:012d}"
        video = f"video-{rng.randrange(5000):04d}"
        qualities = rng.choice(LADDERS)
        request = f"req-{run:010d}"
        host = f"encoder-7f9c2-{rng.randrange(40):02d}"
        common = {
            "run_id": run_id,
            "video_id": video,
            "qualities": qualities,
            "request_id": request,
            "message_id": f"msg-{run:010d}",
            "receive_count": 1,
            "host": host,
        }
        started = {"kind": "started", **common, "lease_seconds": 120}
        yield (t, "started", run_id, video, request, started)
        made += 1
        seconds = rng.uniform(20, 140)
        source = round(rng.uniform(10, 120), 2)
        frames = int(source * 30)
        encode = round(seconds * 0.86, 3)
        processed = {
            "kind": "processed",
            **common,
            "elapsed_seconds": round(seconds, 3),
            "encode_seconds": encode,
            "frames": frames,
            "fps": round(frames / encode, 2),
            "source_seconds": source,
            "outputs": [f"s3://media-out/renditions/{video}/{q}.mp4" for q in qualities],
        }
        end = t + timedelta(seconds=seconds)
        pending.append((end, (end, "processed", run_id, video, request, processed)))
        pending.sort(key=lambda p: p[0])
    # Runs still going at the end stay so: a history ends while work goes on.


def main():
    total, path = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(total)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA)
    rows = (
        (stamp(t), kind, run, video, request, json.dumps(body, separators=(",", ":")))
        for t, kind, run, video, request, body in events(total, rng)
    )
    with db:
        db.executemany(
            "INSERT INTO events (recorded_at, kind, run_id, video_id, request_id, body) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.executescript(INDEXES)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


if __name__ == "__main__":
    main()
