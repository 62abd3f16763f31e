#!/usr/bin/env bash
# ---------------------------------------------------------------------------
#  ledger_cqrs benchmarks (pgbench)
#
#  usage: bash test/bench/run.sh [SECTION ...]      (default: all sections)
#         normally via `make bench` (test/harness.sh bench), which starts a
#         throwaway cluster and exports PGHOST/PGPORT/PGUSER/PGDATABASE.
#
#  Sections:
#    append   ledger.append vs a plain INSERT of the same row into
#             bench.bare_events (same columns, defaults, indexes; no triggers)
#    transfer ledger.transfer between random accounts, and onto one hot
#             account, vs the bare INSERT of its event row (the floor) and
#             vs the same posting hand-written in PL/pgSQL
#    projections  fill of a projection vs CREATE TABLE AS, append TPS with
#             0/1/5 inline projections, async projector throughput, point
#             lookups vs a plain table (see section_projections below)
#    snapshots    balance_at on 1M vs 1k postings, rebuild of a projection
#             from a snapshot vs from scratch (see section_snapshots below)
#
#  Environment:
#    BENCH_SECONDS  seconds per measured pgbench run       (default 20)
#    BENCH_WARMUP   seconds of warm-up per workload/cell   (default 3)
#    BENCH_REPS     measured runs per workload and cell    (default 3)
#    BENCH_CLIENTS  client counts                          (default "1 8")
#    BENCH_SYNC     synchronous_commit values              (default "on off")
#    BENCH_EVENTS   events loaded by projections/snapshots (default 1000000)
#
#  Within a cell (clients x synchronous_commit) the workloads are run in
#  alternating order -- A B, then B A, ... -- each after a CHECKPOINT, and
#  the median of their TPS reported, so neither is systematically favoured
#  by running first or second, or by when a checkpoint starts.
#  Each section prints a Markdown table and writes it to
#  test/bench/results/SECTION.md.
#
#  Every pgbench run gets -D run=<distinct number> and -D n=0, so scripts
#  can build ids unique across runs and clients ('x' || :run || '-' ||
#  :client_id || '-' || :n, with \set n :n + 1).  Scripts registered in
#  CHECK_MARK/CHECK_COUNT are checked after every run (warm-ups included):
#  the rows they appended must equal the transactions pgbench reports.
#
#  Adding a section: write its pgbench scripts next to this file, then a
#  function section_NAME that calls run_matrix and print_table (see
#  section_append), and add NAME to SECTIONS.
# ---------------------------------------------------------------------------
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RESULTS_DIR=$BENCH_DIR/results
DB=ledger_bench

BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_REPS=${BENCH_REPS:-3}
BENCH_CLIENTS=${BENCH_CLIENTS:-"1 8"}
BENCH_SYNC=${BENCH_SYNC:-"on off"}

SECTIONS=(append transfer projections snapshots)

log() { echo "== bench: $*" >&2; }
die() { echo "== bench: ERROR: $*" >&2; exit 1; }

psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

# ---------------------------------------------------------------------------
# Database setup
# ---------------------------------------------------------------------------
setup_db() {
    log "creating database $DB"
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $DB" \
        -c "CREATE DATABASE $DB"
    psql_db -c "CREATE EXTENSION ledger_cqrs"
    psql_db -f "$BENCH_DIR/setup.sql"
}

# Between cells: keep table growth and dirty buffers from one cell from
# skewing the next (VACUUM sets the visibility map and refreshes stats;
# CHECKPOINT flushes, and restarts the checkpoint timer so none lands inside
# the cell unless it is longer than checkpoint_timeout).
maintenance() {
    psql_db -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
}

# ---------------------------------------------------------------------------
# pgbench runs
# ---------------------------------------------------------------------------

# Row-count checks, by script: CHECK_MARK[script] is a query run before
# each run of the script (e.g. the highest position so far); after the run,
# CHECK_COUNT[script], with every ":mark" replaced by that value, must count
# exactly as many rows as pgbench reports transactions.  This catches a
# script whose calls silently do nothing (e.g. an idempotent retry of a
# reused transfer id instead of a new posting).
declare -A CHECK_MARK=()
declare -A CHECK_COUNT=()

# run_cell NAME SCRIPT CLIENTS SYNC [SECONDS] -- one pgbench run of SCRIPT
# (a file in test/bench) with CLIENTS clients, min(CLIENTS, 2) threads and
# synchronous_commit=SYNC; prints its TPS (excluding connection time) on
# stdout.  Fails on any failed transaction, and on a failed row-count check.
run_cell() {
    local name=$1 script=$2 clients=$3 sync=$4 secs=${5:-$BENCH_SECONDS}
    local threads=$(( clients < 2 ? clients : 2 ))
    local out tps failed xacts mark="" rows run

    if [ -n "${CHECK_COUNT[$script]:-}" ]; then
        mark=$(psql_db -At -c "${CHECK_MARK[$script]}")
    fi
    run=$(date +%s%6N)    # microseconds: distinct for every run of this invocation
    if ! out=$(PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=$sync" \
               pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" \
                       -D run="$run" -D n=0 \
                       -f "$BENCH_DIR/$script" "$DB" 2>&1); then
        echo "$out" >&2
        die "pgbench failed: $name ($script) clients=$clients sync=$sync"
    fi
    tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
    failed=$(awk '/^number of failed transactions:/ { print $5; exit }' <<<"$out")
    [ -n "$tps" ] || { echo "$out" >&2; die "no tps in pgbench output ($name)"; }
    if [ -n "$failed" ] && [ "$failed" != 0 ]; then
        echo "$out" >&2
        die "$failed failed transactions: $name clients=$clients sync=$sync"
    fi
    if [ -n "$mark" ]; then
        xacts=$(awk '/^number of transactions actually processed:/ { split($NF, a, "/"); print a[1]; exit }' <<<"$out")
        rows=$(psql_db -At -c "${CHECK_COUNT[$script]//:mark/$mark}")
        if [ "$rows" != "$xacts" ]; then
            echo "$out" >&2
            die "$name ($script) clients=$clients sync=$sync: pgbench reports $xacts transactions but $rows rows were appended"
        fi
    fi
    echo "$tps"
}

# Results: one row per (section, workload, clients, sync).
declare -A TPS=()        # "section|workload|clients|sync" -> median TPS
declare -A RUNS=()       # same key -> the individual runs' TPS
declare -A BASELINE=()   # section -> baseline workload name
declare -A WORKLOADS=()  # section -> workload names, in table order

