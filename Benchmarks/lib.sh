# lib.sh: what echo-bench.sh, framing-bench.sh and udp-bench.sh share. Sourced, not run.
#
# The sourcing script sets, before sourcing: BENCH (its name, for messages and report
# files), HERE (the Benchmarks directory), ROOT (the repository), and its own knobs;
# and it defines server_command NAME (the command line that starts server NAME).
# lib.sh provides:
#   the knobs both scripts share, from the environment or their defaults;
#   say, die, cleanup traps, a scratch directory $WORK;
#   build_c_programs, ensure_reactor;
#   start_server NAME [tcp|udp] / stop_server NAME (sets SERVER_PID and PORT);
#   wait_quiet (waits for other sessions' load to drop);
#   measure NAME FILE-PREFIX RATE-KEY RATE-UNIT CPU-KEY CPU-UNIT DEADLINE LOADGEN-ARGS...
#     (one loadgen run, repeated while noisy; sets BEST, BEST_NOISE, REPEATS);
#   field, median, calc, machine_ticks;
#   for the report: col, ratio, fmt, machine_line, publish_report.

# Knobs both scripts take (each script's header documents them).
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
NOISE_MAX=${NOISE_MAX:-10}
RETRIES=${RETRIES:-2}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_BUDGET=${QUIET_BUDGET:-300}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}

BIN=$HERE/bin
LOADGEN=$BIN/loadgen

SERVER_PID=
SERVER_NAME=
LOADGEN_PID=
WORK=$(mktemp -d "/tmp/$BENCH.XXXXXX")

