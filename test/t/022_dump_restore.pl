# pg_dump / pg_restore round trip into a fresh cluster.
#
# The source database holds: a user-registered currency, accounts (one
# flagged, one closed), transfers in several currencies including a 4-leg
# exchange (ledger.post_entry), user events (ledger.append and
# ledger.append_events, with metadata), and user projections: two inline
# ones (one of them in another schema), one async projection that was
# partly caught up and then left behind by more appends, and a projection
# that aggregates recorded_at.
#
# It is dumped with pg_dump -Fc and restored into a new database of a
# second, fresh cluster, as the README says: by a superuser with
# PGOPTIONS='-c ledger_cqrs.restoring=on' pg_restore.  Then:
#  - pg_restore exits 0 with no error output, although the log holds more
#    streams than the target's lock table has room for;
#  - the log is identical: every column but tx_order for positions > 9, and
#    positions 1..9 (the currency registrations CREATE EXTENSION appends in
#    each database) without recorded_at;
#  - the read models and the inline projections came across unchanged;
#  - after ledger.catch_up(), every projection, built-in and user, verifies,
#    and the async one equals its query over the whole log;
#  - the ledger's state survived: flags, closed accounts, idempotency keys,
#    stream versions (expected_version), balances going on from where they
#    were; the position sequence continues at max + 1; read_all delivers
#    the whole restored log and then the new events;
#  - new transfers and appends on the target keep everything verified, and
#    the async projection catches up with them;
#  - the same holds for a parallel (--jobs=2) and a single-transaction
#    restore;
#  - without ledger_cqrs.restoring, direct INSERT into ledger.events (and
#    into the read models and projection tables) is still refused, UPDATE
#    stays refused even with it, and only a superuser may set it.

use strict;
use warnings;

use lib 't';
use LedgerTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $source = PostgreSQL::Test::Cluster->new('source');
$source->init;
$source->start;

sub src { return $source->safe_psql('src', shift); }

$source->safe_psql('postgres', 'CREATE DATABASE src');
$source->safe_psql('src', <<'SQL');
CREATE EXTENSION ledger_cqrs;
CREATE SCHEMA analytics;
SELECT ledger.register_currency('XAU', 6);

SELECT ledger.open_account('bank');
SELECT ledger.open_account('fx_desk');
SELECT ledger.open_account('alice', '{debits_must_not_exceed_credits}', '{"tier": "gold"}');
SELECT ledger.open_account('bob', '{}', '{"tier": "basic"}');
SELECT ledger.open_account('temp');
SELECT ledger.open_account('acct' || i) FROM generate_series(1, 10) AS i;

SQL
# projections created early, so that they are maintained by the appends
$source->safe_psql('src', leg_totals_projection_sql('analytics.leg_totals'));
$source->safe_psql('src', <<'SQL');
SELECT ledger.create_projection('page_views', $$
    SELECT e.stream, e.data->>'page' AS page, count(*) AS views,
           sum((e.data->>'ms')::int) AS total_ms, max(e.position) AS last_position
      FROM ledger.events e
     WHERE e.type = 'PageViewed'
     GROUP BY 1, 2 $$, 'inline');
SELECT ledger.create_projection('event_times', $$
    SELECT e.type, count(*) AS n, min(e.recorded_at) AS first_at, max(e.recorded_at) AS last_at
      FROM ledger.events e
     GROUP BY e.type $$, 'inline');
SQL
$source->safe_psql('src', $TURNOVER_PROJECTION_SQL);
$source->safe_psql('src', <<'SQL');

SELECT ledger.transfer('fund-alice', 'bank', 'alice', 100.00, 'USD');
SELECT ledger.transfer('fund-bob', 'bank', 'bob', 5000, 'JPY');
SELECT ledger.transfer('gold-1', 'bank', 'bob', 1.234567, 'XAU');
SELECT ledger.transfer('t-' || i, 'acct' || (1 + i % 10), 'acct' || (1 + (i + 3) % 10),
                       (1 + i * 37 % 5000) / 100.0, (ARRAY['USD', 'EUR', 'GBP', 'BHD'])[1 + i % 4])
  FROM generate_series(1, 120) AS i;
-- a currency exchange: bob sells 3000 JPY to the desk for 20.00 USD
SELECT ledger.post_entry('fx-1', '[
    {"account": "bob",     "side": "debit",  "amount": 3000,  "currency": "JPY"},
    {"account": "fx_desk", "side": "credit", "amount": 3000,  "currency": "JPY"},
    {"account": "fx_desk", "side": "debit",  "amount": 20.00, "currency": "USD"},
    {"account": "bob",     "side": "credit", "amount": 20.00, "currency": "USD"}]',
    '{"rate": "150"}');