# median X... -- the median of the numbers given (the mean of the middle two
# for an even count)
median() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run_matrix SECTION NAME:SCRIPT [NAME:SCRIPT ...]
# The first workload is the section's baseline (ratio 1.00).  For every
# (clients, sync) cell: cell_setup_SECTION if the section defines it,
# maintenance, a warm-up of each workload, then BENCH_REPS measured runs of
# each in alternating order, each after a CHECKPOINT; a cell's TPS is the
# median of its runs.
run_matrix() {
    local section=$1; shift
    local specs=("$@") names=() spec name clients sync rep i n=$#
    local -a order

    for spec in "${specs[@]}"; do names+=("${spec%%:*}"); done
    BASELINE[$section]=${names[0]}
    WORKLOADS[$section]="${names[*]}"

    for clients in $BENCH_CLIENTS; do
        for sync in $BENCH_SYNC; do
            local cell="clients=$clients sync_commit=$sync"
            if declare -F "cell_setup_$section" >/dev/null; then
                "cell_setup_$section"
            fi
            maintenance
            for spec in "${specs[@]}"; do
                log "$section: warm-up ${spec%%:*} ($cell, ${BENCH_WARMUP}s)"
                run_cell "${spec%%:*}" "${spec#*:}" "$clients" "$sync" "$BENCH_WARMUP" >/dev/null
            done
            for ((rep = 0; rep < BENCH_REPS; rep++)); do
                # even reps: A B C ..., odd reps: ... C B A
                order=()
                for ((i = 0; i < n; i++)); do
                    if (( rep % 2 == 0 )); then order+=("${specs[i]}"); else order+=("${specs[n - 1 - i]}"); fi
                done
                for spec in "${order[@]}"; do
                    name=${spec%%:*}
                    local tps
                    # every run starts from a fresh checkpoint: none lands
                    # inside it, and each pays the same full-page writes
                    psql_db -c "CHECKPOINT"
                    tps=$(run_cell "$name" "${spec#*:}" "$clients" "$sync")
                    log "$section: $name $cell run $((rep + 1))/$BENCH_REPS: $tps tps"
                    RUNS["$section|$name|$clients|$sync"]+="${RUNS["$section|$name|$clients|$sync"]:+ }$(printf '%.0f' "$tps")"
                done
            done
            for name in "${names[@]}"; do
                TPS["$section|$name|$clients|$sync"]=$(median ${RUNS["$section|$name|$clients|$sync"]})
            done
        done
    done
}

machine_facts() {
    local ver
    ver=$(psql -X -At -d "$DB" -c "SHOW server_version")
    printf 'nproc=%s, PostgreSQL %s, BENCH_SECONDS=%s (x%s runs per workload and cell, alternating order, each after a CHECKPOINT, median reported, %ss warm-up), fsync=%s, shared_buffers=%s\n' \
        "$(nproc)" "$ver" "$BENCH_SECONDS" "$BENCH_REPS" "$BENCH_WARMUP" \
        "$(psql -X -At -d "$DB" -c 'SHOW fsync')" \
        "$(psql -X -At -d "$DB" -c 'SHOW shared_buffers')"
}

# print_table SECTION -- Markdown table on stdout and in results/SECTION.md.
# If a function table_extra_SECTION exists, its output (more Markdown) is
# appended after the table.
print_table() {
    local section=$1 base=${BASELINE[$1]} name clients sync tps btps ratio
    local table
    table=$(
        echo "| workload | clients | sync_commit | TPS | ratio vs $base |"
        echo "|---|---:|---|---:|---:|"
        for name in ${WORKLOADS[$section]}; do
            for clients in $BENCH_CLIENTS; do
                for sync in $BENCH_SYNC; do
                    tps=${TPS["$section|$name|$clients|$sync"]}
                    btps=${TPS["$section|$base|$clients|$sync"]}
                    ratio=$(awk -v a="$tps" -v b="$btps" 'BEGIN { printf "%.2f", a / b }')
                    printf '| %s | %s | %s | %.0f | %s |\n' "$name" "$clients" "$sync" "$tps" "$ratio"
                done
            done
        done
        if declare -F "table_extra_$section" >/dev/null; then
            echo
            "table_extra_$section"
        fi
        echo
        echo "Machine: $(machine_facts)"
        echo
        echo "Individual runs (TPS):"
        for name in ${WORKLOADS[$section]}; do
            for clients in $BENCH_CLIENTS; do
                for sync in $BENCH_SYNC; do
                    echo "- $name, clients=$clients, sync_commit=$sync: ${RUNS["$section|$name|$clients|$sync"]}"
                done
            done
        done
    )
    mkdir -p "$RESULTS_DIR"
    {
        echo "# ledger_cqrs benchmark: $section"
        echo
        echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by test/bench/run.sh $section."
        echo
        echo "$table"
    } >"$RESULTS_DIR/$section.md"
    echo
    echo "### $section"
    echo
    echo "$table"
    echo
    log "wrote $RESULTS_DIR/$section.md"
}

# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------

# append: ledger.append (advisory lock, stream-head probe, nextval, direct
# heap + index insert) against a plain INSERT of the same row.
section_append() {
    run_matrix append bare:bare_insert.sql append:append.sql
    print_table append
}

# transfer: ledger.transfer (C: idempotency probe on "transfer:<id>",
# account checks, per-(account, currency) advisory locks, direct heap/index
# writes of the event, two balance updates and two entries) between random
# distinct accounts of a1..a1000, and onto one hot account; against the
# bare INSERT of its event row and against bench.transfer_plpgsql.
section_transfer() {
    local ev="SELECT coalesce(max(position), 0) FROM"
    CHECK_MARK[transfer.sql]="$ev ledger.events"
    CHECK_COUNT[transfer.sql]="SELECT count(*) FROM ledger.events WHERE position > :mark AND type = 'TransferPosted'"
    CHECK_MARK[hot.sql]=${CHECK_MARK[transfer.sql]}
    CHECK_COUNT[hot.sql]="SELECT count(*) FROM ledger.events WHERE position > :mark AND type = 'TransferPosted' AND data @> '{\"legs\": [{\"account\": \"hot\", \"side\": \"credit\"}]}'"
    CHECK_MARK[bare_transfer.sql]="$ev bench.bare_events"
    CHECK_COUNT[bare_transfer.sql]="SELECT count(*) FROM bench.bare_events WHERE position > :mark"
    CHECK_MARK[plpgsql.sql]="$ev bench.pl_events"
    CHECK_COUNT[plpgsql.sql]="SELECT count(*) FROM bench.pl_events WHERE position > :mark"
    CHECK_MARK[plpgsql_checked.sql]=${CHECK_MARK[plpgsql.sql]}
    CHECK_COUNT[plpgsql_checked.sql]=${CHECK_COUNT[plpgsql.sql]}
    CHECK_MARK[sql_transfer.sql]=${CHECK_MARK[plpgsql.sql]}
    CHECK_COUNT[sql_transfer.sql]=${CHECK_COUNT[plpgsql.sql]}

    TRANSFER_CELLS=0
    run_matrix transfer bare:bare_transfer.sql transfer:transfer.sql hot:hot.sql plpgsql:plpgsql.sql \
        plpgsql_checked:plpgsql_checked.sql sql:sql_transfer.sql
    check_transfer_models
    print_table transfer
}

