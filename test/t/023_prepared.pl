# Two-phase commit and the posting caches.
#
# A backend caches what its own transaction wrote: a currency it registered
# (the currency cache), a balance row it created (the "known balances" that
# let a posting skip the account lock taken for new rows).  After PREPARE
# TRANSACTION those rows belong to the prepared transaction, and ROLLBACK
# PREPARED runs as another transaction: no abort fires in the preparing
# backend.  The caches must be forgotten at PREPARE, or:
#  - a currency whose registration was rolled back would still be accepted
#    by that backend, and its postings committed for good;
#  - a posting that creates a balance row would skip the account lock, and
#    slip past a concurrent close_account.

use strict;
use warnings;

use lib 't';
use LedgerTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('prepared');
$node->init;
$node->append_conf('postgresql.conf', 'max_prepared_transactions = 5');
$node->start;

sub q1 { return $node->safe_psql('postgres', shift); }

q1('CREATE EXTENSION ledger_cqrs');
q1(q{SELECT ledger.open_account(a) FROM unnest(ARRAY['a1', 'b1', 'c2', 'd2']) a});

# 1. the currency: registered, used, prepared, rolled back; then used again
#    in the same session
my ($ret, $out, $err) = $node->psql('postgres', <<'SQL');
BEGIN;
SELECT ledger.register_currency('XYZ', 2);
SELECT ledger.transfer('t-x1', 'a1', 'b1', 1, 'XYZ');
PREPARE TRANSACTION 'p1';
ROLLBACK PREPARED 'p1';
\set VERBOSITY sqlstate
SELECT ledger.transfer('t-x2', 'a1', 'b1', 5, 'XYZ');
SQL
like($err, qr/ERROR:\s+22023/,
	'after ROLLBACK PREPARED, the same session cannot post in the unregistered currency (22023)');
is(q1(q{SELECT count(*) FROM ledger.currencies WHERE code = 'XYZ'}), '0', 'XYZ is not registered');
is(q1(q{SELECT count(*) FROM ledger.events WHERE stream IN ('currency:XYZ', 'transfer:t-x1', 'transfer:t-x2')}),
	'0', 'nothing of it is in the log');
is(q1(q{SELECT count(*) FROM ledger.balances WHERE currency = 'XYZ'}), '0', 'nor in the balances');

# 2. the balance row: created, prepared, rolled back; then a close of the
#    account in another session, and a posting that would create the row
#    again in the first
my $a = LoadClient->new($node, 'postgres');
my $b = LoadClient->new($node, 'postgres');
$a->feed(
	'BEGIN;',
	q{SELECT ledger.transfer('k1', 'c2', 'd2', 1, 'USD');},
	q{PREPARE TRANSACTION 'p2';},
	q{ROLLBACK PREPARED 'p2';},
	q{SELECT 'a-ready';});
ok(wait_for('session a', 60, sub { $a->collect; return grep { $_ eq 'a-ready' } $a->lines; }),
	'session a posted, prepared and rolled back');
is(q1(q{SELECT count(*) FROM ledger.balances WHERE account = 'c2'}), '0', 'c2 has no balance row');
$b->feed('BEGIN;', q{SELECT ledger.close_account('c2');}, q{SELECT 'b-closed';});
ok(wait_for('session b', 60, sub { $b->collect; return grep { $_ eq 'b-closed' } $b->lines; }),
	'session b closes c2 and keeps its transaction open');
$a->feed(q{SELECT ledger.transfer('k2', 'c2', 'd2', 7, 'USD');}, q{SELECT 'a-done';});
ok( wait_for(
		'the posting to wait', 60,
		sub {
			$a->collect;
			return q1(q{SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)})
			  eq 't';
		}),
	'the posting that would create c2\'s balance row waits for the closing transaction');
$b->feed('COMMIT;', q{SELECT 'b-committed';});
ok( wait_for(
		'both sessions', 60,
		sub {
			$b->collect;
			$a->collect;
			return (grep { $_ eq 'a-done' } $a->lines) && (grep { $_ eq 'b-committed' } $b->lines);
		}),
	'and goes on once it commits');
$a->finish;
$b->finish;
is(join(',', $a->error_codes), '55000', 'then fails: c2 is closed (55000)');
is(q1(q{SELECT status FROM ledger.accounts WHERE account = 'c2'}), 'closed', 'c2 is closed');
is(q1(q{SELECT count(*) FROM ledger.balances WHERE account = 'c2'}), '0', 'with no balance');
is(q1(q{SELECT count(*) FROM ledger.events WHERE stream IN ('transfer:k1', 'transfer:k2')}),
	'0', 'and no posting in the log');
check_ledger_invariants($node, 'postgres', 'after the prepared transactions');

$node->stop;
done_testing();
