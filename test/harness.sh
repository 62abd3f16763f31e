#!/usr/bin/env bash
# ---------------------------------------------------------------------------
#  ledger_cqrs build/test harness
#
#  usage: bash test/harness.sh test|demo|bench|sanitize
#         (normally via `make test`, `make demo`, `make bench`, `make sanitize`)
#
#  From a bare Debian 12 machine (as root) or a prepared developer box
#  (as a normal user) this:
#    1. installs PostgreSQL 15 + PGXS + IPC::Run + gcc/make if missing (root only)
#    2. builds and installs the extension with PGXS
#    3. starts a throwaway cluster in /tmp/ledger_cqrs.XXXXXX (own socket dir
#       and port, never touches the Debian "15 main" cluster)
#    4. test:  pg_regress, pg_isolation_regress, prove (TAP) and the fuzzer
#              (test/fuzz), then prints per-suite counts; the very last line
#              is `total: N passed, M failed`
#       demo:  runs test/demo/demo.sql in database ledger_demo
#       bench: runs test/bench/run.sh against the cluster
#       sanitize: hands over to test/sanitize.sh (its own build and cluster)
#    5. stops the cluster; removes the temp dir on success, keeps it on failure
#
#  Exit status: 0 if everything passed, non-zero otherwise.
# ---------------------------------------------------------------------------
set -euo pipefail

MODE=${1:-}
case "$MODE" in
    test|demo|bench|sanitize) ;;
    *) echo "usage: bash test/harness.sh test|demo|bench|sanitize" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PGBIN/pg_config
PGXS=/usr/lib/postgresql/15/lib/pgxs
PG_REGRESS=$PGXS/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS/src/test/isolation/pg_isolation_regress

if [ "$(id -u)" -eq 0 ]; then IS_ROOT=1; else IS_ROOT=0; fi

say()  { echo "== harness: $*"; }
die()  { echo "== harness: ERROR: $*" >&2; exit 1; }

echo "=================================================================="
echo " ledger_cqrs harness  mode=$MODE  root=$ROOT  user=$(id -un)"
echo "=================================================================="

if [ "$MODE" = sanitize ]; then
    # ASan/UBSan build of the extension, the regress suite on its own
    # throwaway cluster, then the normal build reinstalled: test/sanitize.sh.
    exec bash "$ROOT/test/sanitize.sh"
fi

# demo/bench scripts are written separately; fail before doing any work.
DEMO=$ROOT/test/demo/demo.sql
BENCH=$ROOT/test/bench/run.sh
[ "$MODE" != demo ]  || [ -f "$DEMO" ]  || die "demo script $DEMO does not exist (yet)"
[ "$MODE" != bench ] || [ -f "$BENCH" ] || die "bench script $BENCH does not exist (yet)"

# ---------------------------------------------------------------------------
# Cleanup state. The EXIT trap is installed early so that a failure at any
# point (even during apt-get) restores the system and reports what it can.
# ---------------------------------------------------------------------------
TMP=""              # throwaway directory (cluster, outputs, logs)
CLUSTER_UP=0        # 1 while our postmaster may be running
FINISHED=0          # 1 once finish() has run (so the trap does nothing)
POLICY_RC_CREATED=0 # 1 if we created /usr/sbin/policy-rc.d ourselves
SUMMARY_PRINTED=0   # test mode: 1 once the final total line was printed

# Run a command as the cluster owner: the `postgres` OS user when we are root
# (initdb/postgres/TAP refuse to run as root), otherwise the invoking user.
as_pg() {
    if [ "$IS_ROOT" -eq 1 ]; then
        runuser -u postgres -- env PATH="$PATH" "$@"
    else
        "$@"
    fi
}