# A fresh database for every cell.  ledger.events cannot be truncated, and
# the ledger's tables grow about twice as fast as each baseline's (transfer
# and hot both append to them); without a reset, later cells would measure
# bigger tables than earlier ones (a 10 s run at 8 clients appends a few
# hundred thousand events), and the ledger bigger tables than the baselines.
cell_setup_transfer() {
    if (( TRANSFER_CELLS > 0 )); then check_transfer_models; fi
    setup_db
    log "transfer: setup (1,001 accounts, PL/pgSQL baseline, seed postings)"
    psql_db -f "$BENCH_DIR/transfer_setup.sql" >/dev/null
    TRANSFER_CELLS=$(( TRANSFER_CELLS + 1 ))
}

# After each cell: the read models agree with the log (every posting
# counted twice in the balances and the entries; debits = credits).
check_transfer_models() {
    local got
    got=$(psql_db -At -c "
        SELECT (SELECT 2 * count(*) FROM ledger.events WHERE type = 'TransferPosted')
             = (SELECT sum(postings) FROM ledger.balances)
           AND (SELECT 2 * count(*) FROM ledger.events WHERE type = 'TransferPosted')
             = (SELECT count(*) FROM ledger.account_entries)
           AND (SELECT bool_and(debits = credits) FROM ledger.currency_totals)
           AND (SELECT 2 * count(*) FROM bench.pl_events)
             = (SELECT sum(postings) FROM bench.pl_balances)
           AND (SELECT 2 * count(*) FROM bench.pl_events)
             = (SELECT count(*) FROM bench.pl_entries)")
    [ "$got" = t ] || die "transfer: read models disagree with the log after the runs"
    log "transfer: read models agree with the log"
}

# ratio A B CLIENTS SYNC -- TPS of workload A / TPS of workload B in a cell
# of the transfer section, or "" if either was not measured.
transfer_ratio() {
    local a=${TPS["transfer|$1|$3|$4"]:-} b=${TPS["transfer|$2|$3|$4"]:-}
    [ -n "$a" ] && [ -n "$b" ] || return 0
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
}

# target LABEL A B CLIENTS SYNC MIN -- one line: is A/B >= MIN in the cell?
# Reports only; a missed target never fails the run.
transfer_target() {
    local label=$1 r verdict
    r=$(transfer_ratio "$2" "$3" "$4" "$5")
    if [ -z "$r" ]; then
        verdict="not measured (needs clients=$4 and sync_commit=$5)"
    elif awk -v r="$r" -v m="$6" 'BEGIN { exit !(r >= m) }'; then
        verdict="**met** ($r)"
    else
        verdict="**MISSED** ($r)"
    fi
    echo "- $label: $verdict"
}

table_extra_transfer() {
    local clients sync
    echo "| clients | sync_commit | transfer/bare | transfer/plpgsql | hot/transfer | bare/plpgsql | transfer/plpgsql_checked | sql/bare | transfer/sql |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    for clients in $BENCH_CLIENTS; do
        for sync in $BENCH_SYNC; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$clients" "$sync" \
                "$(transfer_ratio transfer bare "$clients" "$sync")" \
                "$(transfer_ratio transfer plpgsql "$clients" "$sync")" \
                "$(transfer_ratio hot transfer "$clients" "$sync")" \
                "$(transfer_ratio bare plpgsql "$clients" "$sync")" \
                "$(transfer_ratio transfer plpgsql_checked "$clients" "$sync")" \
                "$(transfer_ratio sql bare "$clients" "$sync")" \
                "$(transfer_ratio transfer sql "$clients" "$sync")"
        done
    done
    echo
    echo "sql is the same writes as plpgsql sent by the client as separate"
    echo "statements in one transaction (sql_transfer.sql), a round trip each:"
    echo "the hand-written SQL transfer whose ratio to the bare INSERT the issue"
    echo "quotes (about 0.23x); for context only."
    echo
    echo "plpgsql is the issue's baseline: the writes only (an event row, two"
    echo "balance upserts, two entries), no checks.  plpgsql_checked adds, by hand,"
    echo "the rules ledger.transfer enforces (arguments, currency and scale,"
    echo "idempotency under a lock, open accounts, balance rows locked in order,"
    echo "flags); it is reported for context, and the targets below are measured"
    echo "against plpgsql.  bare/plpgsql is a ceiling for transfer/plpgsql: a"
    echo "transfer writes the bare row and more (two balance updates, two entries,"
    echo "checks and locks).  The machine has 2 cores shared by the server and"
    echo "pgbench: expect 10-30% run-to-run noise, most at 8 clients."
    echo
    echo "Targets (reported, never enforced):"
    echo
    transfer_target "transfer >= 0.5x bare, 8 clients, sync_commit=off" transfer bare 8 off 0.5
    transfer_target "transfer >= 2x plpgsql, 8 clients, sync_commit=off" transfer plpgsql 8 off 2
    transfer_target "hot >= 0.5x transfer, 8 clients, sync_commit=off" hot transfer 8 off 0.5
    transfer_target "hot >= 0.5x transfer, 8 clients, sync_commit=on" hot transfer 8 on 0.5
}

# ---------------------------------------------------------------------------
# Sections projections and snapshots
#
# Both build their own data set in a fresh database, BENCH_EVENTS events
# (default 1,000,000; e.g. BENCH_EVENTS=100000 for a quick try), and run
# every measurement of the section on it.  Timings (fills, rebuilds) are
# taken with psql's \timing, BENCH_REPS times in alternating order; pgbench
# runs use -M prepared, synchronous_commit=off, BENCH_SECONDS per run, and
# BENCH_REPS runs per workload in alternating order after a warm-up.  Each
# section prints Markdown tables and writes them to results/SECTION.md,
# with every target reported as met or missed (never enforced).
# ---------------------------------------------------------------------------
BENCH_EVENTS=${BENCH_EVENTS:-1000000}
BENCH_LOAD_JOBS=${BENCH_LOAD_JOBS:-2}       # parallel psql sessions loading events
BENCH_LOAD_CLIENTS=${BENCH_LOAD_CLIENTS:-4} # pgbench clients loading postings

declare -A PS_SUM=()    # "key" -> sum of the measured values
declare -A PS_N=()      # "key" -> number of measured values
declare -A PS_ALL=()    # "key" -> the individual values, as printed
PS_VAL=""               # value of the last ps_do_* call
PS_TPS=""               # TPS of the last ps_pgbench run
PS_XACTS=""             # transactions of the last ps_pgbench run
PS_OUT=""               # the section's Markdown, accumulated

ps_md() { PS_OUT+="$*"$'\n'; }

ps_record() {   # ps_record KEY VALUE [FORMAT]
    local key=$1 v=$2 fmt=${3:-%.0f}
    PS_SUM[$key]=$(awk -v a="${PS_SUM[$key]:-0}" -v b="$v" 'BEGIN { print a + b }')
    PS_N[$key]=$(( ${PS_N[$key]:-0} + 1 ))
    PS_ALL[$key]+="${PS_ALL[$key]:+ }$(printf "$fmt" "$v")"
}

ps_mean() { awk -v s="${PS_SUM[$1]}" -v n="${PS_N[$1]}" 'BEGIN { printf "%.6g", s / n }'; }

ps_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# ps_target LABEL VALUE OP LIMIT -- "- LABEL: **met** (VALUE)" or MISSED;
# OP is <= or >=.  Reports only.
ps_target() {
    local label=$1 v=$2 op=$3 lim=$4 ok
    ok=$(awk -v v="$v" -v l="$lim" -v op="$op" 'BEGIN { print (op == "<=" ? v <= l : v >= l) }')
    if [ "$ok" = 1 ]; then ps_md "- $label: **met** ($v)"; else ps_md "- $label: **MISSED** ($v)"; fi
}

psql_val() { psql_db -At "$@"; }

# ps_time SQL... -- run the statements in one psql session, each in its
# own transaction; sets PS_VAL to the sum of their \timing (ms) and
# PS_ROWS to what they returned (unaligned, one row per line).
ps_time() {
    local args=(-At -c '\timing on') s out
    for s in "$@"; do args+=(-c "$s"); done
    out=$(psql_db "${args[@]}" 2>&1) || { echo "$out" >&2; die "failed: $*"; }
    PS_VAL=$(awk '/^Time: / { s += $2 } END { printf "%.1f", s }' <<<"$out")
    PS_ROWS=$(grep -v -e '^Time: ' -e '^Timing is on' -e '^SET$' <<<"$out" || true)
}

# ps_pgbench NAME SCRIPT CLIENTS SECONDS [pgbench args...] -- like run_cell,
# with synchronous_commit=off and extra pgbench arguments (-D ...); sets
# PS_TPS and PS_XACTS.  Fails on any failed transaction.
ps_pgbench() {
    local name=$1 script=$2 clients=$3 secs=$4; shift 4
    local threads=$(( clients < 2 ? clients : 2 )) out failed
    if ! out=$(PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=off" \
               pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" \
                       -D n=0 "$@" -f "$BENCH_DIR/$script" "$DB" 2>&1); then
        echo "$out" >&2
        die "pgbench failed: $name ($script) clients=$clients"
    fi
    PS_TPS=$(awk '/^tps = / { print $3; exit }' <<<"$out")
    PS_XACTS=$(awk '/^number of transactions actually processed:/ { split($NF, a, "/"); print a[1]; exit }' <<<"$out")
    failed=$(awk '/^number of failed transactions:/ { print $5; exit }' <<<"$out")
    [ -n "$PS_TPS" ] || { echo "$out" >&2; die "no tps in pgbench output ($name)"; }
    if [ -n "$failed" ] && [ "$failed" != 0 ]; then
        echo "$out" >&2
        die "$failed failed transactions: $name clients=$clients"
    fi
}

# ps_alternate PREFIX NAME... -- BENCH_REPS rounds of ps_do_NAME for every
# NAME, in alternating order (A B C, then C B A, ...); each call sets
# PS_VAL, recorded under "PREFIX|NAME".
ps_alternate() {
    local prefix=$1; shift
    local names=("$@") n=$# rep i name
    for ((rep = 0; rep < BENCH_REPS; rep++)); do
        for ((i = 0; i < n; i++)); do
            if (( rep % 2 == 0 )); then name=${names[i]}; else name=${names[n - 1 - i]}; fi
            "ps_do_$name"
            log "$prefix: $name run $((rep + 1))/$BENCH_REPS: $PS_VAL"
            ps_record "$prefix|$name" "$PS_VAL"
        done
    done
}

ps_write_results() {   # ps_write_results SECTION -- PS_OUT to stdout and results/
    mkdir -p "$RESULTS_DIR"
    {
        echo "# ledger_cqrs benchmark: $1"
        echo
        echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by test/bench/run.sh $1 (BENCH_EVENTS=$BENCH_EVENTS)."
        echo
        echo "$PS_OUT"
    } >"$RESULTS_DIR/$1.md"
    echo
    echo "### $1"
    echo
    echo "$PS_OUT"
    log "wrote $RESULTS_DIR/$1.md"
}

ps_machine() {
    ps_md "Machine: $(machine_facts | sed "s/BENCH_SECONDS=/BENCH_EVENTS=$BENCH_EVENTS, BENCH_SECONDS=/")."
    ps_md "The machine has 2 cores and other test runs may share it: expect"
    ps_md "10-20% run-to-run noise, more on the multi-second timings."
}

# ---------------------------------------------------------------------------
# projections (issue 4): fill of a new projection, append TPS with inline
# projections, the async projector's throughput, point lookups.
#
# Data: BENCH_EVENTS 'Purchased' events ({"user": 1..1000, "amount": 0.00-
# 100.00, "memo": ...}, ~100 bytes of jsonb), appended by BENCH_LOAD_JOBS
# parallel sessions with ledger.append_events, 100 events per call.
# ---------------------------------------------------------------------------

# The projection measured everywhere: 1,000 keys, count, sum and max.
P_USER="SELECT (data->>'user')::int AS user_id, count(*) AS purchases,
       sum((data->>'amount')::numeric) AS total, max((data->>'amount')::numeric) AS biggest
  FROM ledger.events WHERE type = 'Purchased' GROUP BY 1"
# Four more, for the append cost of 5 inline projections: per stream (one
# row per stream), per user bucket (100 rows), per (stream, user) (about a
# new row per event), per (memo, user) (1,000 rows).
P_MORE=(
"SELECT stream, count(*) AS purchases, sum((data->>'amount')::numeric) AS total,
       max(position) AS last_position
  FROM ledger.events WHERE type = 'Purchased' GROUP BY stream"
"SELECT (data->>'user')::int % 100 AS bucket, count(*) AS purchases,
       sum((data->>'amount')::numeric) AS total, min((data->>'amount')::numeric) AS smallest
  FROM ledger.events WHERE type = 'Purchased' GROUP BY 1"
"SELECT stream, (data->>'user')::int AS user_id, count(*) AS purchases,
       sum((data->>'amount')::numeric) AS total, max(position) AS last_position
  FROM ledger.events WHERE type = 'Purchased' GROUP BY 1, 2"
"SELECT data->>'memo' AS memo, (data->>'user')::int AS user_id, count(*) AS purchases,
       sum((data->>'amount')::numeric) AS total, max((data->>'amount')::numeric) AS biggest
  FROM ledger.events WHERE type = 'Purchased' GROUP BY 1, 2"
)
SYNC_FILL="SET ledger_cqrs.fill_sync_limit = 2147483647"

# ps_load_purchases N TAG -- append N 'Purchased' events (N/100 calls of
# ledger.append_events) from BENCH_LOAD_JOBS parallel sessions.
ps_load_purchases() {
    local n=$1 tag=$2 calls j per pids=() rc=0
    calls=$(( (n + 99) / 100 ))
    for ((j = 0; j < BENCH_LOAD_JOBS; j++)); do
        per=$(( calls / BENCH_LOAD_JOBS + (j < calls % BENCH_LOAD_JOBS ? 1 : 0) ))
        (( per > 0 )) || continue
        psql_db -c "CALL bench.load_purchases('$tag$j', $per)" &
        pids+=($!)
    done
    for j in "${pids[@]}"; do wait "$j" || rc=1; done
    (( rc == 0 )) || die "loading events failed"
}

# projection count/sum check: the projection saw every Purchased event
ps_check_user_projection() {
    local table=$1 got
    got=$(psql_val -c "SELECT (SELECT sum(purchases) FROM $table)
                              = (SELECT count(*) FROM ledger.events WHERE type = 'Purchased')
                          AND (SELECT count(*) FROM $table) = 1000")
    [ "$got" = t ] || die "projections: $table does not hold the fold of the log"
}

ps_drop_projection() {   # drop a projection and forget its snapshots
    psql_db -c "SELECT ledger.drop_projection('$1')" \
            -c "DELETE FROM ledger.projection_snapshots WHERE name = '$1'" >/dev/null
}

# Fill workloads; each sets PS_VAL to the timed statements' ms.
ps_do_seqscan() {
    ps_time "SET max_parallel_workers_per_gather = 0" "SELECT count(*) FROM ledger.events"
}
ps_do_ctas() {
    ps_time "SET max_parallel_workers_per_gather = 0" "CREATE TABLE bench.ctas_user AS $P_USER"
    psql_db -c "DROP TABLE bench.ctas_user"
}
ps_do_ctas_parallel() {
    ps_time "CREATE TABLE bench.ctas_user AS $P_USER"
    psql_db -c "DROP TABLE bench.ctas_user"
}
ps_do_fill_sync() {
    ps_time "$SYNC_FILL" "SELECT ledger.create_projection('bench.p_fill', \$q\$$P_USER\$q\$)"
    [ "$(psql_val -c "SELECT state FROM ledger.projection_status WHERE name = 'bench.p_fill'")" = live ] \
        || die "projections: the synchronous fill did not leave bench.p_fill live"
    ps_check_user_projection bench.p_fill
    ps_drop_projection bench.p_fill
}
ps_do_fill_batched() {
    ps_time "SET ledger_cqrs.fill_sync_limit = 0" \
            "SELECT ledger.create_projection('bench.p_fill', \$q\$$P_USER\$q\$)" \
            "CALL ledger.wait_for_projection('bench.p_fill')"
    ps_check_user_projection bench.p_fill
    psql_db -c "SELECT ledger.stop_projector()" >/dev/null
    ps_drop_projection bench.p_fill
}

# Lookup workloads (PS_CLIENTS clients).
ps_do_lookup_plain() {
    ps_pgbench plain plain_lookup.sql "$PS_CLIENTS" "$BENCH_SECONDS"; PS_VAL=$PS_TPS
}
ps_do_lookup_projection() {
    ps_pgbench projection proj_lookup.sql "$PS_CLIENTS" "$BENCH_SECONDS"; PS_VAL=$PS_TPS
}

# ps_inline_count K -- make bench.p1..bench.pK the inline projections
# (p1 is P_USER, p2..p5 P_MORE), creating or dropping as needed.
PS_INLINE=0
ps_inline_count() {
    local k=$1 i q
    while (( PS_INLINE < k )); do
        i=$(( PS_INLINE + 1 ))
        if (( i == 1 )); then q=$P_USER; else q=${P_MORE[i - 2]}; fi
        log "projections: creating inline projection bench.p$i"
        psql_db -c "$SYNC_FILL" -c "SELECT ledger.create_projection('bench.p$i', \$q\$$q\$q\$)" >/dev/null
        PS_INLINE=$i
    done
    while (( PS_INLINE > k )); do
        ps_drop_projection "bench.p$PS_INLINE"
        PS_INLINE=$(( PS_INLINE - 1 ))
    done
}

# One pgbench run of purchase.sql; checks that every transaction appended
# one Purchased event.
ps_append_run() {   # ps_append_run CLIENTS SECONDS
    local mark rows
    mark=$(psql_val -c "SELECT coalesce(max(position), 0) FROM ledger.events")
    ps_pgbench append purchase.sql "$1" "$2"
    rows=$(psql_val -c "SELECT count(*) FROM ledger.events WHERE position > $mark AND type = 'Purchased'")
    [ "$rows" = "$PS_XACTS" ] || die "projections: pgbench reports $PS_XACTS transactions but $rows events were appended"
}

section_projections() {
    local n=$BENCH_EVENTS backlog=$(( BENCH_EVENTS / 5 )) t0 t1 ms clients rep i k
    local -a order
    PS_OUT=""
    setup_db
    psql_db -f "$BENCH_DIR/projections_setup.sql" >/dev/null

    log "projections: loading $n events ($BENCH_LOAD_JOBS sessions, ledger.append_events x 100)"
    t0=$(date +%s%N)
    ps_load_purchases "$n" load
    t1=$(date +%s%N)
    maintenance
    local load_s size
    load_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    size=$(psql_val -c "SELECT pg_size_pretty(pg_total_relation_size('ledger.events'))")
    log "projections: loaded in ${load_s}s ($size)"

    # --- 1. fill ----------------------------------------------------------
    psql_db -c "SELECT ledger.stop_projector()" -c "SELECT count(*) FROM ledger.events" >/dev/null   # warm the cache
    ps_alternate fill seqscan ctas ctas_parallel fill_sync fill_batched
    local ctas ctas_par
    ctas=$(ps_mean fill\|ctas); ctas_par=$(ps_mean fill\|ctas_parallel)
    ps_md "Log: $(psql_val -c "SELECT to_char(count(*), 'FM9,999,999,999') FROM ledger.events") events ('Purchased', ~100-byte jsonb bodies, users 1..1000), $size with indexes; loaded in ${load_s} s by $BENCH_LOAD_JOBS sessions calling ledger.append_events with 100 events per call ($(awk -v n="$n" -v s="$load_s" 'BEGIN { printf "%.0f", n / s }') events/s)."
    ps_md ""
    ps_md "**Fill** of a new projection: \`$(tr -s ' \n' ' ' <<<"$P_USER")\` (1,000 rows)."
    ps_md ""
    ps_md "| workload | ms | ratio vs CTAS | ratio vs parallel CTAS | runs (ms) |"
    ps_md "|---|---:|---:|---:|---|"
    local w label
    for w in seqscan ctas ctas_parallel fill_sync fill_batched; do
        case $w in
            seqscan) label="\`SELECT count(*) FROM ledger.events\` (serial)" ;;
            ctas) label="CREATE TABLE AS, serial (max_parallel_workers_per_gather = 0)" ;;
            ctas_parallel) label="CREATE TABLE AS, default settings (parallel)" ;;
            fill_sync) label="create_projection, one go (fill_sync_limit above the log)" ;;
            fill_batched) label="create_projection + CALL wait_for_projection (fill_sync_limit = 0, fill_batch_size 10000; the projector it starts helps)" ;;
        esac
        ps_md "| $label | $(printf '%.0f' "$(ps_mean "fill|$w")") | $(ps_ratio "$(ps_mean "fill|$w")" "$ctas") | $(ps_ratio "$(ps_mean "fill|$w")" "$ctas_par") | ${PS_ALL[fill|$w]} |"
    done
    ps_md ""
    ps_md "Targets (reported, never enforced):"
    ps_md ""
    ps_target "fill (one go) <= 1.2x CREATE TABLE AS (serial)" "$(ps_ratio "$(ps_mean fill\|fill_sync)" "$ctas")" "<=" 1.2
    ps_target "fill (one go) <= 1.2x CREATE TABLE AS (parallel)" "$(ps_ratio "$(ps_mean fill\|fill_sync)" "$ctas_par")" "<=" 1.2
    ps_target "fill (batched) <= 1.2x CREATE TABLE AS (serial)" "$(ps_ratio "$(ps_mean fill\|fill_batched)" "$ctas")" "<=" 1.2

    # --- 2. point lookups ---------------------------------------------------
    log "projections: lookups (bench.p_user vs bench.plain_user)"
    psql_db -c "$SYNC_FILL" -c "SELECT ledger.create_projection('bench.p_user', \$q\$$P_USER\$q\$)" \
            -c "CREATE TABLE bench.plain_user AS SELECT * FROM bench.p_user" \
            -c "ALTER TABLE bench.plain_user ADD PRIMARY KEY (user_id)" >/dev/null
    for clients in $BENCH_CLIENTS; do
        maintenance
        PS_CLIENTS=$clients
        ps_pgbench warm-up plain_lookup.sql "$clients" "$BENCH_WARMUP"
        ps_pgbench warm-up proj_lookup.sql "$clients" "$BENCH_WARMUP"
        ps_alternate "lookup c=$clients" lookup_plain lookup_projection
    done
    ps_drop_projection bench.p_user
    psql_db -c "DROP TABLE bench.plain_user"

    ps_md ""
    ps_md "**Point lookups**: pgbench \`SELECT * FROM bench.p_user WHERE user_id = :k\` (k random in 1..1000) against the same on bench.plain_user, a plain copy (CREATE TABLE AS SELECT * + PRIMARY KEY); -M prepared."
    ps_md ""
    ps_md "| clients | plain TPS | projection TPS | projection / plain | runs plain | runs projection |"
    ps_md "|---:|---:|---:|---:|---|---|"
    for clients in $BENCH_CLIENTS; do
        ps_md "| $clients | $(printf '%.0f' "$(ps_mean "lookup c=$clients|lookup_plain")") | $(printf '%.0f' "$(ps_mean "lookup c=$clients|lookup_projection")") | $(ps_ratio "$(ps_mean "lookup c=$clients|lookup_projection")" "$(ps_mean "lookup c=$clients|lookup_plain")") | ${PS_ALL[lookup c=$clients|lookup_plain]} | ${PS_ALL[lookup c=$clients|lookup_projection]} |"
    done
    ps_md ""
    for clients in $BENCH_CLIENTS; do
        ps_target "lookup on the projection >= 0.91x plain TPS (<= 1.1x the time), $clients client(s)" \
            "$(ps_ratio "$(ps_mean "lookup c=$clients|lookup_projection")" "$(ps_mean "lookup c=$clients|lookup_plain")")" ">=" 0.91
    done

    # --- 3. the async projector ---------------------------------------------
    local maxc=1 e0 e1 lag1 live_tps live_s rate drain_s end_ts
    for clients in $BENCH_CLIENTS; do (( clients > maxc )) && maxc=$clients; done
    log "projections: async projector, live ($maxc clients appending for ${BENCH_SECONDS}s)"
    psql_db -c "SELECT ledger.stop_projector()" -c "$SYNC_FILL" \
            -c "SELECT ledger.create_projection('bench.p_async', \$q\$$P_USER\$q\$, 'async')" >/dev/null
    maintenance
    psql_db -c "SELECT ledger.start_projector()" >/dev/null
    e0=$(psql_val -c "SELECT events_applied FROM ledger.projections WHERE name = 'bench.p_async'")
    t0=$(date +%s%N)
    ps_append_run "$maxc" "$BENCH_SECONDS"
    t1=$(date +%s%N)
    live_tps=$PS_TPS
    read -r e1 lag1 < <(psql_val -F ' ' -c "SELECT p.events_applied, s.lag_events FROM ledger.projections p
                                              JOIN ledger.projection_status s USING (name) WHERE name = 'bench.p_async'")
    live_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')
    rate=$(awk -v a="$e0" -v b="$e1" -v s="$live_s" 'BEGIN { printf "%.0f", (b - a) / s }')
    end_ts=$(psql_val -c "SELECT extract(epoch FROM bench.wait_applied('bench.p_async', $e0 + $PS_XACTS))")
    drain_s=$(awk -v a="$t1" -v b="$end_ts" 'BEGIN { printf "%.2f", b - a / 1e9 }')
    [ "$(psql_val -c "SELECT lag_events FROM ledger.projection_status WHERE name = 'bench.p_async'")" = 0 ] \
        || die "projections: bench.p_async still lags after catching up"

    log "projections: async projector, draining a backlog of $backlog events"
    local b0 b_start b_end b_s b_rate
    psql_db -c "SELECT ledger.stop_projector()" >/dev/null
    b0=$(psql_val -c "SELECT events_applied FROM ledger.projections WHERE name = 'bench.p_async'")
    ps_load_purchases "$backlog" backlog
    maintenance
    local backlog_lag
    backlog_lag=$(psql_val -c "SELECT lag_events FROM ledger.projection_status WHERE name = 'bench.p_async'")
    b_start=$(psql_val -c "SELECT extract(epoch FROM clock_timestamp()) FROM ledger.start_projector()")
    b_end=$(psql_val -c "SELECT extract(epoch FROM bench.wait_applied('bench.p_async', $b0 + $backlog_lag))")
    b_s=$(awk -v a="$b_start" -v b="$b_end" 'BEGIN { printf "%.2f", b - a }')
    b_rate=$(awk -v n="$backlog_lag" -v s="$b_s" 'BEGIN { printf "%.0f", n / s }')
    [ "$(psql_val -c "SELECT lag_events FROM ledger.projection_status WHERE name = 'bench.p_async'")" = 0 ] \
        || die "projections: bench.p_async still lags after the backlog"
    ps_check_user_projection bench.p_async
    psql_db -c "SELECT ledger.stop_projector()" >/dev/null
    ps_drop_projection bench.p_async

    ps_md ""
    ps_md "**Async projector** (bench.p_async: the same query, mode async; the projector's default fill_batch_size 10000 and naptime)."
    ps_md ""
    ps_md "| measurement | value |"
    ps_md "|---|---:|"
    ps_md "| append TPS, $maxc clients, for ${BENCH_SECONDS} s, projector running | $(printf '%.0f' "$live_tps") |"
    ps_md "| events applied by the projector per second meanwhile | $rate |"
    ps_md "| lag when the appends stopped (events) | $lag1 |"
    ps_md "| time from then until lag 0 (s) | $drain_s |"
    ps_md "| backlog built with the projector stopped (events) | $backlog_lag |"
    ps_md "| time from start_projector() until lag 0 (s) | $b_s |"
    ps_md "| projector throughput draining the backlog (events/s) | $b_rate |"

    # --- 4. append TPS with 0, 1, 5 inline projections ---------------------
    # The state (how many projections) is the workload, so the loop nests
    # the other way round: for each rep, the states in alternating order
    # (0 1 5, then 5 1 0), and every client count in each state.
    log "projections: append TPS with 0, 1 and 5 inline projections"
    psql_db -c "SELECT ledger.stop_projector()" >/dev/null
    PS_INLINE=0
    for ((rep = 0; rep < BENCH_REPS; rep++)); do
        if (( rep % 2 == 0 )); then order=(0 1 5); else order=(5 1 0); fi
        for k in "${order[@]}"; do
            ps_inline_count "$k"
            for clients in $BENCH_CLIENTS; do
                maintenance
                ps_pgbench warm-up purchase.sql "$clients" "$BENCH_WARMUP"
                ps_append_run "$clients" "$BENCH_SECONDS"
                log "projections: append, $k inline, $clients clients, run $((rep + 1))/$BENCH_REPS: $PS_TPS tps"
                ps_record "append c=$clients|$k" "$PS_TPS"
            done
        done
        if (( rep == 0 )); then
            [ "$(psql_val -c "SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status WHERE kind = 'user'")" = t ] \
                || die "projections: an inline projection differs from the log"
            log "projections: the 5 inline projections verify against the log"
        fi
    done
    ps_inline_count 0

    ps_md ""
    ps_md "**Append TPS** with 0, 1 and 5 inline projections of the appended type: pgbench \`SELECT ledger.append('shop:' || :sid, 'Purchased', jsonb_build_object(...))\` (purchase.sql), -M prepared, synchronous_commit=off.  1 projection: bench.p1 = the query above (1,000 rows); 5: plus per stream, per user bucket (100 rows), per (stream, user), per (memo, user).  The log grows by every run (about $(psql_val -c "SELECT round(count(*) / 1e6, 1) FROM ledger.events")M events at the end)."
    ps_md ""
    ps_md "| clients | inline projections | TPS | ratio vs 0 | runs |"
    ps_md "|---:|---:|---:|---:|---|"
    for clients in $BENCH_CLIENTS; do
        for k in 0 1 5; do
            ps_md "| $clients | $k | $(printf '%.0f' "$(ps_mean "append c=$clients|$k")") | $(ps_ratio "$(ps_mean "append c=$clients|$k")" "$(ps_mean "append c=$clients|0")") | ${PS_ALL[append c=$clients|$k]} |"
        done
    done
    ps_md ""
    ps_machine
    ps_write_results projections
}

