# Projections maintained on a logical replica.
#
# The publisher publishes ledger.events and the built-in read models; the
# subscriber applies them (the append-only and read-model guards admit the
# apply worker, and re-stamp tx_order locally) and maintains projections of
# its own from the replicated events: an inline one folded by the apply
# worker, and an async one caught up from the local log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->start;
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->start;

# The same extension on both; CREATE EXTENSION appends positions 1-9 on each
# side, so the subscription copies no initial data and replicates changes.
$_->safe_psql('postgres', 'CREATE EXTENSION ledger_cqrs') for ($pub, $sub);

my $tables = 'ledger.events, ledger.accounts, ledger.balances, ledger.account_entries, '
  . 'ledger.currencies, ledger.balance_snapshots';
$pub->safe_psql('postgres', "CREATE PUBLICATION ledger_pub FOR TABLE $tables");
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION ledger_sub CONNECTION '$connstr' PUBLICATION ledger_pub WITH (copy_data = false)");
$pub->wait_for_catchup('ledger_sub');

# Projections that exist only on the subscriber.
$sub->safe_psql('postgres', q{
	SELECT ledger.create_projection('legs_by_account', $$
		SELECT l->>'account' AS account, l->>'currency' AS currency,
		       count(*) AS legs, sum((l->>'amount')::numeric) AS moved
		  FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') AS l
		 WHERE e.type = 'TransferPosted' GROUP BY 1, 2 $$);
	SELECT ledger.create_projection('types_async',
		'SELECT type, count(*) AS n, max(position) AS last FROM ledger.events GROUP BY type', 'async');
});

# Work on the publisher: accounts, transfers (one multi-leg), user events,
# and a batch in one transaction.
$pub->safe_psql('postgres', q{
	SELECT ledger.register_currency('XTS', 4);
	SELECT ledger.open_account('a' || i, CASE WHEN i = 1 THEN '{debits_must_not_exceed_credits}'::text[] ELSE '{}' END)
	  FROM generate_series(1, 10) i;
	SELECT ledger.transfer('t' || i, 'a' || (1 + i % 9 + 1), 'a' || (1 + (i + 3) % 9 + 1),
	                       (i % 50 + 1)::numeric, (ARRAY['USD', 'EUR', 'JPY'])[1 + i % 3])
	  FROM generate_series(1, 300) i;
	SELECT ledger.post_entry('fx', '[
		{"account": "a2", "side": "debit", "amount": 10, "currency": "USD"},
		{"account": "a3", "side": "credit", "amount": 10, "currency": "USD"},
		{"account": "a3", "side": "debit", "amount": 9, "currency": "EUR"},
		{"account": "a2", "side": "credit", "amount": 9, "currency": "EUR"}]');
	SELECT ledger.append('user:' || (i % 7), 'Clicked', jsonb_build_object('n', i)) FROM generate_series(1, 50) i;
	BEGIN;
	SELECT ledger.append_events('batch', '[{"type": "A"}, {"type": "B"}, {"type": "C"}]');
	SELECT ledger.transfer('in-batch', 'a4', 'a5', 1, 'USD');
	COMMIT;
});
$pub->wait_for_catchup('ledger_sub');

# The log arrived whole and in version order.
my $log_query = q{SELECT string_agg(format('%s|%s|%s|%s|%s', position, stream, version, type, data), ',' ORDER BY position)
                    FROM ledger.events WHERE position > 9};
is($sub->safe_psql('postgres', $log_query), $pub->safe_psql('postgres', $log_query),
	'the subscriber holds the same events');
is($sub->safe_psql('postgres',
	'SELECT count(*) FROM (SELECT stream FROM ledger.events GROUP BY stream HAVING count(*) <> max(version)) s'),
	'0', 'versions are gapless on the subscriber');

# tx_order was re-stamped from the subscriber's own transactions.
ok($sub->safe_psql('postgres',
	q{SELECT bool_and(tx_order::text::bigint <= pg_current_xact_id()::text::bigint) FROM ledger.events}) eq 't',
	'tx_order comes from the subscriber');

# Replicated read models are consistent with the replicated log.
is($sub->safe_psql('postgres',
	q{SELECT string_agg(name || '=' || ledger.verify_projection(name), ',' ORDER BY name)
	    FROM ledger.projection_status WHERE kind = 'builtin'}),
	'ledger.account_entries=true,ledger.accounts=true,ledger.balances=true,ledger.currencies=true,ledger.currency_totals=true',
	'built-in read models verify on the subscriber');

# The subscriber's own inline projection was folded by the apply worker.
is($sub->safe_psql('postgres', q{SELECT ledger.verify_projection('legs_by_account')}), 't',
	'inline projection maintained from replicated events verifies');
is($sub->safe_psql('postgres', q{SELECT sum(legs) FROM legs_by_account}),
	$pub->safe_psql('postgres',
		q{SELECT count(*) FROM ledger.events e, jsonb_array_elements(e.data->'legs') WHERE e.type = 'TransferPosted'}),
	'every replicated leg was folded exactly once');

# The async one catches up from the local log.
$sub->safe_psql('postgres', q{CALL ledger.wait_for_projection('types_async')});
is($sub->safe_psql('postgres', q{SELECT ledger.verify_projection('types_async')}), 't',
	'async projection on the subscriber verifies after catch-up');
is($sub->safe_psql('postgres', q{SELECT n FROM types_async WHERE type = 'Clicked'}), '50',
	'async projection counted the replicated events');

# read_all works on the subscriber.
is($sub->safe_psql('postgres', q{SELECT count(*) FROM ledger.read_all(9, NULL)}),
	$pub->safe_psql('postgres', q{SELECT count(*) FROM ledger.events WHERE position > 9}),
	'read_all on the subscriber delivers every replicated event');

# More work after the projections exist, then the invariants once more.
$pub->safe_psql('postgres', q{
	SELECT ledger.transfer('late' || i, 'a6', 'a7', 2, 'JPY') FROM generate_series(1, 40) i;
});
$pub->wait_for_catchup('ledger_sub');
$sub->safe_psql('postgres', q{CALL ledger.wait_for_projection('types_async')});
is($sub->safe_psql('postgres', q{SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status}),
	't', 'every projection verifies on the subscriber after more traffic');
is($sub->safe_psql('postgres', q{SELECT bool_and(debits = credits) FROM ledger.currency_totals}),
	't', 'the trial balance balances on the subscriber');

# Outside the apply worker, the subscriber's log is as append-only as ever.
my ($ret, $out, $err) = $sub->psql('postgres',
	q{INSERT INTO ledger.events VALUES (100000, 'x', 1, 'Forged', '{}', '{}', now(), '1')});
isnt($ret, 0, 'a direct INSERT on the subscriber is refused');
like($err, qr/append-only/, 'and the error names the rule');
($ret, $out, $err) = $sub->psql('postgres', q{UPDATE ledger.balances SET balance = 0});
isnt($ret, 0, 'a direct UPDATE of a read model on the subscriber is refused');

$sub->stop;
$pub->stop;
done_testing();