# Stop the cluster, report on failure, remove/keep TMP. Idempotent; prints
# nothing after itself so that test mode can print the total line last.
finish() {
    local rc=$1
    [ "$FINISHED" -eq 1 ] && return 0
    FINISHED=1
    if [ "$POLICY_RC_CREATED" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=0
    fi
    if [ "$CLUSTER_UP" -eq 1 ]; then
        as_pg "$PGBIN/pg_ctl" stop -D "$TMP/data" -m fast -w -t 60 >/dev/null 2>&1 \
            || as_pg "$PGBIN/pg_ctl" stop -D "$TMP/data" -m immediate -w -t 60 >/dev/null 2>&1 \
            || echo "== harness: WARNING: could not stop the cluster in $TMP/data" >&2
        CLUSTER_UP=0
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$rc" -ne 0 ]; then
            if [ -f "$TMP/server.log" ]; then
                echo "------------------ tail of $TMP/server.log ------------------"
                tail -n 60 "$TMP/server.log" || true
                echo "-------------------------------------------------------------"
                # Backend crashes / assertion failures scroll out of the tail.
                if grep -nE 'terminated by signal|PANIC:|TRAP:' "$TMP/server.log"; then
                    echo "^^^ crash lines found in $TMP/server.log"
                fi
            fi
            say "run FAILED; kept the temp dir for inspection: $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
}

# shellcheck disable=SC2317  # invoked via trap
on_exit() {
    local rc=$?
    trap - EXIT
    finish "$rc"
    # In test mode the last line must always be the grand total, even if the
    # harness itself died (deps, build, cluster start) before any suite ran.
    if [ "$MODE" = test ] && [ "$SUMMARY_PRINTED" -eq 0 ]; then
        [ "$rc" -eq 0 ] && rc=1
        echo "harness: aborted before all suites ran (exit $rc)"
        echo "total: ${TOTAL_PASS:-0} passed, $(( ${TOTAL_FAIL:-0} + 1 )) failed"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# 1. Dependencies
# ---------------------------------------------------------------------------
missing_deps() {
    local m=()
    [ -x "$PGBIN/postgres" ]                   || m+=("postgres")
    [ -f "$PGXS/src/makefiles/pgxs.mk" ]       || m+=("pgxs")
    perl -MIPC::Run -e1 >/dev/null 2>&1        || m+=("IPC::Run")
    command -v prove >/dev/null 2>&1           || m+=("prove")
    command -v gcc >/dev/null 2>&1             || m+=("gcc")
    command -v make >/dev/null 2>&1            || m+=("make")
    echo "${m[*]:-}"
}

MISSING=$(missing_deps)
if [ -n "$MISSING" ]; then
    [ "$IS_ROOT" -eq 1 ] || die "missing dependencies ($MISSING); as root run:
    apt-get install postgresql-15 postgresql-server-dev-15 libipc-run-perl make gcc"
    say "installing dependencies (missing: $MISSING)"
    # Keep package postinst scripts from starting the Debian "15 main"
    # cluster (standard Docker trick; removed again right after / on exit).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    APTLOG=$(mktemp /tmp/ledger_cqrs_apt.XXXXXX)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >"$APTLOG" 2>&1 \
        || { tail -n 40 "$APTLOG" >&2; die "apt-get update failed (log: $APTLOG)"; }
    if ! apt-get install -y --no-install-recommends \
            postgresql-15 postgresql-server-dev-15 libipc-run-perl make gcc \
            >>"$APTLOG" 2>&1; then
        # A failing service start in a postinst must not stop us: finish
        # configuring and then judge by whether the files are really there.
        say "apt-get install reported an error; trying dpkg --configure -a"
        dpkg --configure -a >>"$APTLOG" 2>&1 || true
    fi
    if [ "$POLICY_RC_CREATED" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=0
    fi
    MISSING=$(missing_deps)
    if [ -n "$MISSING" ]; then
        tail -n 40 "$APTLOG" >&2
        die "still missing after apt-get: $MISSING (log: $APTLOG)"
    fi
    rm -f "$APTLOG"
    say "dependencies installed"
fi
if [ "$IS_ROOT" -eq 1 ]; then
    id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist (is postgresql-common installed?)"
fi

# ---------------------------------------------------------------------------
# 2. Build and install
# ---------------------------------------------------------------------------
say "building"
make -C "$ROOT" PG_CONFIG="$PG_CONFIG" -j2 || die "build failed"
if [ "$IS_ROOT" -eq 0 ]; then
    for d in "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --sharedir)/extension"; do
        [ -w "$d" ] || die "cannot install: $d is not writable by $(id -un); run as root (e.g. sudo make $MODE) or make it writable"
    done
fi
say "installing"
make -C "$ROOT" PG_CONFIG="$PG_CONFIG" install || die "make install failed"

# ---------------------------------------------------------------------------
# 3. Throwaway cluster
# ---------------------------------------------------------------------------
# mktemp -d gives mode 700: with trust auth, the socket must not be reachable
# by other local users.
TMP=$(mktemp -d /tmp/ledger_cqrs.XXXXXX)
[ "$IS_ROOT" -eq 1 ] && chown postgres: "$TMP"
# The repo may be unreadable for postgres (e.g. under /root); run everything
# from a directory that both users can enter.
cd "$TMP"

export PATH="$PGBIN:$PATH"

# Port: first one from 5499 up without a socket in any usual place.
PORT=${LEDGER_TEST_PORT:-5499}
while [ -e "/tmp/.s.PGSQL.$PORT" ] || [ -e "/var/run/postgresql/.s.PGSQL.$PORT" ] \
      || [ -e "$TMP/.s.PGSQL.$PORT" ]; do
    PORT=$((PORT + 1))
done

if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then LOCALE=C.UTF-8; else LOCALE=C; fi
say "initdb in $TMP/data (locale $LOCALE, port $PORT)"
as_pg "$PGBIN/initdb" -D "$TMP/data" --auth=trust -U postgres --no-sync \
      -E UTF8 --locale="$LOCALE" >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }

{
    echo ""
    echo "# --- added by test/harness.sh ---"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$TMP'"
    echo "port = $PORT"
    echo "max_connections = 100"
    echo "shared_buffers = 256MB"
    echo "max_prepared_transactions = 10"
    echo "max_worker_processes = 16"
    # Only the test suites may trade durability for speed; demo and bench
    # keep fsync on so that numbers and behaviour are realistic.
    [ "$MODE" = test ] && echo "fsync = off"
    # Long benchmark cells must not hit a checkpoint halfway through.
    [ "$MODE" = bench ] && echo "max_wal_size = 4GB" && echo "shared_buffers = 512MB"
    true
} | as_pg tee -a "$TMP/data/postgresql.conf" >/dev/null

CLUSTER_UP=1
as_pg "$PGBIN/pg_ctl" start -D "$TMP/data" -w -t 120 -l "$TMP/server.log" >/dev/null \
    || die "cluster failed to start"
say "cluster up: socket $TMP, port $PORT"

export PGHOST=$TMP PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
# Extra variables for demo/bench scripts.
export PGBIN PG_CONFIG LEDGER_ROOT=$ROOT LEDGER_TMP=$TMP

# ---------------------------------------------------------------------------
# 4. Modes
# ---------------------------------------------------------------------------
if [ "$MODE" = demo ]; then
    "$PGBIN/createdb" ledger_demo || die "createdb ledger_demo failed"
    say "running $DEMO"
    set +e
    "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -d ledger_demo -f "$DEMO"
    rc=$?
    set -e
    exit "$rc"
fi

if [ "$MODE" = bench ]; then
    say "running $BENCH"
    set +e
    bash "$BENCH"
    rc=$?
    set -e
    exit "$rc"
fi

# ---- MODE = test ----------------------------------------------------------
TOTAL_PASS=0
TOTAL_FAIL=0
SUMMARY=()      # per-suite lines, printed again at the very end

# Parse the pg_regress/pg_isolation_regress summary in file $1 (exit status
# $2) and set PASS/FAIL. PG15 wording (src/test/regress/pg_regress.c):
#   " All N tests passed. "
#   " M of N tests failed. "
#   " P of N tests passed, K failed test(s) ignored. "
#   " M of N tests failed, K of these failures ignored. "
# Ignored failures ("failed (ignored)", only possible via schedule files)
# count as neither passed nor failed but are reported. A non-zero exit
# without any failure in the summary (e.g. exit 2, could not run) counts as
# one failure.
parse_regress() {
    local out=$1 rc=$2 line n m p k
    PASS=0; FAIL=0; IGNORED=0
    line=$(grep -E '^ *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests (passed|failed))' "$out" | tail -n 1 || true)
    if [[ $line =~ All\ ([0-9]+)\ tests\ passed ]]; then
        PASS=${BASH_REMATCH[1]}
    elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ failed,\ ([0-9]+)\ of\ these ]]; then
        m=${BASH_REMATCH[1]}; n=${BASH_REMATCH[2]}; k=${BASH_REMATCH[3]}
        PASS=$((n - m)); FAIL=$((m - k)); IGNORED=$k
    elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ failed ]]; then
        m=${BASH_REMATCH[1]}; n=${BASH_REMATCH[2]}
        PASS=$((n - m)); FAIL=$m
    elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ passed,\ ([0-9]+)\ failed ]]; then
        p=${BASH_REMATCH[1]}; k=${BASH_REMATCH[3]}
        PASS=$p; IGNORED=$k
    fi
    if [ "$rc" -ne 0 ] && [ "$FAIL" -eq 0 ]; then FAIL=1; fi
    return 0
}