# ---------------------------------------------------------------------------
# snapshots (issue 5): balance_at on a long and a short history; rebuild of
# a projection from a snapshot at 90% of the log against from scratch.
#
# Data: BENCH_EVENTS postings onto one account ('hot'), each through
# ledger.transfer from one of f1..f1000 in turn (BENCH_LOAD_CLIENTS pgbench
# clients), so 'hot' has BENCH_EVENTS postings and each f account
# BENCH_EVENTS / 1000, spread over the whole log.  The projection bench.legs
# (per account: legs, amount moved, last position) is created when 90% of
# the postings are in, and snapshotted there with ledger.snapshot_projection.
# ---------------------------------------------------------------------------

P_LEGS="SELECT l->>'account' AS account, count(*) AS legs, sum((l->>'amount')::numeric) AS moved,
       max(e.position) AS last_position
  FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') AS l
 WHERE e.type = 'TransferPosted' GROUP BY 1"

ps_load_postings() {   # ps_load_postings COUNT OFFSET PER_CLIENT
    local c=$BENCH_LOAD_CLIENTS out
    log "snapshots: posting $1 transfers onto 'hot' ($c clients; progress every 10 s)"
    if ! out=$(PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=off" \
               pgbench -n -M prepared -c "$c" -j 2 -t $(( $1 / c )) -P 10 \
                       -D n=0 -D off="$2" -D per="$3" -f "$BENCH_DIR/hot_load.sql" "$DB"); then
        echo "$out" >&2
        die "loading postings failed"
    fi
    awk '/^tps = / { printf "%.0f", $3; exit }' <<<"$out"
}

# balance_at workloads: ps_do_<method>_<which> with which = big | small
for _m in pos ts naive; do
    for _w in big small; do
        eval "ps_do_${_m}_${_w}() { ps_balance_run $_m $_w; }"
    done
done
unset _m _w
declare -A PS_ACCT=()   # which -> "account lo hi tlo thi"
ps_balance_run() {   # ps_balance_run METHOD WHICH [SECONDS]
    local script a lo hi tlo thi secs=${3:-$BENCH_SECONDS}
    case $1 in pos) script=balance_at_pos.sql ;; ts) script=balance_at_ts.sql ;; naive) script=balance_naive.sql ;; esac
    read -r a lo hi tlo thi <<<"${PS_ACCT[$2]}"
    ps_pgbench "$1 $a" "$script" 1 "$secs" -D acct="$a" -D lo="$lo" -D hi="$hi" -D tlo="$tlo" -D thi="$thi"
    PS_VAL=$PS_TPS
}

