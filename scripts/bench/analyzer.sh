#!/usr/bin/env bash
# The result analyzer's durable writes per second under wrk, beside a Python standard-library
# server that behaves like the original example's analyzer (a list of strings in memory), in two
# forms:
#
#   as it comes  http.server's defaults: HTTP/1.0, one connection per request. This is how the
#                original behaves on the wire: Flask's development server (werkzeug) sends
#                "Connection: close" on every answer. This is the reference the goal (10×) is
#                measured against.
#   tuned        keep-alive (HTTP/1.1) and TCP_NODELAY: as fast as the standard library gets.
#                Printed beside, to show how much of the gap is the connection handling.
#
# wrk sends the same keep-alive requests to every server; each server decides whether to keep the
# connection open.
#
#   scripts/bench/analyzer.sh WORKDIR
#
# Builds nothing: expects target/release/result-analyzer (cargo build --release), wrk (Debian
# package wrk) and python3. For each of POST /create/count and POST /events it starts the analyzer
# on a free 127.0.0.1 port with a fresh database in WORKDIR, runs wrk, stops the analyzer with
# SIGTERM and counts the rows in SQLite: every 2xx answer wrk counted must be a stored row (a few
# more rows are expected: the requests still in flight when wrk stopped were committed, but wrk
# no longer counted their answers). Then the same wrk runs against both forms of the reference.
#
# Prints markdown table rows on stdout (the two figures, and a warning row if the durability check
# fails); everything else goes to stderr.
#
# Knobs: BENCH_ANALYZER_SECONDS (10), BENCH_ANALYZER_CONNECTIONS (32), BENCH_ANALYZER_THREADS (1),
# ANALYZER_BIN (target/release/result-analyzer), DATABASE_SYNCHRONOUS (full: the analyzer's default).
set -eo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 WORKDIR"
WORKDIR=$1
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)

: "${BENCH_ANALYZER_SECONDS:=10}"
: "${BENCH_ANALYZER_CONNECTIONS:=32}"
: "${BENCH_ANALYZER_THREADS:=1}"
: "${ANALYZER_BIN:=$REPO_ROOT/target/release/result-analyzer}"
: "${DATABASE_SYNCHRONOUS:=full}"
export DATABASE_SYNCHRONOUS

[[ -x $ANALYZER_BIN ]] || die "$ANALYZER_BIN is missing: build it first (cargo build --release -p result-analyzer)"
command -v wrk >/dev/null || die "wrk is missing: apt-get install wrk (scripts/bench.sh installs it)"
command -v python3 >/dev/null || die "python3 is missing"

trap 'stop_all' EXIT
trap 'exit 130' INT TERM

# --- wrk scripts ----------------------------------------------------------------------------------