record() {   # record SUITE PASS FAIL
    SUMMARY+=("$1: $2 passed, $3 failed")
    TOTAL_PASS=$((TOTAL_PASS + $2))
    TOTAL_FAIL=$((TOTAL_FAIL + $3))
    echo "$1: $2 passed, $3 failed"
}

# Run a pg_regress-style suite. Args: NAME DRIVER INPUTDIR OUTDIR DBNAME TESTS...
run_regress_suite() {
    local name=$1 driver=$2 inputdir=$3 outdir=$4 dbname=$5 rc
    shift 5
    if [ "$#" -eq 0 ]; then
        say "$name: no tests, skipped"
        record "$name" 0 0
        return 0
    fi
    echo
    say "$name: $# test(s)"
    mkdir -p "$outdir"
    set +e
    "$driver" --bindir="$PGBIN" --host="$TMP" --port="$PORT" --user=postgres \
        --inputdir="$inputdir" --outputdir="$outdir" \
        --load-extension=ledger_cqrs --dbname="$dbname" "$@" 2>&1 \
        | tee "$outdir.log"
    rc=${PIPESTATUS[0]}
    set -e
    parse_regress "$outdir.log" "$rc"
    # Tests were requested but no summary line appeared: count as a failure.
    if [ $((PASS + FAIL + IGNORED)) -eq 0 ]; then FAIL=1; fi
    if [ "$rc" -ne 0 ] || [ "$FAIL" -ne 0 ]; then
        if [ -s "$outdir/regression.diffs" ]; then
            echo "------------------ $outdir/regression.diffs ------------------"
            cat "$outdir/regression.diffs"
            echo "-------------------------------------------------------------"
        fi
    fi
    [ "$IGNORED" -gt 0 ] && say "$name: $IGNORED failure(s) ignored by schedule"
    record "$name" "$PASS" "$FAIL"
}

