# Concurrency: pgbench storms (8 clients, 2 threads, prepared protocol)
# against one ledger, each followed by the full set of invariants.
#
#  1. random transfers among 200 accounts in USD, EUR, JPY (scale 0) and
#     BHD (scale 3), mixed with 4-leg currency exchanges (legs in random
#     order) and concurrent ledger.catch_up() calls; then the same
#     transfers racing a session that rebuilds every projection in turn;
#     then two rebuilds of the same projection, the second started while
#     the first has not committed; then rebuilds (built-in and user)
#     racing each other from every client; then transfers racing VACUUM,
#     VACUUM FULL, account rebuilds and a non-HOT index on balances, which
#     move the rows postings look for at their TID hints;
#  2. crossing transfers: A->B and B->A from every client, plus crossing
#     4-leg exchanges between the same two accounts in two currencies;
#  3. flagged accounts drained from every client: a wallet with
#     debits_must_not_exceed_credits (USD and JPY, single and two-currency
#     spends) and an account with credits_must_not_exceed_debits; a wrapper
#     records refusals (23514) so they never abort a client; then the same
#     spends racing top-ups, so the balances hover around zero;
#  4. optimistic concurrency on 3 hot streams: each client reads
#     ledger.stream_version() and appends with that expected_version
#     (ledger.append or a 2-event ledger.append_events); the 40001 of a
#     lost race is caught by a plpgsql wrapper, recorded, and retried;
#  5. idempotent retries racing: 8 clients post the same 50 transfer ids
#     (same legs, through ledger.transfer or ledger.post_entry): one
#     posting per id, and every call returns its position.
#
# Before the load, three user projections are created so that they are
# maintained under it: two inline (one per account and currency, one hot
# row per event type) and one async (turnover per currency and side, kept by
# the projector and by catch_up calls from the clients).
#
# After each storm: pgbench exited 0 with every transaction processed and
# none failed; every currency balances; ledger.balances and
# ledger.account_entries equal the legs in the log; flags held; versions
# are gapless; every projection (built-in and user) verifies, the async one
# after catching up.  At the end, the server log holds no deadlock.

use strict;
use warnings;

use lib 't';
use LedgerTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $clients = 8;

my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
$node->append_conf('postgresql.conf', "max_worker_processes = 16\n");
$node->start;

sub q1 { return $node->safe_psql('postgres', shift); }

$node->safe_psql('postgres', <<'SQL');
CREATE EXTENSION ledger_cqrs;

SELECT ledger.open_account('acct' || i) FROM generate_series(1, 200) AS i;
SELECT ledger.open_account('cross_a');
SELECT ledger.open_account('cross_b');
SELECT ledger.open_account('funding');
SELECT ledger.open_account('wallet', '{debits_must_not_exceed_credits}');
SELECT ledger.open_account('capped', '{credits_must_not_exceed_debits}');
SELECT ledger.open_account('shop' || i) FROM generate_series(1, 8) AS i;
SELECT ledger.transfer('fund-wallet-usd', 'funding', 'wallet', 500.00, 'USD');
SELECT ledger.transfer('fund-wallet-jpy', 'funding', 'wallet', 60000, 'JPY');
-- capped starts at -300.00 EUR: it may take at most 300.00 EUR of credits
SELECT ledger.transfer('fund-capped', 'capped', 'funding', 300.00, 'EUR');

CREATE SEQUENCE tid;

SQL
# user projections, maintained under the load
$node->safe_psql('postgres', leg_totals_projection_sql('leg_totals'));
$node->safe_psql('postgres', <<'SQL');
-- one hot row per event type: every append of a type updates the same row
SELECT ledger.create_projection('event_counts', $$
    SELECT e.type, count(*) AS n, max(e.position) AS last_position, min(e.version) AS min_version
      FROM ledger.events e
     GROUP BY e.type $$, 'inline');
SQL
$node->safe_psql('postgres', $TURNOVER_PROJECTION_SQL);
$node->safe_psql('postgres', <<'SQL');
SELECT ledger.start_projector() > 0;

