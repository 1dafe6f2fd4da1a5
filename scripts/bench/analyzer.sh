#!/usr/bin/env bash
# The result analyzer's benchmarks, in two parts (BENCH_ANALYZER_PARTS, default "writes reads").
#
# writes: its durable writes per second under wrk, beside the previous version of the analyzer
# (ANALYZER_BASELINE_BIN, when given: within 10% is the goal) and a Python standard-library
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
# reads: the latency of every read route and the start-up time on databases of realistic history
# (BENCH_ANALYZER_SIZES events, default 10^4, 10^5 and 10^6, made by make_analyzer_db.py: one
# `started` and one `processed` per run), beside the previous version, which read and decoded
# every stored event on each call (measured when ANALYZER_BASELINE_BIN is given; otherwise the
# figures issue 17 quotes). Each route: the median of BENCH_ANALYZER_READS calls with curl (5 for
# the previous version, whose calls take seconds). Start-up: from exec to the first 200 of
# /healthz, the first time on a database of the events alone (an older analyzer's: its events are
# counted into the aggregates once) and again after a clean stop. The goal: every read route but
# /get/count (which lists every line, as the original does) under 20 ms at 10^6 events, and
# growing by less than 2x from 10^4 to 10^6.
#
# Prints markdown table rows on stdout (the figures, and a warning row if the durability check
# fails); everything else goes to stderr.
#
# Knobs: BENCH_ANALYZER_SECONDS (10), BENCH_ANALYZER_CONNECTIONS (32), BENCH_ANALYZER_THREADS (1),
# ANALYZER_BIN (target/release/result-analyzer), ANALYZER_BASELINE_BIN (none), DATABASE_SYNCHRONOUS
# (full: the analyzer's default), BENCH_ANALYZER_SIZES ("10000 100000 1000000"),
# BENCH_ANALYZER_READS (15), BENCH_ANALYZER_PARTS ("writes reads"), BENCH_ANALYZER_KEEP_DB (1).
# The databases are kept in WORKDIR/db-N.sqlite for the next run (delete them to make them again),
# and each analyzer works on a copy; with BENCH_ANALYZER_KEEP_DB=0 (short of disk space: the
# largest is about 550 MB, and as much again once ours has counted it) the previous version reads
# the file first, ours then counts it in place, and it is deleted afterwards.
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
: "${BENCH_ANALYZER_SIZES:=10000 100000 1000000}"
: "${BENCH_ANALYZER_READS:=15}"
: "${BENCH_ANALYZER_PARTS:=writes reads}"
: "${BENCH_ANALYZER_KEEP_DB:=1}"
export DATABASE_SYNCHRONOUS

[[ -x $ANALYZER_BIN ]] || die "$ANALYZER_BIN is missing: build it first (cargo build --release -p result-analyzer)"
[[ -z $ANALYZER_BASELINE_BIN || -x $ANALYZER_BASELINE_BIN ]] ||
  die "ANALYZER_BASELINE_BIN=$ANALYZER_BASELINE_BIN is not a program (scripts/bench.sh analyzer builds it)"
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

# Progress reports as encoders at work send them: each connection one every 10 ms (4 connections:
# about 400 a second, the reports of 2000 encoders at once), for 200 runs in turn.
cat >"$WORKDIR/progress.lua" <<EOF
local counter = 0
local headers = { ["Content-Type"] = "application/json" }
local template = '{"kind":"progress","run_id":"p-run-%d","video_id":"big-buck-bunny",'
  .. '"qualities":["720p","1080p"],"stage":"encoding","percent":%.1f,"fps":40.2,"lease_seconds":120}'
function delay()
  return 10
end
function request()
  counter = counter + 1
  return wrk.format("POST", nil, headers, string.format(template, counter % 200, (counter / 200) % 100))
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