SELECT ledger.transfer('spend-alice', 'alice', 'bob', 60.00, 'USD');
-- temp comes and goes
SELECT ledger.transfer('temp-in', 'bank', 'temp', 5.00, 'EUR');
SELECT ledger.transfer('temp-out', 'temp', 'bank', 5.00, 'EUR');
SELECT ledger.close_account('temp');

-- user events
SELECT ledger.append('user:' || (i % 4), 'PageViewed',
                     jsonb_build_object('page', '/p' || (i % 3), 'ms', i * 7),
                     NULL, jsonb_build_object('correlation_id', 'c' || i))
  FROM generate_series(1, 40) AS i;
SELECT ledger.append_events('cart:1', '[
    {"type": "ItemAdded", "data": {"sku": "A", "qty": 2}, "metadata": {"actor": "alice"}},
    {"type": "ItemAdded", "data": {"sku": "B", "qty": 1}},
    {"type": "CheckedOut", "data": {}}]', 0);
-- more streams than the target's lock table holds (see its settings)
SELECT ledger.append('visitor:' || i, 'Visited', '{}') FROM generate_series(1, 3000) AS i;
SQL

# the async projection: caught up part of the way, then left behind
src(q{SELECT ledger.catch_up('turnover', 50)});
src(q{SELECT ledger.transfer('late-' || i, 'acct1', 'acct2', i, 'EUR') FROM generate_series(1, 10) AS i});
src(q{SELECT ledger.append('user:9', 'PageViewed', '{"page": "/late", "ms": 1}')});
my ($src_state, $src_lag) = split /\|/, src(q{SELECT state, lag_events FROM ledger.projection_status WHERE name = 'turnover'});
cmp_ok($src_lag, '>', 0, "source: the async projection lags ($src_lag events, state $src_state)");
check_ledger_invariants($source, 'src', 'source before the dump');

my ($src_max, $src_count) = split /\|/, src('SELECT max(position), count(*) FROM ledger.events');

#
# dump, and restore into a fresh cluster
#
my $dump = $PostgreSQL::Test::Utils::tmp_check . '/022_ledger.dump';
$source->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', 'src' ], 'pg_dump -Fc of the source database');

my $target = PostgreSQL::Test::Cluster->new('target');
$target->init;
# A lock table of a few hundred entries: the restore's one COPY of
# ledger.events carries thousands of streams, and must not take a lock for
# each of them.
$target->append_conf('postgresql.conf', 'max_locks_per_transaction = 10');
$target->start;
$target->safe_psql('postgres', 'CREATE DATABASE dst');
{
	local $ENV{PGOPTIONS} = '-c ledger_cqrs.restoring=on';
	$target->command_checks_all([ 'pg_restore', '-d', 'dst', $dump ],
		0, [qr/^$/], [qr/^$/], 'pg_restore with ledger_cqrs.restoring = on');
}

sub dst { return $target->safe_psql('dst', shift); }

# the same query, on both sides
sub both_equal
{
	my ($sql, $name) = @_;
	my $s = $source->safe_psql('src', "SET TimeZone = 'UTC'; $sql");
	my $t = $target->safe_psql('dst', "SET TimeZone = 'UTC'; $sql");
	is($t, $s, $name);
	return;
}

both_equal(q{SELECT position, stream, version, type, data, metadata, recorded_at
               FROM ledger.events WHERE position > 9 ORDER BY position},
	'the log after position 9 is identical, recorded_at included');
both_equal(q{SELECT position, stream, version, type, data, metadata
               FROM ledger.events WHERE position <= 9 ORDER BY position},
	'positions 1..9 (CREATE EXTENSION) match but for recorded_at');
is(dst('SELECT count(*) FROM ledger.events'), $src_count, "the target holds $src_count events");
both_equal(q{SELECT * FROM ledger.balances ORDER BY account, currency}, 'ledger.balances came across');
both_equal(q{SELECT * FROM ledger.account_entries ORDER BY account, currency, position},
	'ledger.account_entries came across');
both_equal(q{SELECT * FROM ledger.accounts ORDER BY account}, 'ledger.accounts came across');
both_equal(q{SELECT * FROM ledger.currencies WHERE position > 9 ORDER BY code},
	'the user-registered currency came across');
both_equal(q{SELECT code, scale, position FROM ledger.currencies ORDER BY code},
	'ledger.currencies: the same codes, scales and positions');
both_equal(q{SELECT * FROM ledger.currency_totals ORDER BY currency}, 'ledger.currency_totals came across');
both_equal(q{SELECT * FROM analytics.leg_totals ORDER BY account, currency},
	'inline projection analytics.leg_totals came across');