# Rebuild workloads: from the snapshot at 90%, and from scratch.
ps_do_rebuild_snapshot() {
    psql_db -c "DELETE FROM ledger.projection_snapshots WHERE name = 'bench.legs'" \
            -c "INSERT INTO ledger.projection_snapshots SELECT * FROM bench.saved_snapshot" >/dev/null
    ps_time "SELECT ledger.rebuild_projection('bench.legs')"
    PS_REPLAYED[snapshot]=$PS_ROWS
}
ps_do_rebuild_scratch() {
    psql_db -c "DELETE FROM ledger.projection_snapshots WHERE name = 'bench.legs'" >/dev/null
    ps_time "SELECT ledger.rebuild_projection('bench.legs')"
    PS_REPLAYED[scratch]=$PS_ROWS
}
declare -A PS_REPLAYED=()

section_snapshots() {
    local n=$BENCH_EVENTS c=$BENCH_LOAD_CLIENTS per first second tps1 tps2 snap_pos w
    PS_OUT=""
    setup_db
    psql_db -f "$BENCH_DIR/snapshots_setup.sql" >/dev/null
    per=$(( n / c ))
    first=$(( per * 9 / 10 ))
    second=$(( per - first ))
    tps1=$(ps_load_postings $(( first * c )) 0 "$per")
    log "snapshots: creating bench.legs and snapshotting it at $(psql_val -c "SELECT count(*) FROM ledger.events") events"
    psql_db -c "$SYNC_FILL" -c "SELECT ledger.create_projection('bench.legs', \$q\$$P_LEGS\$q\$)" >/dev/null
    snap_pos=$(psql_val -c "SELECT ledger.snapshot_projection('bench.legs')")
    local snap_events
    snap_events=$(psql_val -c "SELECT count(*) FROM ledger.events WHERE position <= $snap_pos")
    tps2=$(ps_load_postings $(( second * c )) "$first" "$per")
    psql_db -c "CREATE TABLE bench.saved_snapshot AS SELECT * FROM ledger.projection_snapshots
                 WHERE name = 'bench.legs' AND checkpoint_position = $snap_pos" >/dev/null
    [ "$(psql_val -c "SELECT count(*) FROM bench.saved_snapshot")" = 1 ] || die "snapshots: no snapshot at $snap_pos"
    maintenance

    # the accounts and the middle half of their histories
    for w in big small; do
        local a=hot
        [ $w = small ] && a=f1
        PS_ACCT[$w]=$(psql_val -F ' ' -c "
            WITH h AS (SELECT position, recorded_at, row_number() OVER (ORDER BY position) AS i,
                              count(*) OVER () AS n
                         FROM ledger.account_entries WHERE account = '$a' AND currency = 'USD')
            SELECT '$a', min(position) FILTER (WHERE i = n / 4 + 1), max(position) FILTER (WHERE i = 3 * n / 4),
                   (extract(epoch FROM min(recorded_at) FILTER (WHERE i = n / 4 + 1)) * 1e6)::bigint,
                   (extract(epoch FROM max(recorded_at) FILTER (WHERE i = 3 * n / 4)) * 1e6)::bigint
              FROM h")
        log "snapshots: $w = ${PS_ACCT[$w]}"
    done
    local big_n small_n
    big_n=$(psql_val -c "SELECT postings FROM ledger.balances WHERE account = 'hot' AND currency = 'USD'")
    small_n=$(psql_val -c "SELECT postings FROM ledger.balances WHERE account = 'f1' AND currency = 'USD'")
    # exactness at the bounds: balance_at agrees with the naive sum
    [ "$(psql_val -c "
        SELECT bool_and(ledger.balance_at(a, 'USD', p) =
                        (SELECT sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
                           FROM ledger.account_entries WHERE account = a AND currency = 'USD' AND position <= p))
          FROM (VALUES ('hot', $(cut -d' ' -f2 <<<"${PS_ACCT[big]}")::bigint), ('hot', $(cut -d' ' -f3 <<<"${PS_ACCT[big]}")),
                       ('f1', $(cut -d' ' -f2 <<<"${PS_ACCT[small]}")), ('f1', $(cut -d' ' -f3 <<<"${PS_ACCT[small]}"))) v(a, p)")" = t ] \
        || die "snapshots: balance_at differs from the sum of the entries"

    log "snapshots: balance_at (1 client, ${BENCH_SECONDS}s per run)"
    for w in pos_big pos_small ts_big ts_small naive_big naive_small; do
        ps_balance_run "${w%_*}" "${w#*_}" "$BENCH_WARMUP"
    done
    ps_alternate balance pos_big pos_small ts_big ts_small naive_big naive_small

    log "snapshots: rebuild of bench.legs"
    ps_do_rebuild_scratch; ps_do_rebuild_snapshot    # warm-up
    ps_alternate rebuild rebuild_snapshot rebuild_scratch
    [ "$(psql_val -c "SELECT ledger.verify_projection('bench.legs')")" = t ] \
        || die "snapshots: bench.legs differs from the log after the rebuilds"

    local fmt_n
    fmt_n=$(psql_val -c "SELECT to_char(count(*), 'FM9,999,999,999') FROM ledger.events")
    ps_md "Log: $fmt_n events: $big_n transfers onto 'hot' through ledger.transfer, each from one of f1..f1000 in turn ($c pgbench clients, $tps1 TPS for the first 90%, $tps2 TPS for the rest with the inline projection bench.legs), and the setup. snapshot_interval = $(psql_val -c "LOAD 'ledger_cqrs'" -c "SHOW ledger_cqrs.snapshot_interval")."
    ps_md ""
    ps_md "**balance_at** at a random point of the middle half of each history (by position, and by the append time of that stretch), pgbench -M prepared, 1 client; the naive sum of every entry up to the point for contrast."
    ps_md ""
    ps_md "| method | account (postings) | TPS | ms per call | ratio vs $small_n postings (time) | runs (TPS) |"
    ps_md "|---|---|---:|---:|---:|---|"
    local m label t tb
    for m in pos ts naive; do
        case $m in
            pos) label="balance_at(account, currency, position)" ;;
            ts) label="balance_at(account, currency, timestamptz)" ;;
            naive) label="naive sum(...) WHERE position <= p" ;;
        esac
        for w in small big; do
            t=$(ps_mean "balance|${m}_$w"); tb=$(ps_mean "balance|${m}_small")
            ps_md "| $label | $( [ $w = big ] && echo "hot ($big_n)" || echo "f1 ($small_n)") | $(printf '%.0f' "$t") | $(awk -v t="$t" 'BEGIN { printf "%.3f", 1000 / t }') | $(ps_ratio "$tb" "$t") | ${PS_ALL[balance|${m}_$w]} |"
        done
    done
    ps_md ""
    ps_md "**Rebuild** of bench.legs (\`$(tr -s ' \n' ' ' <<<"$P_LEGS")\`, inline, $(psql_val -c "SELECT count(*) FROM bench.legs") rows): from its snapshot taken at $snap_events events (ledger.snapshot_projection), and from scratch (the projection's snapshots deleted first)."
    ps_md ""
    ps_md "| rebuild | events replayed | ms | ratio vs scratch | runs (ms) |"
    ps_md "|---|---:|---:|---:|---|"
    local scratch
    scratch=$(ps_mean rebuild\|rebuild_scratch)
    for w in rebuild_scratch rebuild_snapshot; do
        ps_md "| ${w#rebuild_} | ${PS_REPLAYED[${w#rebuild_}]} | $(printf '%.0f' "$(ps_mean "rebuild|$w")") | $(ps_ratio "$(ps_mean "rebuild|$w")" "$scratch") | ${PS_ALL[rebuild|$w]} |"
    done
    ps_md ""
    ps_md "Targets (reported, never enforced):"
    ps_md ""
    ps_target "balance_at by position: $big_n vs $small_n postings <= 2x the time" \
        "$(ps_ratio "$(ps_mean balance\|pos_small)" "$(ps_mean balance\|pos_big)")" "<=" 2
    ps_target "balance_at by time: $big_n vs $small_n postings <= 2x the time" \
        "$(ps_ratio "$(ps_mean balance\|ts_small)" "$(ps_mean balance\|ts_big)")" "<=" 2
    ps_target "rebuild from a snapshot at 90% <= 0.2x from scratch" \
        "$(ps_ratio "$(ps_mean rebuild\|rebuild_snapshot)" "$scratch")" "<=" 0.2
    ps_md ""
    ps_machine
    ps_write_results snapshots
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
selected=("$@")
[ ${#selected[@]} -gt 0 ] && [ "${selected[0]}" != all ] || selected=("${SECTIONS[@]}")
for s in "${selected[@]}"; do
    declare -F "section_$s" >/dev/null || die "unknown section '$s' (have: ${SECTIONS[*]})"
done

command -v pgbench >/dev/null || die "pgbench not found in PATH"
log "sections: ${selected[*]}; clients: $BENCH_CLIENTS; synchronous_commit: $BENCH_SYNC; ${BENCH_SECONDS}s x $BENCH_REPS runs"
setup_db
got=$(PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=off" psql -X -At -d "$DB" -c "SHOW synchronous_commit")
[ "$got" = off ] || die "PGOPTIONS did not set synchronous_commit (got '$got')"

for s in "${selected[@]}"; do
    "section_$s"
done
