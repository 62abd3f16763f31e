# After a crash, catch-up of an async projection with snapshots resumes from
# its committed checkpoint (and rebuilds from its snapshot), not from 0, and
# the projection verifies.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('snapcrash');
$node->init;
$node->append_conf('postgresql.conf', "ledger_cqrs.projection_snapshot_interval = 2000\n");
$node->start;
sub q1 { return $node->safe_psql('postgres', shift); }

q1('CREATE EXTENSION ledger_cqrs');
q1(q{SELECT ledger.open_account('a' || i) FROM generate_series(1, 20) i});

# An async projection over the transfer legs, snapshotted every 2,000 events.
q1(q{SELECT ledger.create_projection('legs', $$
	SELECT l->>'account' AS account, count(*) AS legs, sum((l->>'amount')::numeric) AS moved
	  FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') AS l
	 WHERE e.type = 'TransferPosted' GROUP BY 1 $$, 'async')});
# (created over a small log, which it filled at once)
my $base = q1(q{SELECT events_applied FROM ledger.projection_status WHERE name = 'legs'});

# 10,000 postings, committed in batches.
for my $b (0 .. 9)
{
	q1(qq{SELECT ledger.transfer('t$b-' || i, 'a' || (1 + i % 20), 'a' || (1 + (i + 7) % 20), i % 90 + 1, 'USD')
	        FROM generate_series(1, 1000) i});
}
my $log = q1(q{SELECT count(*) FROM ledger.events});

# Catch up part of the way: 6 batches of 1,000 events, each committed.
q1(q{SELECT ledger.catch_up('legs', 1000)}) for 1 .. 6;
my $applied_before = q1(q{SELECT events_applied FROM ledger.projection_status WHERE name = 'legs'});
is($applied_before, $base + 6000, 'six committed batches applied before the crash');
my $snapshots = q1(q{SELECT count(*) FROM ledger.projection_snapshots WHERE name = 'legs'});
ok($snapshots >= 2, "snapshots were taken while catching up ($snapshots)");

$node->stop('immediate');
$node->start;

is(q1(q{SELECT events_applied FROM ledger.projection_status WHERE name = 'legs'}), $base + 6000,
	'after the crash the checkpoint is the last committed batch');
is(q1(q{SELECT lag_events FROM ledger.projection_status WHERE name = 'legs'}), $log - $base - 6000,
	'the lag is exactly what was not applied');

# Catch-up resumes from the checkpoint: it applies only the rest.
my $resumed = q1(q{SELECT ledger.catch_up('legs')});
is($resumed, $log - $base - 6000, 'catch-up after the crash applied only the events after the checkpoint, not from 0');
is(q1(q{SELECT ledger.verify_projection('legs')}), 't', 'the projection verifies after catch-up');
is(q1(q{SELECT sum(legs) FROM legs}), q1(q{SELECT count(*) * 2 FROM ledger.events WHERE type = 'TransferPosted'}),
	'every leg counted exactly once');

# A rebuild after the crash starts from the newest matching snapshot.
q1(q{SELECT ledger.transfer('after' || i, 'a3', 'a4', 2, 'USD') FROM generate_series(1, 300) i});
q1(q{SELECT ledger.catch_up('legs')});
$log = q1(q{SELECT count(*) FROM ledger.events});
my $newest = q1(q{SELECT max(checkpoint_position) FROM ledger.projection_snapshots WHERE name = 'legs'});
my $replayed = q1(q{SELECT ledger.rebuild_projection('legs')});
ok($replayed > 0 && $replayed < $log, "the rebuild replayed $replayed of $log events, starting from a snapshot");
is($replayed, q1(qq{SELECT count(*) FROM ledger.events WHERE position > $newest}),
	'it replayed exactly the events after the newest snapshot');
is(q1(q{SELECT ledger.verify_projection('legs')}), 't', 'and the rebuilt projection verifies');

# A crash in the middle of a rebuild leaves the old complete table.
q1(qq{SELECT ledger.transfer('late' || i, 'a1', 'a2', 1, 'USD') FROM generate_series(1, 500) i});
my $rows_before = q1(q{SELECT string_agg(account || ':' || legs, ',' ORDER BY account) FROM legs});
my $h = IPC::Run::start(['psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	q{BEGIN; SELECT ledger.rebuild_projection('legs'); SELECT pg_sleep(60); COMMIT;}],
	'>', \my $out, '2>', \my $err);
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND wait_event = 'PgSleep'})
  or die 'the rebuild did not get to its sleep';
$node->stop('immediate');
eval { $h->finish; };
$node->start;
is(q1(q{SELECT string_agg(account || ':' || legs, ',' ORDER BY account) FROM legs}), $rows_before,
	'an interrupted rebuild left the old complete table');
is(q1(q{SELECT state FROM ledger.projection_status WHERE name = 'legs'}), 'live',
	'and the projection is still live');
q1(q{SELECT ledger.catch_up('legs')});
is(q1(q{SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status}), 't',
	'every projection verifies after the second crash and catch-up');

$node->stop;
done_testing();
