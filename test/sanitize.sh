#!/usr/bin/env bash
# ---------------------------------------------------------------------------
#  ledger_cqrs under AddressSanitizer + UndefinedBehaviorSanitizer
#
#  usage: bash test/sanitize.sh        (normally via `make sanitize`)
#
#  What works: ASan/UBSan with the runtimes LD_PRELOADed into the postmaster
#  (the stock postgres binary is not instrumented, so the runtime has to
#  come first; every backend inherits it).  The extension is built with
#      COPT='-fsanitize=address,undefined -fno-omit-frame-pointer
#            -fno-sanitize-recover=undefined'  with_llvm=no
#  and the cluster runs with
#      LD_PRELOAD=libasan.so:libasan_initfirst.so:libubsan.so
#      ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
#      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
#  libasan_initfirst.so is a two-line shim, built here and linked with
#  -z initfirst, that calls __asan_init() before any other library's
#  constructor.  Without it every PostgreSQL program hangs at startup:
#  libgpg-error's constructor (pulled in through libsystemd and libldap)
#  calls bindtextdomain() before the preloaded runtime is initialized, the
#  first malloc initializes ASan in the middle of it, and glibc's
#  _nl_state_lock stays taken (google/sanitizers#1270), so `postgres -V`,
#  which pg_ctl runs first, blocks forever.  The valgrind fallback was not
#  needed.
#
#  Nothing outside the temp dir is touched: the PostgreSQL installation
#  (bindir, pkglibdir, sharedir) is copied into $TMP/pg and, PostgreSQL
#  being relocatable, the copied server loads its extensions from the copy,
#  where the instrumented build is installed with DESTDIR.  The system keeps
#  its normal ledger_cqrs throughout (for anyone testing at the same time),
#  so there is nothing to reinstall afterwards.  As a safety net the exit
#  trap reinstalls the normal build should it ever find an instrumented
#  ledger_cqrs.so in the system's pkglibdir.
#
#  Against that cluster run the whole regress suite (sql/*.sql but the
#  install scripts), the isolation specs and a short fuzz run
#  (SANITIZE_FUZZ_SECONDS, default 10).  Reports go to the backends' stderr,
#  that is the server log (ASan's log_path is not honoured inside postgres
#  here).  Any sanitizer output or backend crash in the server log fails
#  the run; so does a failing suite (the summary says which).  Last, a
#  self-test: a tiny probe module that writes past a stack array, built
#  once for ASan and once for UBSan, must be caught by each, or the run
#  fails as "not effective".
#
#  Scope: only the extension is instrumented.  ASan sees overflows of its
#  own stack and global objects and of malloc'd memory, and UBSan every
#  undefined operation in its code (signed overflow, bad shifts, misaligned
#  or NULL access...).  Overflows inside palloc'd chunks stay invisible with
#  a stock server (that needs a PostgreSQL built with ASan-aware memory
#  contexts).
#
#  Time: about 35 s on 2 cores (copy of the installation ~1 s, instrumented
#  build ~5 s, regress ~8 s, isolation ~8 s, fuzz 10 s, self-test ~3 s);
#  the fuzz part scales with SANITIZE_FUZZ_SECONDS.  It runs with
#  `make sanitize`, not with `make test`.
#
#  The build happens in a copy of the sources under the temp dir, never in
#  the repository (whose object files others may be rebuilding).  The temp
#  dir is removed on success and kept, with logs and reports, on failure.
# ---------------------------------------------------------------------------
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PGXS=/usr/lib/postgresql/15/lib/pgxs
PG_REGRESS=$PGXS/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS/src/test/isolation/pg_isolation_regress
SAN_FLAGS='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined'
FUZZ_SECS=${SANITIZE_FUZZ_SECONDS:-10}