both_equal(q{SELECT * FROM page_views ORDER BY stream, page}, 'inline projection page_views came across');
both_equal(q{SELECT name, kind, mode, definition FROM ledger.projection_status ps
               JOIN ledger.projections USING (name, kind, mode) ORDER BY name},
	'the projection registry came across');

both_equal(q{SELECT * FROM event_times ORDER BY type}, 'inline projection event_times came across');

# read_all delivers the restored log, whole, in position order
is(dst(q{SELECT string_agg(position::text, ',' ORDER BY ord)
           FROM ledger.read_all(0, NULL) WITH ORDINALITY AS r(position, stream, version, type, data,
                                                               metadata, recorded_at, tx_order, ord)}),
	dst(q{SELECT string_agg(position::text, ',' ORDER BY position) FROM ledger.events}),
	'read_all delivers every restored event, in position order');

# every projection verifies once the async one has been refilled
catch_up_all($target, 'dst', 'target after the restore');
# a projection over recorded_at must agree with the target's log, positions
# 1..9 (appended anew by CREATE EXTENSION on the target) included
is(dst(q{SELECT ledger.verify_projection('event_times')}), 't',
	'the restored projection over recorded_at verifies against the target log');
check_ledger_invariants($target, 'dst', 'target after the restore');
is(dst($TURNOVER_DIFF_SQL),
	'0', 'target: the async projection equals its query over the whole log');

#
# the ledger goes on, on the target
#
dst(q{CREATE FUNCTION sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN EXECUTE sql; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$});