# bench_ours NAME PATH LUA [BIN] [BESIDE_LUA]: fresh database, wrk (and, beside it, a second wrk
# running BESIDE_LUA on POST /events with 4 connections), clean stop, durability check.
bench_ours() {
  local name=$1 path=$2 lua=$3 bin=${4:-$ANALYZER_BIN} beside=${5:-} port db pid bpid=
  port=$(free_port)
  db="$WORKDIR/$name.db"
  rm -f "$db" "$db-wal" "$db-shm"
  say "result-analyzer on 127.0.0.1:$port, database $db (synchronous=$DATABASE_SYNCHRONOUS)"
  start_bg "$WORKDIR/$name.log" env LISTEN_ADDR="127.0.0.1:$port" DATABASE_PATH="$db" RUST_LOG=warn "$bin"
  pid=${BG_PIDS[-1]}
  wait_http "http://127.0.0.1:$port/healthz" "result-analyzer"
  if [[ -n $beside ]]; then
    WRK_RESULT="$WORKDIR/$name.beside.result" wrk -t1 -c4 -d"${BENCH_ANALYZER_SECONDS}s" -s "$beside" \
      "http://127.0.0.1:$port/events" >"$WORKDIR/$name.beside.wrk" 2>&1 &
    bpid=$!
  fi
  run_wrk "$name" "http://127.0.0.1:$port$path" "$lua"
  if [[ -n $bpid ]]; then
    wait "$bpid" || { cat "$WORKDIR/$name.beside.wrk" >&2; die "wrk beside failed"; }
  fi
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

# ratio A B [FORMAT]: A / B written with FORMAT (default %.1f), or n/a when B is not positive.
ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.1f}" 'BEGIN {if (b > 0) printf f, a / b; else print "n/a"}'; }