-- workload 1: a random transfer; b is drawn from 199 and skips a
CREATE FUNCTION rnd_transfer(a int, b int, c int, amt bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur text := (ARRAY['USD', 'EUR', 'JPY', 'BHD'])[c];
    sc  int  := (ARRAY[2, 2, 0, 3])[c];
BEGIN
    IF b >= a THEN b := b + 1; END IF;
    RETURN ledger.transfer('r-' || nextval('tid'), 'acct' || a, 'acct' || b,
                           round(amt / power(10::numeric, sc), sc), cur);
END
$$;

-- a 4-leg exchange between x and y: x pays amt1 in c1, y pays amt2 in c2;
-- the legs are listed in one of two orders
CREATE FUNCTION exchange(p_id text, x text, y text, c1 text, amt1 numeric,
                         c2 text, amt2 numeric, flip boolean) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    legs jsonb[] := ARRAY[
        jsonb_build_object('account', x, 'side', 'debit',  'amount', amt1, 'currency', c1),
        jsonb_build_object('account', y, 'side', 'credit', 'amount', amt1, 'currency', c1),
        jsonb_build_object('account', y, 'side', 'debit',  'amount', amt2, 'currency', c2),
        jsonb_build_object('account', x, 'side', 'credit', 'amount', amt2, 'currency', c2)];
BEGIN
    IF flip THEN
        legs := ARRAY[legs[3], legs[1], legs[4], legs[2]];
    END IF;
    RETURN ledger.post_entry(p_id, to_jsonb(legs));
END
$$;

-- a payment with a fee: a pays amt to b and fee to f in one currency, as
-- two debit legs of a's (one balance named twice), in one of two orders
CREATE FUNCTION rnd_fee(a int, b int, f int, c int, amt bigint, fee bigint, flip int)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    curs text[] := ARRAY['USD', 'EUR', 'JPY', 'BHD'];
    scs  int[]  := ARRAY[2, 2, 0, 3];
    p    numeric := round(amt / power(10::numeric, scs[c]), scs[c]);
    q    numeric := round(fee / power(10::numeric, scs[c]), scs[c]);
    legs jsonb[];
BEGIN
    IF b >= a THEN b := b + 1; END IF;
    legs := ARRAY[
        jsonb_build_object('account', 'acct' || a, 'side', 'debit',  'amount', p, 'currency', curs[c]),
        jsonb_build_object('account', 'acct' || b, 'side', 'credit', 'amount', p, 'currency', curs[c]),
        jsonb_build_object('account', 'acct' || a, 'side', 'debit',  'amount', q, 'currency', curs[c]),
        jsonb_build_object('account', 'acct' || f, 'side', 'credit', 'amount', q, 'currency', curs[c])];
    IF flip = 1 THEN
        legs := ARRAY[legs[4], legs[3], legs[2], legs[1]];
    END IF;
    RETURN ledger.post_entry('r-' || nextval('tid'), to_jsonb(legs));
END
$$;

CREATE FUNCTION rnd_exchange(a int, b int, c1 int, c2 int, amt1 bigint, amt2 bigint, flip int)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    curs text[] := ARRAY['USD', 'EUR', 'JPY', 'BHD'];
    scs  int[]  := ARRAY[2, 2, 0, 3];
BEGIN
    IF b >= a THEN b := b + 1; END IF;
    IF c2 >= c1 THEN c2 := c2 + 1; END IF;
    RETURN exchange('r-' || nextval('tid'), 'acct' || a, 'acct' || b,
                    curs[c1], round(amt1 / power(10::numeric, scs[c1]), scs[c1]),
                    curs[c2], round(amt2 / power(10::numeric, scs[c2]), scs[c2]),
                    flip = 1);
END
$$;

-- workload 5: the same transfer ids posted from every client at once; each
-- id always carries the same legs, so every call must return the position
-- of the one posting
CREATE TABLE retries (transfer_id text NOT NULL, client int NOT NULL, position bigint NOT NULL);
CREATE FUNCTION retry_transfer(p_client int, n int, p_flip int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_pos bigint;
BEGIN
    IF p_flip = 0 THEN
        v_pos := ledger.transfer('dup-' || n, 'acct' || (1 + n % 200), 'acct' || (1 + (n + 1) % 200),
                                 n / 100.0 + 1, 'GBP');
    ELSE
        -- the same posting through post_entry, legs in the other order
        v_pos := ledger.post_entry('dup-' || n, jsonb_build_array(
            jsonb_build_object('account', 'acct' || (1 + (n + 1) % 200), 'side', 'credit',
                               'amount', n / 100.0 + 1, 'currency', 'GBP'),
            jsonb_build_object('account', 'acct' || (1 + n % 200), 'side', 'debit',
                               'amount', n / 100.0 + 1, 'currency', 'GBP')));
    END IF;
    INSERT INTO retries VALUES ('dup-' || n, p_client, v_pos);
    RETURN v_pos;
END
$$;

-- workload 1b: rebuild every projection in turn, one transaction each,
-- until told to stop
CREATE TABLE rebuild_ctl (stop boolean NOT NULL DEFAULT false, done int NOT NULL DEFAULT 0);
INSERT INTO rebuild_ctl DEFAULT VALUES;
CREATE PROCEDURE rebuild_loop() LANGUAGE plpgsql AS $$
DECLARE
    names text[] := ARRAY['ledger.balances', 'ledger.account_entries', 'leg_totals',
                          'event_counts', 'turnover'];
    i int := 0;
BEGIN
    LOOP
        EXIT WHEN (SELECT stop FROM rebuild_ctl) OR i >= 5000;
        PERFORM ledger.rebuild_projection(names[1 + i % 5]);
        i := i + 1;
        UPDATE rebuild_ctl SET done = i;
        COMMIT;
    END LOOP;
END
$$;

-- workload 2: crossing postings between cross_a and cross_b
CREATE FUNCTION cross_transfer(dir int, cents int) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF dir = 0 THEN
        RETURN ledger.transfer('x-' || nextval('tid'), 'cross_a', 'cross_b', cents / 100.0, 'USD');
    END IF;
    RETURN ledger.transfer('x-' || nextval('tid'), 'cross_b', 'cross_a', cents / 100.0, 'USD');
END
$$;
CREATE FUNCTION cross_exchange(dir int, cents int, flip int) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF dir = 0 THEN
        RETURN exchange('x-' || nextval('tid'), 'cross_a', 'cross_b',
                        'USD', cents / 100.0, 'EUR', (cents + 7) / 100.0, flip = 1);
    END IF;
    RETURN exchange('x-' || nextval('tid'), 'cross_b', 'cross_a',
                    'EUR', cents / 100.0, 'USD', (cents + 3) / 100.0, flip = 1);
END
$$;

-- workload 3: spends against flagged accounts; a refusal (23514) is
-- recorded, any other error aborts the client
CREATE TABLE attempts (
    transfer_id text PRIMARY KEY,
    kind        text NOT NULL,
    usd         numeric NOT NULL DEFAULT 0,
    jpy         numeric NOT NULL DEFAULT 0,
    eur         numeric NOT NULL DEFAULT 0,
    outcome     text NOT NULL CHECK (outcome IN ('posted', 'refused')),
    position    bigint
);
CREATE FUNCTION try_spend(p_client int, p_kind int, p_cents int, p_yen int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_id   text := 'f-' || nextval('tid');
    v_shop text := 'shop' || p_client;
    v_usd  numeric := 0;
    v_jpy  numeric := 0;
    v_eur  numeric := 0;
    v_kind text;
    v_pos  bigint;
BEGIN
    BEGIN
        IF p_kind = 1 THEN
            v_kind := 'wallet-usd'; v_usd := p_cents / 100.0;
            v_pos := ledger.transfer(v_id, 'wallet', v_shop, v_usd, 'USD');
        ELSIF p_kind = 2 THEN
            v_kind := 'wallet-jpy'; v_jpy := p_yen;
            v_pos := ledger.transfer(v_id, 'wallet', v_shop, v_jpy, 'JPY');
        ELSIF p_kind = 3 THEN
            v_kind := 'wallet-both'; v_usd := p_cents / 100.0; v_jpy := p_yen;
            v_pos := ledger.post_entry(v_id, jsonb_build_array(
                jsonb_build_object('account', v_shop,   'side', 'credit', 'amount', v_jpy, 'currency', 'JPY'),
                jsonb_build_object('account', 'wallet', 'side', 'debit',  'amount', v_usd, 'currency', 'USD'),
                jsonb_build_object('account', 'wallet', 'side', 'debit',  'amount', v_jpy, 'currency', 'JPY'),
                jsonb_build_object('account', v_shop,   'side', 'credit', 'amount', v_usd, 'currency', 'USD')));
        ELSE
            v_kind := 'capped-eur'; v_eur := p_cents / 100.0;
            v_pos := ledger.transfer(v_id, v_shop, 'capped', v_eur, 'EUR');
        END IF;
    EXCEPTION WHEN check_violation THEN
        INSERT INTO attempts VALUES (v_id, v_kind, v_usd, v_jpy, v_eur, 'refused', NULL);
        RETURN 'refused';
    END;
    INSERT INTO attempts VALUES (v_id, v_kind, v_usd, v_jpy, v_eur, 'posted', v_pos);
    RETURN 'posted';
END
$$;

-- workload 3b: top-ups that give the flagged accounts room again
CREATE TABLE topups (
    transfer_id text PRIMARY KEY,
    usd         numeric NOT NULL DEFAULT 0,
    jpy         numeric NOT NULL DEFAULT 0,
    eur         numeric NOT NULL DEFAULT 0,
    position    bigint NOT NULL
);
CREATE FUNCTION topup(p_kind int, p_cents int, p_yen int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id  text := 'g-' || nextval('tid');
    v_pos bigint;
BEGIN
    IF p_kind = 1 THEN
        v_pos := ledger.transfer(v_id, 'funding', 'wallet', p_cents / 100.0, 'USD');
        INSERT INTO topups (transfer_id, usd, position) VALUES (v_id, p_cents / 100.0, v_pos);
    ELSIF p_kind = 2 THEN
        v_pos := ledger.transfer(v_id, 'funding', 'wallet', p_yen, 'JPY');
        INSERT INTO topups (transfer_id, jpy, position) VALUES (v_id, p_yen, v_pos);
    ELSE
        v_pos := ledger.transfer(v_id, 'capped', 'funding', p_cents / 100.0, 'EUR');
        INSERT INTO topups (transfer_id, eur, position) VALUES (v_id, p_cents / 100.0, v_pos);
    END IF;
    RETURN v_pos;
END
$$;

-- workload 4: optimistic concurrency.  Read the stream version, append with
-- it as expected_version; a lost race (40001) is recorded and retried with
-- a fresh read, so every call appends exactly once.
CREATE TABLE occ_log (
    id       bigserial PRIMARY KEY,
    client   int    NOT NULL,
    stream   text   NOT NULL,
    expected bigint NOT NULL,
    outcome  text   NOT NULL CHECK (outcome IN ('appended', 'conflict')),
    version  bigint,            -- the version returned on success
    sqlstate text
);
CREATE FUNCTION occ_append(p_client int, p_stream int, p_batch int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s      text := 'hot:' || p_stream;
    v      bigint;
    nv     bigint;
    tries  int := 0;
BEGIN
    LOOP
        tries := tries + 1;
        IF tries > 1000 THEN
            RAISE EXCEPTION 'occ_append: no success in 1000 tries on %', s;
        END IF;
        v := ledger.stream_version(s);
        BEGIN
            IF p_batch = 1 THEN
                nv := ledger.append(s, 'Incremented',
                                    jsonb_build_object('client', p_client, 'seen', v), v);
            ELSE
                nv := ledger.append_events(s, jsonb_build_array(
                        jsonb_build_object('type', 'Incremented',
                                           'data', jsonb_build_object('client', p_client, 'seen', v)),
                        jsonb_build_object('type', 'Incremented',
                                           'data', jsonb_build_object('client', p_client, 'seen', v + 1))),
                        v);
            END IF;
        EXCEPTION WHEN serialization_failure THEN
            INSERT INTO occ_log (client, stream, expected, outcome, sqlstate)
            VALUES (p_client, s, v, 'conflict', SQLSTATE);
            CONTINUE;
        END;
        IF nv <> v + p_batch THEN
            RAISE EXCEPTION 'occ_append: % at expected version % returned %', s, v, nv;
        END IF;
        INSERT INTO occ_log (client, stream, expected, outcome, version)
        VALUES (p_client, s, v, 'appended', nv);
        RETURN nv;
    END LOOP;
END
$$;
SQL

# run one pgbench storm; every transaction must be processed, none failed
sub storm
{
	my ($name, $per_client, $scripts) = @_;
	my $total = $clients * $per_client;
	$node->pgbench(
		"--no-vacuum --client=$clients --jobs=2 --transactions=$per_client --protocol=prepared",
		0,
		[
			qr{number of transactions actually processed: $total/$total},
			qr{number of failed transactions: 0 }
		],
		[qr{^$}],
		"pgbench: $name",
		$scripts);
	return $total;
}

sub invariants
{
	my ($label) = @_;
	catch_up_all($node, 'postgres', $label);
	check_ledger_invariants($node, 'postgres', $label);
	# the async projection, caught up, equals its query over the whole log
	is(q1($TURNOVER_DIFF_SQL),
		'0', "$label: async projection turnover = its query over the whole log");
	# the hot-row inline projection counts every event exactly once
	is(q1(q{
		SELECT count(*) FROM event_counts c
		  FULL JOIN (SELECT type, count(*) AS n, max(position) AS p FROM ledger.events GROUP BY type) e
		    USING (type)
		 WHERE c.n IS DISTINCT FROM e.n OR c.last_position IS DISTINCT FROM e.p}),
		'0', "$label: inline hot-row projection event_counts = counts in the log");
	return;
}

# one random transfer among the 200 accounts, in one of 4 currencies
my $RND_TRANSFER = <<'PGBENCH';
\set a random(1, 200)
\set b random(1, 199)
\set c random(1, 4)
\set amt random(1, 500000)
SELECT rnd_transfer(:a, :b, :c, :amt);
PGBENCH

#
# 1. random transfers and exchanges among 200 accounts, 4 currencies
#
my $w1 = storm('random transfers and exchanges among 200 accounts', 400,
	{
		'020_transfer@8' => $RND_TRANSFER,
		'020_exchange@2' => <<'PGBENCH',
\set a random(1, 200)
\set b random(1, 199)
\set c1 random(1, 4)
\set c2 random(1, 3)
\set amt1 random(1, 500000)
\set amt2 random(1, 500000)
\set flip random(0, 1)
SELECT rnd_exchange(:a, :b, :c1, :c2, :amt1, :amt2, :flip);
PGBENCH
		'020_fee@2' => <<'PGBENCH',
\set a random(1, 200)
\set b random(1, 199)
\set f random(1, 200)
\set c random(1, 4)
\set amt random(1, 500000)
\set fee random(1, 5000)
\set flip random(0, 1)
SELECT rnd_fee(:a, :b, :f, :c, :amt, :fee, :flip);
PGBENCH
		'020_catchup@1' => <<'PGBENCH',
SELECT ledger.catch_up('turnover', 100);
PGBENCH
	});

my $catchups = q1("SELECT $w1 - count(*) FROM ledger.events WHERE stream LIKE 'transfer:r-%'");
ok($catchups >= 0 && $catchups < $w1,
	"workload 1: $w1 transactions, " . ($w1 - $catchups) . " postings");
is(q1(q{SELECT count(DISTINCT l->>'currency') FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
         WHERE e.stream LIKE 'transfer:r-%'}),
	'4', 'workload 1: postings in all four currencies');
is(q1(q{SELECT count(*) FROM ledger.balances WHERE currency = 'JPY' AND balance <> trunc(balance)}),
	'0', 'workload 1: JPY (scale 0) balances are whole yen');
ok(q1(q{SELECT count(*) FROM (SELECT FROM ledger.account_entries WHERE transfer_id LIKE 'r-%'
                                GROUP BY account, currency, position HAVING count(*) > 1) d}) > 0,
	'workload 1: some postings name one balance in two legs (a payment and its fee)');
invariants('after random transfers');

#
# 1b. transfers racing rebuilds: one session rebuilds the built-in and user
#     projections in turn, one transaction each, while pgbench posts
#
my $rebuilder = LoadClient->new($node, 'postgres');
$rebuilder->feed(q{CALL rebuild_loop();}, q{SELECT 'done', done FROM rebuild_ctl;});
ok(wait_for('the first rebuild', 60,
		sub { $rebuilder->collect; return q1('SELECT done FROM rebuild_ctl') > 0; }),
	'workload 1b: a session keeps rebuilding projections');
my $w1b = storm('transfers racing a rebuilding session', 60,
	{
		'020_transfer2@1' => $RND_TRANSFER,
	});
q1('UPDATE rebuild_ctl SET stop = true');
$rebuilder->finish;
my ($done) = map { /^done\|(\d+)$/ ? $1 : () } $rebuilder->lines;
ok(defined $done && $done > 0, 'workload 1b: the rebuilding session ran ' . ($done // 0) . ' rebuilds');
is($rebuilder->errors, '', 'workload 1b: no rebuild failed');
invariants('after transfers racing rebuilds');

#
# 1c. two rebuilds of the same projection, deterministically interleaved:
#     the first has rebuilt but not committed when the second starts; the
#     second must wait for it and then succeed
#
for my $name ('ledger.balances', 'ledger.account_entries', 'leg_totals', 'turnover')
{
	my $first  = LoadClient->new($node, 'postgres');
	my $second = LoadClient->new($node, 'postgres');
	$first->feed(q{BEGIN;}, qq{SELECT 'first', ledger.rebuild_projection('$name');});
	ok(wait_for("the first rebuild of $name", 60,
			sub { $first->collect; return scalar grep { /^first\|/ } $first->lines; }),
		"1c: $name: a first rebuild is done, not committed");
	$second->feed(q{SELECT 'pid', pg_backend_pid();},
		qq{SELECT 'second', ledger.rebuild_projection('$name');});
	my $pid;
	ok(wait_for("the second rebuild of $name to wait or finish", 60,
			sub {
				$second->collect;
				return 1 if grep { /^second\|/ } $second->lines;
				($pid) = map { /^pid\|(\d+)$/ ? $1 : () } $second->lines;
				return defined $pid
				  && q1("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid") eq 'Lock';
			}),
		"1c: $name: a second rebuild started");
	$first->feed(q{COMMIT;});
	$first->finish;
	$second->finish;
	is($first->errors . $second->errors, '',
		"1c: $name: the second rebuild waited for the first and did not fail");
	ok(scalar(grep { /^second\|\d+$/ } $second->lines), "1c: $name: the second rebuild returned");
	is(q1("SELECT ledger.verify_projection('$name')"), 't', "1c: $name verifies after both rebuilds");
}

#
# 1d. rebuilds racing each other (and transfers) from every client: every
#     rebuild must succeed, whichever runs first
#
my $w1d = storm('rebuilds racing rebuilds', 20,
	{
		'020_transfer3@1' => $RND_TRANSFER,
		'020_rebuild_builtin@2' => <<'PGBENCH',
\set k random(1, 2)
SELECT ledger.rebuild_projection((ARRAY['ledger.balances', 'ledger.account_entries'])[:k::int]);
PGBENCH
		'020_rebuild_user@1' => <<'PGBENCH',
\set k random(1, 3)
SELECT ledger.rebuild_projection((ARRAY['leg_totals', 'event_counts', 'turnover'])[:k::int]);
PGBENCH
	});
invariants('after rebuilds racing rebuilds');

#
# 1e. transfers racing table maintenance that moves the rows postings find
#     at their TID hints: VACUUM (which may cut pages off the end), VACUUM
#     FULL (new files), rebuilds of ledger.accounts (rows deleted and
#     reinserted) and an index on balances.balance that makes every balance
#     update non-HOT while it exists.  One psql session runs the rounds
#     from a file while pgbench posts for a fixed time.
#
my $maint_rounds = 10;
my $maint_file = PostgreSQL::Test::Utils::tempdir() . '/maintenance.sql';
PostgreSQL::Test::Utils::append_to_file($maint_file, join('', map { <<"SQL" } 1 .. $maint_rounds));
VACUUM ledger.balances;
VACUUM ledger.accounts;
SELECT ledger.rebuild_projection('accounts') > 0;
CREATE INDEX maint_balance_idx ON ledger.balances (balance);
SELECT pg_sleep(0.2);
DROP INDEX ledger.maint_balance_idx;
VACUUM FULL ledger.balances;
SELECT pg_sleep(0.1);
VACUUM FULL ledger.accounts;
SELECT 'round', $_;
SQL
my ($maint_out, $maint_err) = ('', '');
my $maint = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-f', $maint_file,
	  '-d', $node->connstr('postgres') ],
	'>', \$maint_out, '2>', \$maint_err, IPC::Run::timeout(600));
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --time=8 --protocol=prepared",
	0,
	[ qr{number of failed transactions: 0 } ],
	[ qr{^$} ],
	'pgbench: transfers racing VACUUM, VACUUM FULL, account rebuilds and a non-HOT index',
	{
		'020_transfer4@1' => $RND_TRANSFER,
	});
ok($maint->finish, 'workload 1e: every maintenance statement succeeded');
is($maint_err, '', 'workload 1e: the maintenance session printed no error');
is(scalar(() = $maint_out =~ /^round\|\d+$/mg), $maint_rounds,
	"workload 1e: $maint_rounds maintenance rounds ran");
invariants('after transfers racing table maintenance');

#
# 2. crossing postings on two accounts
#
my $w2 = storm('crossing transfers A->B and B->A', 300,
	{
		'020_cross_transfer@3' => <<'PGBENCH',
\set dir random(0, 1)
\set cents random(1, 10000)
SELECT cross_transfer(:dir, :cents);
PGBENCH
		'020_cross_exchange@1' => <<'PGBENCH',
\set dir random(0, 1)
\set cents random(1, 10000)
\set flip random(0, 1)
SELECT cross_exchange(:dir, :cents, :flip);
PGBENCH
	});
is(q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'transfer:x-%'}),
	$w2, "workload 2: every crossing posting is in the log ($w2)");
is(q1(q{SELECT count(*) FROM (SELECT currency, sum(balance) AS s FROM ledger.balances
                               WHERE account IN ('cross_a', 'cross_b') GROUP BY currency) t
         WHERE s <> 0}),
	'0', 'workload 2: cross_a and cross_b only moved money between themselves');
is(q1(q{SELECT sum(postings) FROM ledger.balances WHERE account = 'cross_a'}),
	q1(q{SELECT count(*) FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
          WHERE e.stream LIKE 'transfer:x-%' AND l->>'account' = 'cross_a'}),
	'workload 2: cross_a counts one posting per leg it had');
invariants('after crossing transfers');

#
# 3. flagged accounts drained from every client
#
my $w3 = storm('flagged accounts drained from 8 clients', 100,
	{
		'020_spend@1' => <<'PGBENCH',
\set kind random(1, 4)
\set cents random(100, 5000)
\set yen random(100, 5000)
SELECT try_spend(:client_id + 1, :kind, :cents, :yen);
PGBENCH
	});
is(q1('SELECT count(*) FROM attempts'), $w3, 'workload 3: every attempt was recorded');
my ($posted, $refused) = split /\|/, q1(
	"SELECT count(*) FILTER (WHERE outcome = 'posted'), count(*) FILTER (WHERE outcome = 'refused')
	   FROM attempts");
ok($posted > 0 && $refused > 0,
	"workload 3: some spends posted ($posted), some refused ($refused): demand exceeds the funds");
is(q1(q{
	SELECT count(*) FROM attempts a LEFT JOIN ledger.events e ON e.stream = 'transfer:' || a.transfer_id
	 WHERE (a.outcome = 'posted' AND e.position IS DISTINCT FROM a.position)
	    OR (a.outcome = 'refused' AND e.position IS NOT NULL)}),
	'0', 'workload 3: posted spends are in the log at their position, refused ones are not');

my ($usd, $jpy, $eur) = split /\|/, q1(q{
	SELECT (SELECT balance FROM ledger.balances WHERE account = 'wallet' AND currency = 'USD'),
	       (SELECT balance FROM ledger.balances WHERE account = 'wallet' AND currency = 'JPY'),
	       (SELECT balance FROM ledger.balances WHERE account = 'capped' AND currency = 'EUR')});
ok($usd >= 0 && $jpy >= 0, "workload 3: wallet is not negative (USD $usd, JPY $jpy)");
ok($eur <= 0, "workload 3: capped is not positive (EUR $eur)");
is(q1("SELECT 500.00 - coalesce(sum(usd), 0) FROM attempts WHERE outcome = 'posted'") + 0,
	$usd + 0, 'workload 3: wallet USD = funding - posted USD spends');
is(q1("SELECT 60000 - coalesce(sum(jpy), 0) FROM attempts WHERE outcome = 'posted'") + 0,
	$jpy + 0, 'workload 3: wallet JPY = funding - posted JPY spends');
is(q1("SELECT -300.00 + coalesce(sum(eur), 0) FROM attempts WHERE outcome = 'posted'") + 0,
	$eur + 0, 'workload 3: capped EUR = -300.00 + posted payments');
is(q1(q{SELECT min(balance_after) >= 0 FROM ledger.account_entries WHERE account = 'wallet'}),
	't', 'workload 3: the wallet balance_after never went below zero (min >= 0)');
is(q1(q{SELECT max(balance_after) <= 0 FROM ledger.account_entries
         WHERE account = 'capped' AND currency = 'EUR'}),
	't', 'workload 3: the capped balance_after never went above zero (max <= 0)');
# the wallet only pays out and capped only fills up, so the room left only
# shrank: every refused attempt asked for more than the room left at the end
is(q1(qq{
	SELECT count(*) FROM attempts
	 WHERE outcome = 'refused'
	   AND NOT (usd > $usd OR jpy > $jpy OR eur > -($eur))}),
	'0', 'workload 3: no spend was refused that the flagged account could have paid');
invariants('after flagged spends');

# 3b. the same spends, now racing top-ups: the flagged balances go up and
# down around zero for the whole run
my $w3b = storm('flagged accounts: spends racing top-ups', 200,
	{
		'020_spend2@3' => <<'PGBENCH',
\set kind random(1, 4)
\set cents random(100, 5000)
\set yen random(100, 5000)
SELECT try_spend(:client_id + 1, :kind, :cents, :yen);
PGBENCH
		'020_topup@1' => <<'PGBENCH',
\set kind random(1, 3)
\set cents random(100, 5000)
\set yen random(100, 5000)
SELECT topup(:kind, :cents, :yen);
PGBENCH
	});
is(q1('SELECT count(*) FROM attempts') + q1('SELECT count(*) FROM topups'), $w3 + $w3b,
	'workload 3b: every spend and top-up was recorded');
is(q1(q{
	SELECT count(*) FROM topups t LEFT JOIN ledger.events e ON e.stream = 'transfer:' || t.transfer_id
	 WHERE e.position IS DISTINCT FROM t.position}),
	'0', 'workload 3b: every top-up is in the log at its position');
($usd, $jpy, $eur) = split /\|/, q1(q{
	SELECT (SELECT balance FROM ledger.balances WHERE account = 'wallet' AND currency = 'USD'),
	       (SELECT balance FROM ledger.balances WHERE account = 'wallet' AND currency = 'JPY'),
	       (SELECT balance FROM ledger.balances WHERE account = 'capped' AND currency = 'EUR')});
ok($usd >= 0 && $jpy >= 0 && $eur <= 0,
	"workload 3b: flagged balances within their flags (wallet USD $usd, JPY $jpy; capped EUR $eur)");
is(q1(q{SELECT 500.00 + (SELECT coalesce(sum(usd), 0) FROM topups)
                      - (SELECT coalesce(sum(usd), 0) FROM attempts WHERE outcome = 'posted')}) + 0,
	$usd + 0, 'workload 3b: wallet USD = funding + top-ups - posted spends');
is(q1(q{SELECT 60000 + (SELECT coalesce(sum(jpy), 0) FROM topups)
                     - (SELECT coalesce(sum(jpy), 0) FROM attempts WHERE outcome = 'posted')}) + 0,
	$jpy + 0, 'workload 3b: wallet JPY = funding + top-ups - posted spends');
is(q1(q{SELECT -300.00 - (SELECT coalesce(sum(eur), 0) FROM topups)
                       + (SELECT coalesce(sum(eur), 0) FROM attempts WHERE outcome = 'posted')}) + 0,
	$eur + 0, 'workload 3b: capped EUR = -300.00 - room added + posted payments');
is(q1(q{SELECT min(balance_after) >= 0 FROM ledger.account_entries WHERE account = 'wallet'}),
	't', 'workload 3b: the wallet balance_after never went below zero (min >= 0)');
is(q1(q{SELECT max(balance_after) <= 0 FROM ledger.account_entries
         WHERE account = 'capped' AND currency = 'EUR'}),
	't', 'workload 3b: the capped balance_after never went above zero (max <= 0)');
invariants('after spends racing top-ups');

#
# 4. optimistic concurrency on 3 hot streams
#
my $w4 = storm('expected_version appends to 3 hot streams', 200,
	{
		'020_occ_append@3' => <<'PGBENCH',
\set s random(1, 3)
SELECT occ_append(:client_id, :s, 1);
PGBENCH
		'020_occ_append_events@1' => <<'PGBENCH',
\set s random(1, 3)
SELECT occ_append(:client_id, :s, 2);
PGBENCH
	});
my ($appended, $conflicts, $events) = split /\|/, q1(q{
	SELECT count(*) FILTER (WHERE outcome = 'appended'),
	       count(*) FILTER (WHERE outcome = 'conflict'),
	       coalesce(sum(version - expected) FILTER (WHERE outcome = 'appended'), 0)
	  FROM occ_log});
is($appended, $w4, "workload 4: every call appended once ($conflicts conflicts retried)");
is(q1("SELECT count(*) FROM occ_log WHERE outcome = 'conflict' AND sqlstate <> '40001'"),
	'0', 'workload 4: every lost race was SQLSTATE 40001');
is(q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'hot:%'}),
	$events, "workload 4: the hot streams hold exactly the appended events ($events)");
is(q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'hot:%'
         AND (data->>'seen')::bigint <> version - 1}),
	'0', 'workload 4: every event was appended by a client that had read the version before it');