# ---- a. regress: every sql/*.sql except the extension install scripts ----
REGRESS_TESTS=()
for f in "$ROOT"/sql/*.sql; do
    [ -e "$f" ] || continue
    b=$(basename "$f" .sql)
    case "$b" in ledger_cqrs--*) continue ;; esac
    REGRESS_TESTS+=("$b")
done
# glob order is already sorted, but be explicit (and locale-independent)
if [ "${#REGRESS_TESTS[@]}" -gt 0 ]; then
    mapfile -t REGRESS_TESTS < <(printf '%s\n' "${REGRESS_TESTS[@]}" | LC_ALL=C sort)
fi
run_regress_suite regress "$PG_REGRESS" "$ROOT" "$TMP/regress" \
    contrib_regression "${REGRESS_TESTS[@]}"

# ---- b. isolation: test/specs/*.spec, expected in test/expected ----------
ISO_TESTS=()
for f in "$ROOT"/test/specs/*.spec; do
    [ -e "$f" ] || continue
    ISO_TESTS+=("$(basename "$f" .spec)")
done
if [ "${#ISO_TESTS[@]}" -gt 0 ]; then
    mapfile -t ISO_TESTS < <(printf '%s\n' "${ISO_TESTS[@]}" | LC_ALL=C sort)
fi
run_regress_suite isolation "$PG_ISOLATION_REGRESS" "$ROOT/test" "$TMP/isolation" \
    isolation_regression "${ISO_TESTS[@]}"

# ---- c. TAP: prove test/t/*.pl as the cluster owner ----------------------
# Parse prove output in $1 (exit status $2) and set PASS/FAIL:
#   "Files=F, Tests=T, ..."                 T = assertions run
#   "t/x.pl (Wstat: W Tests: T Failed: F)"  one line per problem file in the
#                                           "Test Summary Report", followed by
#                                           indented detail lines
# A file counts as failed if F>0, W!=0 or it has "Parse errors" (bad plan,
# died); it contributes max(F,1) failures. PASS = T - sum(F).
parse_prove() {
    local out=$1 rc=$2 line tests="" failed_asserts=0 failures=0
    local in_report=0 cur_f=0 cur_bad=0 have_file=0 cur_name=""
    PASS=0; FAIL=0; TAP_FAILED_FILES=()
    flush_file() {
        if [ "$have_file" -eq 1 ] && [ "$cur_bad" -eq 1 ]; then
            failures=$((failures + (cur_f > 0 ? cur_f : 1)))
            TAP_FAILED_FILES+=("$cur_name")
        fi
        have_file=0; cur_f=0; cur_bad=0
    }
    while IFS= read -r line; do
        if [[ $line == "Test Summary Report" ]]; then
            in_report=1; continue
        fi
        if [[ $line =~ ^Files=[0-9]+,\ Tests=([0-9]+), ]]; then
            flush_file; in_report=0
            tests=${BASH_REMATCH[1]}
            continue
        fi
        [ "$in_report" -eq 1 ] || continue
        if [[ $line =~ ^([^[:space:]]+)\ +\(Wstat:\ ([0-9]+).*Tests:\ ([0-9]+)\ Failed:\ ([0-9]+)\) ]]; then
            flush_file
            have_file=1
            cur_name=$(basename "${BASH_REMATCH[1]}" .pl)
            cur_f=${BASH_REMATCH[4]}
            failed_asserts=$((failed_asserts + cur_f))
            if [ "${BASH_REMATCH[2]}" -ne 0 ] || [ "$cur_f" -gt 0 ]; then cur_bad=1; fi
        elif [[ $line =~ ^[[:space:]]+Parse\ errors: ]]; then
            cur_bad=1
        fi
    done < "$out"
    flush_file
    if [ -n "$tests" ]; then
        PASS=$((tests - failed_asserts))
        [ "$PASS" -lt 0 ] && PASS=0
        FAIL=$failures
    fi
    # prove died without a summary, or failed for a reason not in it
    if [ "$rc" -ne 0 ] && [ "$FAIL" -eq 0 ]; then FAIL=1; fi
    return 0
}

TAP_FILES=()
for f in "$ROOT"/test/t/*.pl; do
    [ -e "$f" ] && TAP_FILES+=("t/$(basename "$f")")
done
if [ "${#TAP_FILES[@]}" -eq 0 ]; then
    say "tap: no tests, skipped"
    record tap 0 0
else
    echo
    say "tap: ${#TAP_FILES[@]} file(s)"
    # Copies readable by postgres (the repo may be under a mode-700 /root).
    # TMPDIR: the short socket dirs PostgreSQL::Test::Cluster makes with
    # File::Temp stay inside $TMP (a test that dies leaves them behind).
    mkdir -p "$TMP/src" "$TMP/tap/tmp"
    cp -a "$ROOT/test" "$TMP/src/test"
    [ -d "$ROOT/sql" ] && cp -a "$ROOT/sql" "$TMP/src/sql"
    [ "$IS_ROOT" -eq 1 ] && chown -R postgres: "$TMP/src" "$TMP/tap"
    mapfile -t TAP_FILES < <(printf '%s\n' "${TAP_FILES[@]}" | LC_ALL=C sort)
    set +e
    (
        cd "$TMP/src/test"
        as_pg env PATH="$PGBIN:$PATH" \
            PERL5LIB="$PGXS/src/test/perl" \
            PG_REGRESS="$PG_REGRESS" \
            TESTDIR="$TMP/tap" \
            TMPDIR="$TMP/tap/tmp" \
            PG_CONFIG="$PG_CONFIG" \
            LEDGER_SRC="$TMP/src" \
            prove -v "${TAP_FILES[@]}"
    ) 2>&1 | tee "$TMP/prove.log"
    rc=${PIPESTATUS[0]}
    set -e
    parse_prove "$TMP/prove.log" "$rc"
    # Logs of the failed files: regress_log_<test> and <test>_<node>.log
    # (all logs if prove died before naming the culprits).
    if [ "$FAIL" -ne 0 ] && [ -d "$TMP/tap/tmp_check/log" ]; then
        TAP_LOGS=()
        if [ "${#TAP_FAILED_FILES[@]}" -gt 0 ]; then
            for t in "${TAP_FAILED_FILES[@]}"; do
                for lf in "$TMP/tap/tmp_check/log/regress_log_$t" "$TMP/tap/tmp_check/log/${t}"_*.log; do
                    [ -f "$lf" ] && TAP_LOGS+=("$lf")
                done
            done
        else
            mapfile -t TAP_LOGS < <(find "$TMP/tap/tmp_check/log" -type f | LC_ALL=C sort)
        fi
        for lf in ${TAP_LOGS[@]+"${TAP_LOGS[@]}"}; do
            echo "------------------ tail of $lf ------------------"
            tail -n 40 "$lf" || true
        done
        [ "${#TAP_LOGS[@]}" -gt 0 ] && echo "-------------------------------------------------------------"
    fi
    record tap "$PASS" "$FAIL"
fi

# ---- d. fuzz: test/fuzz/fuzz.pl against the cluster ----------------------
# Random input for FUZZ_SECONDS (default 20) from a fixed FUZZ_SEED, in its
# own database; it prints `fuzz: N passed, M failed` (N calls and checks
# that behaved, M violations) and exits non-zero on any violation.
if [ -f "$ROOT/test/fuzz/fuzz.pl" ]; then
    echo
    say "fuzz: ${FUZZ_SECONDS:-20}s"
    set +e
    perl "$ROOT/test/fuzz/fuzz.pl" 2>&1 | tee "$TMP/fuzz.log"
    rc=${PIPESTATUS[0]}
    set -e
    PASS=0; FAIL=0
    line=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed$' "$TMP/fuzz.log" | tail -n 1 || true)
    if [[ $line =~ ^fuzz:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        PASS=${BASH_REMATCH[1]}; FAIL=${BASH_REMATCH[2]}
    fi
    # died without its summary, or failed for a reason not in it
    if [ "$rc" -ne 0 ] && [ "$FAIL" -eq 0 ]; then FAIL=1; fi
    record fuzz "$PASS" "$FAIL"
else
    say "fuzz: no fuzzer, skipped"
    record fuzz 0 0
fi

# ---- e. summary -----------------------------------------------------------
if [ "$TOTAL_FAIL" -ne 0 ]; then STATUS=1; else STATUS=0; fi
finish "$STATUS"    # stop cluster (and print its log on failure) first ...
echo
echo "========================== summary ==========================="
for s in "${SUMMARY[@]}"; do echo "$s"; done
echo "total: $TOTAL_PASS passed, $TOTAL_FAIL failed"   # ... so this is last
SUMMARY_PRINTED=1
exit "$STATUS"