bench_writes() {
  command -v wrk >/dev/null || die "wrk is missing: apt-get install wrk (scripts/bench.sh installs it)"
  say "analyzer writes: ${BENCH_ANALYZER_SECONDS}s per run, $BENCH_ANALYZER_CONNECTIONS connections, $BENCH_ANALYZER_THREADS wrk thread(s)"
  local key path pair lua ours plain tuned before
  for pair in "create:/create/count:create_count" "events:/events:events"; do
    IFS=: read -r key path lua <<<"$pair"
    bench_ours "ours_$key" "$path" "$WORKDIR/$lua.lua"
    # The previous version right after ours, so that both meet the machine in the same state.
    [[ -z $ANALYZER_BASELINE_BIN ]] || bench_ours "before_$key" "$path" "$WORKDIR/$lua.lua" "$ANALYZER_BASELINE_BIN"
  done
  bench_ours ours_progress /events "$WORKDIR/events.lua" "$ANALYZER_BIN" "$WORKDIR/progress.lua"

  local form port
  for form in plain tuned; do
    port=$(free_port)
    say "Python reference ($form) on 127.0.0.1:$port"
    start_bg "$WORKDIR/reference_$form.log" python3 "$WORKDIR/reference_analyzer.py" "$port" "$form"
    wait_http "http://127.0.0.1:$port/get/count" "the Python reference ($form)"
    bench_reference "ref_${form}_create" /create/count "$WORKDIR/create_count.lua" "$port"
    bench_reference "ref_${form}_events" /events "$WORKDIR/events.lua" "$port"
    stop_all
  done

  for pair in "create:/create/count" "events:/events"; do
    key=${pair%%:*} path=${pair#*:}
    ours=$(rate "ours_$key")
    plain=$(rate "ref_plain_$key")
    tuned=$(rate "ref_tuned_$key")
    printf '| analyzer POST %s, durable events/s (wrk, %s s) | %s | %s (Python stdlib as it comes, in memory) | %s× | ≥ 10× |\n' \
      "$path" "$BENCH_ANALYZER_SECONDS" "$ours" "$plain" "$(ratio "$ours" "$plain")"
    printf '| same, beside the reference tuned | %s | %s (keep-alive, TCP_NODELAY) | %s× | (for scale) |\n' \
      "$ours" "$tuned" "$(ratio "$ours" "$tuned")"
    if [[ -n $ANALYZER_BASELINE_BIN ]]; then
      before=$(rate "before_$key")
      printf '| same, beside the previous version (no aggregates) | %s | %s | %s× | ≥ 0.9× |\n' \
        "$ours" "$before" "$(ratio "$ours" "$before" %.2f)"
    fi
  done
  local with reports alone
  with=$(rate ours_progress)
  reports=$(rate ours_progress.beside)
  alone=$(rate ours_events)
  printf '| analyzer POST /events outcomes/s with %s progress reports/s beside | %s | %s (outcomes alone) | %s× | ≥ 0.9× |\n' \
    "$reports" "$with" "$alone" "$(ratio "$with" "$alone" %.2f)"
}

# --- reads ----------------------------------------------------------------------------------------

# The figures issue 17 quotes for the previous version (seconds at 10^4, 10^5 and about 10^6
# events), shown when it is not measured here.
QUOTED_SUMMARY="0.09 0.51 2.1"
QUOTED_RUNS="0.06 0.32 2.0"

now_s() { date +%s.%N; }

# start_timed NAME DB BIN: starts BIN on DB and waits for /healthz; sets PORT and PID, and writes
# the seconds from exec to the first 200 to WORKDIR/started.
start_timed() {
  local name=$1 db=$2 bin=$3 t0 t1 i
  PORT=$(free_port)
  t0=$(now_s)
  # The previous version takes seconds per read at 10^6 events: more than the default limit.
  start_bg "$WORKDIR/$name.log" env LISTEN_ADDR="127.0.0.1:$PORT" DATABASE_PATH="$db" RUST_LOG=warn \
    REQUEST_TIMEOUT_SECONDS=300 "$bin"
  PID=${BG_PIDS[-1]}
  for ((i = 0; i < 360000; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORKDIR/$name.log" >&2; die "$bin exited on $db"; }
    sleep 0.005
  done
  t1=$(now_s)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}' >"$WORKDIR/started"
}

stop_timed() { # SIGTERM, and wait for a clean exit
  local status=0
  kill -TERM "$PID"
  wait "$PID" || status=$?
  BG_PIDS=()
  ((status == 0)) || die "the analyzer did not stop cleanly (exit $status)"
}

# latency URL N: the median of N calls' total time, in milliseconds; fails on a non-2xx answer.
latency() {
  local url=$1 n=$2 i
  for ((i = 0; i < n; i++)); do
    curl -fsS -o /dev/null -w '%{time_total}\n' "$url" || die "GET $url failed"
  done | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.2f\n", m * 1000}'
}

vm_hwm_mb() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# The reads measured: a name, and the path and query. {REQ} and {SINCE} are filled in per
# database. The previous version has no /requests route, no window and no state filter (its /runs
# takes a limit of the latest runs alone).
READS=(
  "GET /summary|/summary"
  "GET /runs (the default page: the latest 500)|/runs"
  "GET /runs?limit=200 (the dashboard's)|/runs?limit=200"
  "GET /runs?since= (the last hour)|/runs?since={SINCE}"
  "GET /runs?state=running (the dashboard's progress bars)|/runs?state=running"
  "GET /metrics|/metrics"
  "GET /requests/{id}|/requests/{REQ}"
  "GET /events?limit=100|/events?limit=100"
  "GET / (the dashboard page)|/"
)

# bench_reads_at N: on a database of N events, our start-up (first and again), every read and
# /get/count; then the previous version's. Leaves "name|value" lines in WORKDIR/reads-N.txt.
bench_reads_at() {
  local n=$1 db="$WORKDIR/db-$n.sqlite" out="$WORKDIR/reads-$n.txt" copy="$WORKDIR/copy-$n.sqlite"
  if [[ ! -s $db ]]; then
    say "making a database of $n events"
    python3 "$REPO_ROOT/scripts/bench/make_analyzer_db.py" "$n" "$db.tmp"
    mv "$db.tmp" "$db"
  fi
  local since req
  since=$(python3 -c '
import sqlite3, sys
from datetime import datetime, timedelta
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
last = db.execute("SELECT max(recorded_at) FROM events").fetchone()[0]
print((datetime.strptime(last, "%Y-%m-%dT%H:%M:%S.%fZ") - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))' "$db")
  req=$(printf 'req-%010d' $((n / 8)))
  : >"$out"
  local entry name query hwm who
  # The previous version first: it leaves the file as it found it (its index is already there).
  for who in before ours; do
    local bin=$ANALYZER_BIN prefix="" reads=$BENCH_ANALYZER_READS
    if [[ $who == before ]]; then
      [[ -n $ANALYZER_BASELINE_BIN ]] || continue
      bin=$ANALYZER_BASELINE_BIN prefix="before " reads=5
    fi
    if ((BENCH_ANALYZER_KEEP_DB)); then
      rm -f "$copy" "$copy-wal" "$copy-shm"
      cp "$db" "$copy"
    else
      copy=$db
    fi
    say "$n events, $who: first start"
    start_timed "$who-$n-first" "$copy" "$bin"
    echo "${prefix}start_first|$(cat "$WORKDIR/started")" >>"$out"
    stop_timed
    start_timed "$who-$n" "$copy" "$bin"
    echo "${prefix}start|$(cat "$WORKDIR/started")" >>"$out"
    say "$n events, $who: started in $(cat "$WORKDIR/started") s; reading"
    for entry in "${READS[@]}"; do
      name=${entry%%|*} query=${entry#*|}
      [[ $who == before && ($query == /requests/* || $query == *state=* || $query == *since=*) ]] && continue
      query=${query//\{SINCE\}/$since}
      query=${query//\{REQ\}/$req}
      latency "http://127.0.0.1:$PORT$query" 2 >/dev/null # warm the caches
      echo "$prefix$name|$(latency "http://127.0.0.1:$PORT$query" "$reads")" >>"$out"
    done
    hwm=$(vm_hwm_mb "$PID")
    echo "${prefix}GET /get/count|$(latency "http://127.0.0.1:$PORT/get/count" 3)" >>"$out"
    echo "${prefix}memory|$hwm → $(vm_hwm_mb "$PID")" >>"$out"
    stop_timed
  done
  rm -f "$copy" "$copy-wal" "$copy-shm"
}

# field FILE KEY: the value after "KEY|" in FILE, or "–".
field() {
  local v
  v=$(awk -v k="$2|" 'index($0, k) == 1 {print substr($0, length(k) + 1); exit}' "$1")
  echo "${v:-–}"
}

bench_reads() {
  local sizes n
  read -r -a sizes <<<"$BENCH_ANALYZER_SIZES"
  for n in "${sizes[@]}"; do
    bench_reads_at "$n"
  done
  local first=${sizes[0]} last=${sizes[-1]} label
  label=$(printf '%s / ' "${sizes[@]}" | sed 's| / $||')
  across() { # KEY: "a / b / c", one per size
    local out=() n
    for n in "${sizes[@]}"; do out+=("$(field "$WORKDIR/reads-$n.txt" "$1")"); done
    printf '%s / ' "${out[@]}" | sed 's| / $||'
  }
  local entry name ours before growth quoted goal
  for entry in "${READS[@]}" "GET /get/count|"; do
    name=${entry%%|*}
    ours=$(across "$name")
    growth=$(awk -v a="$(field "$WORKDIR/reads-$last.txt" "$name")" -v b="$(field "$WORKDIR/reads-$first.txt" "$name")" \
      -v f="$first" -v l="$last" 'BEGIN {if (b > 0) printf "%.2f× from %s to %s", a / b, f, l; else print "n/a"}')
    quoted=""
    [[ $name == "GET /summary" ]] && quoted=$QUOTED_SUMMARY
    [[ $name == "GET /runs (the default"* ]] && quoted=$QUOTED_RUNS
    if [[ -n $ANALYZER_BASELINE_BIN && $(field "$WORKDIR/reads-$first.txt" "before $name") != "–" ]]; then
      before="$(across "before $name") (previous version)"
    elif [[ -n $quoted ]]; then
      before="$(awk '{printf "%g / %g / %g", $1 * 1000, $2 * 1000, $3 * 1000}' <<<"$quoted") (previous version, as issue 17 quotes it)"
    else
      before="–"
    fi
    goal="< 20 ms at 10^6, < 2× growth"
    [[ $name == "GET /get/count" ]] && goal="lists every line, as the original does; streamed"
    printf '| analyzer %s, ms at %s events | %s | %s | %s | %s |\n' "$name" "$label" "$ours" "$before" "$growth" "$goal"
  done
  before="–"
  [[ -z $ANALYZER_BASELINE_BIN ]] || before="$(across "before start") (previous version)"
  printf '| analyzer start-up, s at %s events | %s | %s | | not growing with history |\n' "$label" "$(across start)" "$before"
  printf '| same, first start on an older database (its events counted once) | %s | | | once |\n' "$(across start_first)"
  before="–"
  [[ -z $ANALYZER_BASELINE_BIN ]] || before="$(across "before memory") (previous version)"
  printf '| analyzer peak memory before → after GET /get/count, MB at %s events | %s | %s | | not growing with history |\n' \
    "$label" "$(across memory)" "$before"
}

for part in $BENCH_ANALYZER_PARTS; do
  case $part in
    writes) bench_writes ;;
    reads) bench_reads ;;
    *) die "unknown part $part (writes, reads)" ;;
  esac
done
for w in "${WARNINGS[@]}"; do
  echo "$w"
done