say() { echo "== sanitize: $*"; }
die() { echo "== sanitize: ERROR: $*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then IS_ROOT=1; else IS_ROOT=0; fi
as_pg() {
    if [ "$IS_ROOT" -eq 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

[ -x "$PG_CONFIG" ] && [ -f "$PGXS/src/makefiles/pgxs.mk" ] \
    || die "PostgreSQL 15 and its PGXS are needed (run \`make test\` once, as root, to install them)"
command -v gcc >/dev/null 2>&1 || die "gcc is needed"
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBUBSAN=$(gcc -print-file-name=libubsan.so)
[ -f "$LIBASAN" ] || die "libasan is missing (apt-get install libasan8)"
[ -f "$LIBUBSAN" ] || die "libubsan is missing (apt-get install libubsan1)"
LIBASAN=$(readlink -f "$LIBASAN")
LIBUBSAN=$(readlink -f "$LIBUBSAN")

START=$(date +%s)
TMP=$(mktemp -d /tmp/ledger_sanitize.XXXXXX)
CLUSTER_UP=0
RESULT=1
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
COPY=$TMP/pg                        # relocated copy of the installation
CBIN=$COPY$BINDIR

cleanup() {
    local rc=$?
    trap - EXIT
    if [ "$CLUSTER_UP" -eq 1 ]; then
        as_pg "$CBIN/pg_ctl" stop -D "$TMP/data" -m fast -w -t 60 >/dev/null 2>&1 \
            || as_pg "$CBIN/pg_ctl" stop -D "$TMP/data" -m immediate -w -t 60 >/dev/null 2>&1 || true
        CLUSTER_UP=0
    fi
    # safety net: the system's build must never be an instrumented one
    if ldd "$PKGLIBDIR/ledger_cqrs.so" 2>/dev/null | grep libasan >/dev/null; then
        say "the system's ledger_cqrs.so is instrumented: reinstalling the normal build"
        if ! make -C "$ROOT" PG_CONFIG="$PG_CONFIG" with_llvm=no install >"$TMP/normal-install.log" 2>&1; then
            echo "== sanitize: WARNING: could not reinstall the normal build; run \`make with_llvm=no install\` in $ROOT" >&2
            [ "$rc" -eq 0 ] && rc=1
        fi
    fi
    if [ "$rc" -eq 0 ] && [ "$RESULT" -eq 0 ]; then
        rm -rf "$TMP"
    else
        say "kept $TMP for inspection"
    fi
    say "took $(( $(date +%s) - START )) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# 1. A relocated copy of the installation, the instrumented build in it
# ---------------------------------------------------------------------------
say "copying the PostgreSQL installation to $COPY"
for d in "$BINDIR" "$PKGLIBDIR" "$SHAREDIR"; do
    mkdir -p "$COPY$(dirname "$d")"
    [ -e "$COPY$d" ] || cp -a "$d" "$COPY$d"
done
[ "$("$CBIN/pg_config" --pkglibdir)" = "$COPY$PKGLIBDIR" ] \
    || die "this PostgreSQL is not relocatable: the copied pg_config does not point into $COPY"

mkdir -p "$TMP/build/src" "$TMP/build/sql"
cp "$ROOT/Makefile" "$ROOT/ledger_cqrs.control" "$TMP/build/"
cp "$ROOT"/src/*.c "$ROOT"/src/*.h "$TMP/build/src/"
cp "$ROOT"/sql/ledger_cqrs--*.sql "$TMP/build/sql/"
say "building with $SAN_FLAGS"
make -C "$TMP/build" PG_CONFIG="$PG_CONFIG" with_llvm=no COPT="$SAN_FLAGS" -j2 >"$TMP/build.log" 2>&1 \
    || { tail -n 30 "$TMP/build.log" >&2; die "the instrumented build failed"; }
make -C "$TMP/build" PG_CONFIG="$PG_CONFIG" with_llvm=no COPT="$SAN_FLAGS" DESTDIR="$COPY" install \
    >>"$TMP/build.log" 2>&1 \
    || { tail -n 30 "$TMP/build.log" >&2; die "installing the instrumented build into $COPY failed"; }
ldd "$COPY$PKGLIBDIR/ledger_cqrs.so" | grep libasan >/dev/null \
    || die "the instrumented ledger_cqrs.so is not linked with libasan"

# the shim that initializes ASan before every other library's constructor
printf '%s\n' 'extern void __asan_init(void);' \
    '__attribute__((constructor)) static void asan_initfirst(void) { __asan_init(); }' \
    >"$TMP/asan_initfirst.c"
gcc -shared -fPIC -o "$TMP/libasan_initfirst.so" "$TMP/asan_initfirst.c" \
    -Wl,-z,initfirst -Wl,--no-as-needed "$LIBASAN" \
    || die "could not build the ASan init shim"
SAN_ENV=(
    "LD_PRELOAD=$LIBASAN:$TMP/libasan_initfirst.so:$LIBUBSAN"
    "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
)
timeout 30 env "${SAN_ENV[@]}" "$CBIN/postgres" -V >/dev/null \
    || die "postgres does not start with the sanitizer runtimes preloaded"

# the probes of the self-test: one byte past a stack array, built for ASan
# and for UBSan (which reports the index out of bounds)
printf '%s\n' '#include "postgres.h"' '#include "fmgr.h"' 'PG_MODULE_MAGIC;' \
    'PG_FUNCTION_INFO_V1(ledger_sanitize_probe);' \
    'Datum ledger_sanitize_probe(PG_FUNCTION_ARGS) {' \
    '    volatile char buf[8]; volatile int i = PG_GETARG_INT32(0);' \
    '    buf[i] = 1; PG_RETURN_INT32(buf[0]); }' >"$TMP/probe.c"
INCDIR=$("$PG_CONFIG" --includedir-server)
gcc -fsanitize=address -fno-omit-frame-pointer -fPIC -shared -I"$INCDIR" \
    -o "$COPY$PKGLIBDIR/ledger_sanitize_probe_asan.so" "$TMP/probe.c" \
    && gcc -fsanitize=undefined -fno-sanitize-recover=undefined -fPIC -shared -I"$INCDIR" \
    -o "$COPY$PKGLIBDIR/ledger_sanitize_probe_ubsan.so" "$TMP/probe.c" \
    || die "could not build the self-test probes"

# ---------------------------------------------------------------------------
# 2. A throwaway cluster with the sanitizer runtimes preloaded
# ---------------------------------------------------------------------------
# mode 700 (mktemp): with trust auth, the socket must not be reachable by
# other local users.
if [ "$IS_ROOT" -eq 1 ]; then chown postgres: "$TMP"; fi
PORT=${LEDGER_SANITIZE_PORT:-5599}
while [ -e "/tmp/.s.PGSQL.$PORT" ] || [ -e "/var/run/postgresql/.s.PGSQL.$PORT" ]; do PORT=$((PORT + 1)); done
if locale -a 2>/dev/null | grep -iE '^c\.utf-?8$' >/dev/null; then LOCALE=C.UTF-8; else LOCALE=C; fi
as_pg "$CBIN/initdb" -D "$TMP/data" --auth=trust -U postgres --no-sync -E UTF8 --locale="$LOCALE" \
    >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
as_pg tee -a "$TMP/data/postgresql.conf" >/dev/null <<EOF

# --- added by test/sanitize.sh ---
listen_addresses = ''
unix_socket_directories = '$TMP'
port = $PORT
max_connections = 50
max_prepared_transactions = 10
max_worker_processes = 16
fsync = off
EOF
CLUSTER_UP=1
as_pg env "${SAN_ENV[@]}" "$CBIN/pg_ctl" start -D "$TMP/data" -w -t 120 -l "$TMP/server.log" >/dev/null \
    || { tail -n 30 "$TMP/server.log" >&2; die "the cluster did not start with the sanitizer runtimes"; }
PM_PID=$(head -n 1 "$TMP/data/postmaster.pid")
grep -q libasan "/proc/$PM_PID/maps" || die "the postmaster did not load libasan"
say "cluster up on port $PORT, libasan and libubsan preloaded into the postmaster ($PM_PID)"
export PGHOST=$TMP PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres PGBIN=$CBIN LEDGER_TMP=$TMP
cd "$TMP"

# ---------------------------------------------------------------------------
# 3. The suites
# ---------------------------------------------------------------------------
FAILURES=()
REGRESS_TESTS=()
for f in "$ROOT"/sql/*.sql; do
    b=$(basename "$f" .sql)
    case "$b" in ledger_cqrs--*) continue ;; esac
    REGRESS_TESTS+=("$b")
done
say "regress: ${#REGRESS_TESTS[@]} test(s)"
set +e
"$PG_REGRESS" --bindir="$CBIN" --host="$TMP" --port="$PORT" --user=postgres \
    --inputdir="$ROOT" --outputdir="$TMP/regress" --load-extension=ledger_cqrs \
    --dbname=contrib_regression "${REGRESS_TESTS[@]}" 2>&1 | tee "$TMP/regress.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || FAILURES+=("regress (see $TMP/regress/regression.diffs)")

ISO_TESTS=()
for f in "$ROOT"/test/specs/*.spec; do
    [ -e "$f" ] && ISO_TESTS+=("$(basename "$f" .spec)")
done
if [ "${#ISO_TESTS[@]}" -gt 0 ]; then
    say "isolation: ${#ISO_TESTS[@]} spec(s)"
    set +e
    "$PG_ISOLATION_REGRESS" --bindir="$CBIN" --host="$TMP" --port="$PORT" --user=postgres \
        --inputdir="$ROOT/test" --outputdir="$TMP/isolation" --load-extension=ledger_cqrs \
        --dbname=isolation_regression "${ISO_TESTS[@]}" 2>&1 | tee "$TMP/isolation.log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || FAILURES+=("isolation (see $TMP/isolation/regression.diffs)")
fi

if [ -f "$ROOT/test/fuzz/fuzz.pl" ] && [ "$FUZZ_SECS" -gt 0 ]; then
    say "fuzz: ${FUZZ_SECS}s"
    set +e
    FUZZ_SECONDS=$FUZZ_SECS perl "$ROOT/test/fuzz/fuzz.pl" 2>&1 | tee "$TMP/fuzz.log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || FAILURES+=("fuzz (see $TMP/fuzz.log)")
fi

# ---------------------------------------------------------------------------
# 4. Sanitizer reports and crashes, then the self-test
# ---------------------------------------------------------------------------
SAN_PATTERN='AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|terminated by signal (4|6|7|8|11)\b|PANIC:|TRAP:'
REPORTS=$(grep -cE "$SAN_PATTERN" "$TMP/server.log" || true)
if [ "$REPORTS" -gt 0 ]; then
    echo "------------------ sanitizer output and crashes in the server log ------------------"
    grep -nE -B2 -A25 "$SAN_PATTERN" "$TMP/server.log" | head -n 300
    echo "------------------------------------------------------------------------------------"
    FAILURES+=("$REPORTS line(s) of sanitizer output or crashes in $TMP/server.log")
fi

say "self-test: a probe writing past a stack array must be caught by ASan and by UBSan"
for probe in asan:'AddressSanitizer: stack-buffer-overflow' ubsan:'probe.c:[0-9:]* runtime error:'; do
    kind=${probe%%:*}
    LOG_LINES=$(wc -l <"$TMP/server.log")
    "$CBIN/psql" -X -q -d postgres \
        -c "CREATE FUNCTION pg_temp.probe(int) RETURNS int LANGUAGE c AS 'ledger_sanitize_probe_$kind', 'ledger_sanitize_probe'" \
        -c "SELECT pg_temp.probe(8)" >"$TMP/probe-$kind.out" 2>&1 || true
    for _ in $(seq 1 30); do        # wait for the crash restart
        "$CBIN/psql" -X -q -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 1
    done
    if tail -n +"$((LOG_LINES + 1))" "$TMP/server.log" | grep -E "${probe#*:}" >/dev/null; then
        say "self-test: $kind caught the probe"
    else
        FAILURES+=("self-test: the $kind probe was not reported, the sanitizer is not effective")
    fi
done

as_pg "$CBIN/pg_ctl" stop -D "$TMP/data" -m fast -w -t 120 >/dev/null 2>&1 || true
CLUSTER_UP=0

echo
say "sanitizer reports during the suites: $REPORTS"
if [ "${#FAILURES[@]}" -eq 0 ]; then
    say "clean: no sanitizer report, no crash, every suite passed"
    RESULT=0
    exit 0
fi
for f in "${FAILURES[@]}"; do say "FAILED: $f"; done
exit 1