# Every wrk script ends with this hook: it writes "requests non_2xx socket_errors duration_us" to
# $WRK_RESULT, from which the 2xx count and the rate are computed.
DONE_HOOK='
function done(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(os.getenv("WRK_RESULT"), "w"))
  f:write(string.format("%d %d %d %d\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, summary.duration))
  f:close()
end'

cat >"$WORKDIR/create_count.lua" <<EOF
wrk.method = "POST"
$DONE_HOOK
EOF

# A realistic encoder report: a processed 720p+1080p rendition of a 60 s clip. Each request has its
# own run, request and message ids, as distinct encoder runs would.
cat >"$WORKDIR/events.lua" <<EOF
-- setup() runs once per wrk thread, in the main state; it gives each thread's state a global
-- prefix, so ids stay unique across threads.
local threads, counter = 0, 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", string.format("t%d", threads))
end
local headers = { ["Content-Type"] = "application/json" }
local template = '{"kind":"processed","run_id":"%s-run-%d","video_id":"big-buck-bunny",'
  .. '"qualities":["720p","1080p"],"request_id":"%s-req-%d","message_id":"%s-msg-%d",'
  .. '"receive_count":1,"host":"encoder-7f9c2-x5kq2","elapsed_seconds":41.2,"encode_seconds":35.8,'
  .. '"frames":1440,"fps":40.2,"source_seconds":60.0,'
  .. '"outputs":["s3://media-out/renditions/big-buck-bunny/720p.mp4",'
  .. '"s3://media-out/renditions/big-buck-bunny/1080p.mp4"]}'
function request()
  counter = counter + 1
  local body = string.format(template, prefix, counter, prefix, counter, prefix, counter)
  return wrk.format("POST", nil, headers, body)
end
$DONE_HOOK
EOF

# --- the Python reference -------------------------------------------------------------------------

cat >"$WORKDIR/reference_analyzer.py" <<'EOF'
"""The original example's analyzer, in Python's standard library: a list of strings in memory.

POST /create/count appends "<time> - processed count N" and answers {"message": "Count incremented"};
POST /kill/count, POST /reset and GET /get/count as the original. POST /events (not in the
original) parses the event and appends it to a list of its own, for the same wrk script as ours.
No request log. With the argument `tuned`: HTTP/1.1 keep-alive and TCP_NODELAY; without it,
http.server's defaults (HTTP/1.0, the connection closed after each answer).
"""
import json
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = []
events = []
numbers = {"processed": 0, "kill": 0}
lock = threading.Lock()


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


TUNED = len(sys.argv) > 2 and sys.argv[2] == "tuned"


class Handler(BaseHTTPRequestHandler):
    if TUNED:
        protocol_version = "HTTP/1.1"
        # The head and the body go out in two writes: on a kept-alive connection, Nagle's
        # algorithm and delayed ACKs would hold every answer up for 40 ms.
        disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def count(self, name, message):
        self.body()
        with lock:
            numbers[name] += 1
            counts.append(f"{now()} - {name} count {numbers[name]}")
        self.answer(200, {"message": message})

    def do_POST(self):
        if self.path == "/create/count":
            self.count("processed", "Count incremented")
        elif self.path == "/kill/count":
            self.count("kill", "Kill incremented")
        elif self.path == "/reset":
            self.body()
            with lock:
                counts.clear()
                events.clear()
                numbers.update(processed=0, kill=0)
            self.answer(200, {"message": "Reset Successfully"})
        elif self.path == "/events":
            event = json.loads(self.body())
            events.append(event)
            self.answer(201, {"message": "Event recorded"})
        else:
            self.answer(404, {"error": "no such route"})

    def do_GET(self):
        if self.path == "/get/count":
            self.answer(200, counts)
        else:
            self.answer(404, {"error": "no such route"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF

# --- measuring ------------------------------------------------------------------------------------

# run_wrk NAME URL LUA: runs wrk, leaves "requests non_2xx socket_errors duration_us" in
# $WORKDIR/NAME.result and wrk's report in $WORKDIR/NAME.wrk.
run_wrk() {
  local name=$1 url=$2 lua=$3
  say "wrk -t$BENCH_ANALYZER_THREADS -c$BENCH_ANALYZER_CONNECTIONS -d${BENCH_ANALYZER_SECONDS}s $url"
  WRK_RESULT="$WORKDIR/$name.result" wrk -t"$BENCH_ANALYZER_THREADS" -c"$BENCH_ANALYZER_CONNECTIONS" \
    -d"${BENCH_ANALYZER_SECONDS}s" --latency -s "$lua" "$url" >"$WORKDIR/$name.wrk" 2>&1 ||
    { cat "$WORKDIR/$name.wrk" >&2; die "wrk failed against $url"; }
  sed 's/^/    /' "$WORKDIR/$name.wrk" >&2
}

# ok_count NAME / rate NAME: 2xx answers, and 2xx answers per second.
ok_count() { awk '{print $1 - $2}' "$WORKDIR/$1.result"; }
rate() { awk '{printf "%.0f", ($1 - $2) / ($4 / 1e6)}' "$WORKDIR/$1.result"; }

rows_in() { # DB [KIND]: rows in the events table
  python3 - "$@" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
if len(sys.argv) > 2:
    print(db.execute("SELECT count(*) FROM events WHERE kind = ?", (sys.argv[2],)).fetchone()[0])
else:
    print(db.execute("SELECT count(*) FROM events").fetchone()[0])
EOF
}

WARNINGS=()

# bench_ours NAME PATH LUA: fresh database, wrk, clean stop, durability check.
bench_ours() {
  local name=$1 path=$2 lua=$3 port db pid
  port=$(free_port)
  db="$WORKDIR/$name.db"
  rm -f "$db" "$db-wal" "$db-shm"
  say "result-analyzer on 127.0.0.1:$port, database $db (synchronous=$DATABASE_SYNCHRONOUS)"
  start_bg "$WORKDIR/$name.log" env LISTEN_ADDR="127.0.0.1:$port" DATABASE_PATH="$db" RUST_LOG=warn "$ANALYZER_BIN"
  pid=${BG_PIDS[-1]}
  wait_http "http://127.0.0.1:$port/healthz" "result-analyzer"
  run_wrk "$name" "http://127.0.0.1:$port$path" "$lua"
  kill -TERM "$pid"
  local status=0
  wait "$pid" || status=$?
  BG_PIDS=("${BG_PIDS[@]:0:${#BG_PIDS[@]}-1}")
  ((status == 0)) || die "result-analyzer did not stop cleanly (exit $status); see $WORKDIR/$name.log"
  local ok rows errors
  ok=$(ok_count "$name")
  rows=$(rows_in "$db")
  errors=$(awk '{print $2 + $3}' "$WORKDIR/$name.result")
  say "$path: $ok answered 2xx, $rows rows in SQLite, $errors errors (in flight at the end: at most $BENCH_ANALYZER_CONNECTIONS)"
  if ((rows < ok)); then
    WARNINGS+=("$(printf '| ⚠ analyzer POST %s: durability check failed | %s rows stored | %s answered 2xx | | every 2xx stored |' "$path" "$rows" "$ok")")
  elif ((rows > ok + BENCH_ANALYZER_CONNECTIONS)); then
    WARNINGS+=("$(printf '| ⚠ analyzer POST %s: rows without an answer | %s rows stored | %s answered 2xx | | at most %s in flight |' "$path" "$rows" "$ok" "$BENCH_ANALYZER_CONNECTIONS")")
  fi
  if ((errors > 0)); then
    WARNINGS+=("$(printf '| ⚠ analyzer POST %s: errors under load | %s | | | none |' "$path" "$errors")")
  fi
}

bench_reference() { # NAME PATH LUA PORT
  run_wrk "$1" "http://127.0.0.1:$4$2" "$3"
}

say "analyzer benchmark: ${BENCH_ANALYZER_SECONDS}s per run, $BENCH_ANALYZER_CONNECTIONS connections, $BENCH_ANALYZER_THREADS wrk thread(s)"
bench_ours ours_create /create/count "$WORKDIR/create_count.lua"
bench_ours ours_events /events "$WORKDIR/events.lua"

for form in plain tuned; do
  port=$(free_port)
  say "Python reference ($form) on 127.0.0.1:$port"
  start_bg "$WORKDIR/reference_$form.log" python3 "$WORKDIR/reference_analyzer.py" "$port" "$form"
  wait_http "http://127.0.0.1:$port/get/count" "the Python reference ($form)"
  bench_reference "ref_${form}_create" /create/count "$WORKDIR/create_count.lua" "$port"
  bench_reference "ref_${form}_events" /events "$WORKDIR/events.lua" "$port"
  stop_all
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.1f", a / b; else print "n/a"}'; }
for pair in "create:/create/count" "events:/events"; do
  key=${pair%%:*} path=${pair#*:}
  ours=$(rate "ours_$key")
  plain=$(rate "ref_plain_$key")
  tuned=$(rate "ref_tuned_$key")
  printf '| analyzer POST %s, durable events/s (wrk, %s s) | %s | %s (Python stdlib as it comes, in memory) | %s× | ≥ 10× |\n' \
    "$path" "$BENCH_ANALYZER_SECONDS" "$ours" "$plain" "$(ratio "$ours" "$plain")"
  printf '| same, beside the reference tuned | %s | %s (keep-alive, TCP_NODELAY) | %s× | (for scale) |\n' \
    "$ours" "$tuned" "$(ratio "$ours" "$tuned")"
done
for w in "${WARNINGS[@]}"; do
  echo "$w"
done