cleanup() {
    local pid
    # TERM first: `timeout` passes it on to loadgen, the servers exit cleanly.
    for pid in $LOADGEN_PID $SERVER_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.2
    for pid in $LOADGEN_PID $SERVER_PID; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "$BENCH: interrupted" >&2; exit 130' INT TERM

say() { echo "$BENCH: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- build ----
build_c_programs() {
    make -s -C "$HERE" >&2 || die "building the C programs failed"
    command -v taskset >/dev/null || die "taskset is required (util-linux)"
}

# The release `reactor`, built when REACTOR_BIN is the default path and missing.
ensure_reactor() {
    if [[ ! -x $REACTOR_BIN ]]; then
        [[ $REACTOR_BIN == "$ROOT/.build/release/reactor" ]] || die "REACTOR_BIN=$REACTOR_BIN is not an executable"
        say "building reactor (swift build -c release)"
        (cd "$ROOT" && swift build -c release --product reactor >&2) || die "swift build -c release failed"
    fi
}

# start_server NAME [PROTO]: sets SERVER_PID and PORT once the server prints its
# "listening PROTO HOST:PORT ..." line (PROTO tcp, the default, or udp).
start_server() {
    local name=$1 proto=${2:-tcp} out=$WORK/$1.out i line
    SERVER_NAME=$name
    : >"$out"
    # shellcheck disable=SC2046
    taskset -c "$SERVER_CPU" $(server_command "$name") >"$out" 2>"$WORK/$name.err" &
    SERVER_PID=$!
    for ((i = 0; i < 200; i++)); do
        line=$(grep -m1 "^listening $proto " "$out" || true)
        [[ -n $line ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/$name.err" >&2; die "$name exited before listening"; }
        sleep 0.05
    done
    [[ -n $line ]] || die "$name printed no 'listening $proto' line within 10 s"
    PORT=$(sed -E "s/^listening $proto .*:([0-9]+) .*\$/\\1/" <<<"$line")
    [[ $PORT =~ ^[0-9]+$ && $PORT -gt 0 ]] || die "$name: cannot parse a port from '$line'"
}

# stop_server NAME: SIGTERM, then insist on a clean exit 0 within 15 s.
stop_server() {
    local name=$1 i rc=0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        die "$name did not exit within 15 s of SIGTERM"
    fi
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=
    [[ $rc -eq 0 ]] || { cat "$WORK/$name.err" >&2; die "$name exited with status $rc after SIGTERM (expected 0)"; }
}

# field KEY FILE: the value of KEY=VALUE in a loadgen output file.
field() { grep -o "\b$1=[^ ]*" "$2" | head -1 | cut -d= -f2; }

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

calc() { awk "BEGIN {printf \"$1\", $2}"; }

# note_commit [yes|no]: what is measured: sets $commit (HEAD now; others may commit while
# this runs), $dirty (uncommitted files under Sources/ and Package.swift) and $stale (says
# so when $REACTOR_BIN is older than the commit; "no" skips that check, for a run without
# the reactor).
note_commit() {
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$ROOT" status --porcelain -- Sources Package.swift 2>/dev/null | awk '{print $2}' | paste -sd, - | sed 's/,/, /g')
    stale=
    if [[ ${1:-yes} == yes && $commit != unknown ]] &&
        (($(date -r "$REACTOR_BIN" +%s) < $(git -C "$ROOT" log -1 --format=%ct HEAD))); then
        stale=" (the binary is older than that commit: rebuild it)"
        say "warning: $REACTOR_BIN is older than commit $commit"
    fi
}

# note_head_moved: adds to $stale when HEAD is no longer the $commit the run started at.
note_head_moved() {
    local now
    now=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ $now == "$commit" ]] || stale="$stale (HEAD moved to $now during the run)"
}

# bound SERVER_CPU% CLIENT_CPU%: which side limited a run. It is client-bound when loadgen
# used (nearly) all of its CPU while the server did not: the server could have handled
# more than it was offered.
bound() {
    local server=$1 client=$2
    if awk "BEGIN {exit !($client >= 95 && $server < 95)}"; then echo "client"
    elif awk "BEGIN {exit !($server >= 95)}"; then echo "server"
    else echo "neither"; fi
}

# Busy CPU ticks and total ticks of the whole machine, from /proc/stat.
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit}' /proc/stat; }

# Other sessions share this machine: wait until, over one second, the machine's busy
# time stays under NOISE_MAX % of one CPU (bounded by QUIET_WAIT and QUIET_BUDGET).
waited_total=0
wait_quiet() {
    local waited=0 b0 t0 b1 t1 busy
    while ((waited < QUIET_WAIT && waited_total < QUIET_BUDGET)); do
        read -r b0 t0 < <(machine_ticks)
        sleep 1
        read -r b1 t1 < <(machine_ticks)
        busy=$(calc %.1f "($b1 - $b0) * 100 * $(nproc) / ($t1 - $t0 + 0.001)")
        if awk "BEGIN {exit !($busy <= $NOISE_MAX)}"; then return 0; fi
        ((waited == 0)) && say "  machine busy (${busy}% of a CPU used by others): waiting for quiet"
        waited=$((waited + 1))
        waited_total=$((waited_total + 1))
    done
    ((waited == 0)) || say "  still busy after ${waited} s; running anyway"
}

# measure NAME FILE-PREFIX RATE-KEY RATE-UNIT CPU-KEY CPU-UNIT DEADLINE LOADGEN-ARGS...
# Runs `loadgen LOADGEN-ARGS --host 127.0.0.1 --port $PORT --server-pid $SERVER_PID` on
# CLIENT_CPU (after wait_quiet). A run during which other processes used more than
# NOISE_MAX % of a CPU (machine busy time minus client minus server) is repeated, up to
# RETRIES times; the quietest attempt is kept. Sets BEST (its output file), BEST_NOISE
# and REPEATS. RATE-KEY/CPU-KEY are the loadgen fields shown in the progress line.
measure() {
    local name=$1 prefix=$2 rate_key=$3 rate_unit=$4 cpu_key=$5 cpu_unit=$6 deadline=$7
    shift 7
    local attempt out rc noise
    BEST= BEST_NOISE=
    for ((attempt = 0; attempt <= RETRIES; attempt++)); do
        wait_quiet
        out=$WORK/$prefix-$attempt.txt
        timeout -k 5 "$deadline" taskset -c "$CLIENT_CPU" "$LOADGEN" "$1" --host 127.0.0.1 --port "$PORT" \
            "${@:2}" --server-pid "$SERVER_PID" >"$out" 2>"$out.err" &
        LOADGEN_PID=$!
        rc=0
        wait "$LOADGEN_PID" || rc=$?
        LOADGEN_PID=
        if [[ $rc -ne 0 ]]; then
            cat "$out.err" >&2
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                wait "$SERVER_PID" || say "$SERVER_NAME exited with status $? during the run; its stderr ends:"
                SERVER_PID=
                tail -20 "$WORK/$SERVER_NAME.err" >&2
            fi
            die "loadgen against $name failed (status $rc)"
        fi
        noise=$(calc %.1f "$(field machine_busy_pct "$out") - $(field client_cpu_pct "$out") - $(field server_cpu_pct "$out")")
        say "round $round $name: $(field "$rate_key" "$out") $rate_unit, server $(field "$cpu_key" "$out") $cpu_unit," \
            "server $(field server_cpu_pct "$out")% client $(field client_cpu_pct "$out")% other ${noise}%"
        if [[ -z $BEST ]] || awk "BEGIN {exit !($noise < $BEST_NOISE)}"; then BEST=$out BEST_NOISE=$noise; fi
        if awk "BEGIN {exit !($noise <= $NOISE_MAX)}"; then break; fi
        ((attempt == RETRIES)) || say "  other load above ${NOISE_MAX}% of a CPU: repeating"
    done
    REPEATS=$((attempt > RETRIES ? RETRIES : attempt))
}

# ---- report ----
# Each server's rounds are in $WORK/NAME.rounds, one line per round:
#   round repeats other% rate server-cpu-per-unit server-cpu% client-cpu% p50 p99

# col C NAME: the median over NAME's rounds of column C.
col() { awk -v c="$1" '{print $c}' "$WORK/$2.rounds" | median; }

# ratio NAME REF C: the median over rounds of (NAME's column C / REF's column C) in the
# same round; nan when either did not run.
ratio() {
    local name=$1 ref=$2 c=$3
    [[ -f $WORK/$name.rounds && -f $WORK/$ref.rounds ]] || { echo "nan"; return; }
    join <(awk -v c="$c" '{print $1, $c}' "$WORK/$name.rounds" | sort) \
        <(awk -v c="$c" '{print $1, $c}' "$WORK/$ref.rounds" | sort) |
        awk '{print $2 / $3}' | median
}

# fmt FORMAT VALUE: VALUE in FORMAT, or n/a for nan.
fmt() { if [[ $2 == nan ]]; then echo "n/a"; else calc "$1" "$2"; fi; }

# The report's "Machine: ..." sentence, up to the reactor binary and when it was built.
machine_line() {
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)." \
        "reactor: $REACTOR_BIN ($(date -u -r "$REACTOR_BIN" '+built %Y-%m-%d %H:%M UTC'))"
}

# publish_report FILE STAMP: keeps the report as results/$BENCH-STAMP.md and
# results/$BENCH-latest.md, and prints it.
publish_report() {
    local report=$1 stamp=$2
    mkdir -p "$HERE/results"
    cp "$report" "$HERE/results/$BENCH-$stamp.md"
    cp "$report" "$HERE/results/$BENCH-latest.md"
    cat "$report"
    say "written to Benchmarks/results/$BENCH-$stamp.md"
}