my $pos = dst(q{SELECT ledger.transfer('after-restore-1', 'acct3', 'acct4', 1.50, 'USD')});
is($pos, $src_max + 1, 'the position sequence continues at max + 1');
is(dst(q{SELECT ledger.post_entry('fx-1', '[
    {"account": "fx_desk", "side": "debit",  "amount": 20.00, "currency": "USD"},
    {"account": "bob",     "side": "credit", "amount": 20.00, "currency": "USD"},
    {"account": "bob",     "side": "debit",  "amount": 3000,  "currency": "JPY"},
    {"account": "fx_desk", "side": "credit", "amount": 3000,  "currency": "JPY"}]')}),
	src(q{SELECT position FROM ledger.events WHERE stream = 'transfer:fx-1'}),
	'a retried restored posting (idempotency key) returns its original position');
is(dst(q{SELECT sqlstate_of($$SELECT ledger.transfer('spend-alice', 'alice', 'bob', 61.00, 'USD')$$)}),
	'23505', 'a restored transfer id with other legs is refused (23505)');
is(dst(q{SELECT sqlstate_of($$SELECT ledger.transfer('spend-alice-2', 'alice', 'bob', 40.01, 'USD')$$)}),
	'23514', 'the restored flag holds: alice cannot overdraw (23514)');
is(dst(q{SELECT ledger.transfer('spend-alice-2', 'alice', 'bob', 40.00, 'USD') > 0}),
	't', 'alice can spend exactly what she has');
is(dst(q{SELECT balance FROM ledger.balances WHERE account = 'alice' AND currency = 'USD'}),
	'0.00', 'alice is at zero');
is(dst(q{SELECT sqlstate_of($$SELECT ledger.transfer('to-temp', 'bank', 'temp', 1.00, 'EUR')$$)}),
	'55000', 'the restored closed account takes no postings (55000)');
is(dst(q{SELECT sqlstate_of($$SELECT ledger.open_account('bob')$$)}),
	'23505', 'a restored account cannot be opened again (23505)');
is(dst(q{SELECT sqlstate_of($$SELECT ledger.register_currency('XAU', 2)$$)}),
	'23505', 'the restored currency keeps its scale');
is(dst(q{SELECT ledger.transfer('gold-2', 'bob', 'bank', 0.000001, 'XAU') > 0}),
	't', 'the restored currency takes postings at its scale');
is(dst(q{SELECT sqlstate_of($$SELECT ledger.append('cart:1', 'ItemAdded', '{}', 2)$$)}),
	'40001', 'a restored stream refuses a stale expected_version (40001)');
is(dst(q{SELECT ledger.append('cart:1', 'Shipped', '{}', 3)}), '4',
	'a restored stream accepts its current version as expected_version');
is(dst(q{SELECT ledger.append('user:1', 'PageViewed', '{"page": "/p1", "ms": 3}')}),
	src(q{SELECT count(*) FROM ledger.events WHERE stream = 'user:1'}) + 1,
	'appends continue their restored streams');
dst(q{SELECT ledger.transfer('after-restore-' || i, 'acct' || (1 + i % 10), 'acct' || (1 + (i + 1) % 10),
                             i, (ARRAY['JPY', 'USD'])[1 + i % 2])
        FROM generate_series(2, 30) AS i});

# a read_all consumer that had read the restored log continues with the new events
is(dst(qq{SELECT string_agg(position::text, ',' ORDER BY ord)
            FROM ledger.read_all($src_max, NULL) WITH ORDINALITY AS r(position, stream, version, type, data,
                                                                  metadata, recorded_at, tx_order, ord)}),
	dst(qq{SELECT string_agg(position::text, ',' ORDER BY position) FROM ledger.events WHERE position > $src_max}),
	'read_all after the last restored event delivers exactly the new ones');

is(dst(q{SELECT ledger.catch_up('turnover') >= 0}), 't', 'catch_up of the async projection');
catch_up_all($target, 'dst', 'target after new appends');
check_ledger_invariants($target, 'dst', 'target after new appends');
is(dst(q{SELECT count(*) FROM page_views WHERE stream = 'user:1' AND page = '/p1' AND last_position =
           (SELECT max(position) FROM ledger.events WHERE stream = 'user:1')}),
	'1', 'the restored inline projection folds new events');

#
# the append-only rule and the restoring switch on the target
#
my $insert = q{INSERT INTO ledger.events (position, stream, version, type, data, metadata, recorded_at, tx_order)
               VALUES (999999, 'evil:1', 1, 'Forged', '{}', '{}', now(), '1')};
is(dst(qq{SELECT sqlstate_of(\$q\$$insert\$q\$)}), '42501',
	'without ledger_cqrs.restoring, a direct INSERT into ledger.events is refused (42501)');
is(dst(q{SELECT sqlstate_of($$UPDATE ledger.events SET type = 'x' WHERE position = 10$$)}), '42501',
	'UPDATE of ledger.events is refused');
is($target->safe_psql('dst', q{SET ledger_cqrs.restoring = on;
	SELECT sqlstate_of($$UPDATE ledger.events SET type = 'x' WHERE position = 10$$),
	       sqlstate_of($$DELETE FROM ledger.events WHERE position = 10$$),
	       sqlstate_of($$TRUNCATE ledger.events$$)}),
	'42501|42501|42501', 'with ledger_cqrs.restoring, UPDATE, DELETE and TRUNCATE stay refused');
is(dst(q{SELECT sqlstate_of($$INSERT INTO ledger.balances VALUES ('x', 'USD', 0, 0, 0, 0, 0)$$),
                sqlstate_of($$INSERT INTO page_views VALUES ('x', 'y', 1, 1, 1)$$),
                sqlstate_of($$DELETE FROM analytics.leg_totals$$)}),
	'42501|42501|42501', 'the read models and the restored projection tables refuse direct writes');
dst('CREATE ROLE app LOGIN');
is($target->safe_psql('dst', q{SELECT ledger.stream_version('x');
	SET ROLE app;
	SELECT sqlstate_of('SET ledger_cqrs.restoring = on')}),
	"0\n42501", 'only a superuser may set ledger_cqrs.restoring');
is(dst(q{SELECT count(*) FROM ledger.events WHERE stream = 'evil:1' OR type = 'x'}), '0',
	'nothing was forged');
check_ledger_invariants($target, 'dst', 'target at the end');

#
# the same dump restored in parallel (--jobs=2) and in one transaction
#
for my $mode ([ 'dst_jobs', '--jobs=2' ], [ 'dst_single', '--single-transaction' ])
{
	my ($db, $opt) = @$mode;
	$target->safe_psql('postgres', "CREATE DATABASE $db");
	{
		local $ENV{PGOPTIONS} = '-c ledger_cqrs.restoring=on';
		$target->command_checks_all([ 'pg_restore', $opt, '-d', $db, $dump ],
			0, [qr/^$/], [qr/^$/], "pg_restore $opt");
	}
	my $sql = q{SET TimeZone = 'UTC';
		SELECT position, stream, version, type, data, metadata, recorded_at
		  FROM ledger.events WHERE position > 9 ORDER BY position};
	is($target->safe_psql($db, $sql), $source->safe_psql('src', $sql),
		"pg_restore $opt: the log after position 9 is identical");
	$target->safe_psql($db, q{SELECT ledger.transfer('after-restore', 'acct1', 'acct2', 1, 'USD')});
	catch_up_all($target, $db, "pg_restore $opt");
	check_ledger_invariants($target, $db, "pg_restore $opt");
}

$source->stop;
$target->stop;
done_testing();