is(q1(q{
	SELECT count(*) FROM occ_log o
	  LEFT JOIN ledger.events e ON e.stream = o.stream AND e.version = o.version
	 WHERE o.outcome = 'appended'
	   AND (e.position IS NULL OR (e.data->>'client')::int <> o.client)}),
	'0', 'workload 4: every successful append is in the log at the version it returned');
is(q1(q{
	SELECT count(*) FROM generate_series(1, 3) s
	 WHERE ledger.stream_version('hot:' || s) <>
	       (SELECT count(*) FROM ledger.events WHERE stream = 'hot:' || s)}),
	'0', 'workload 4: stream_version = number of events, for each hot stream');
invariants('after expected_version appends');

#
# 5. idempotent retries racing: the same 50 transfer ids from every client
#
my $w5 = storm('the same transfer ids from 8 clients', 50,
	{
		'020_retry@1' => <<'PGBENCH',
\set n random(1, 50)
\set flip random(0, 1)
SELECT retry_transfer(:client_id, :n, :flip);
PGBENCH
	});
is(q1('SELECT count(*) FROM retries'), $w5, 'workload 5: every call returned a position');
my $ids = q1('SELECT count(DISTINCT transfer_id) FROM retries');
is(q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'transfer:dup-%'}), $ids,
	"workload 5: one posting per transfer id ($ids ids, $w5 calls)");
is(q1(q{
	SELECT count(*) FROM (SELECT transfer_id FROM retries GROUP BY transfer_id
	                      HAVING count(DISTINCT position) <> 1) d}),
	'0', 'workload 5: every call for an id returned the same position');
is(q1(q{
	SELECT count(*) FROM retries r LEFT JOIN ledger.events e ON e.stream = 'transfer:' || r.transfer_id
	 WHERE e.position IS DISTINCT FROM r.position}),
	'0', 'workload 5: that position is the posting in the log');
invariants('after racing idempotent retries');

# the projector and the clients' catch_up calls shared the async projection
# without applying an event twice: events_applied counts each event once
is(q1(q{SELECT events_applied FROM ledger.projection_status WHERE name = 'turnover'}),
	q1(q{SELECT count(*) FROM ledger.events}),
	'the async projection applied every event of the log exactly once');

server_log_clean($node, 'all workloads');

$node->stop;
done_testing();
