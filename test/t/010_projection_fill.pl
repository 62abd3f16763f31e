# Retroactive fills of projections over a large log, under a pgbench storm.
#
# The log holds 300,000 events, far more than ledger_cqrs.fill_sync_limit,
# so ledger.create_projection returns at once with the projection in state
# catching_up and the projector fills it in batches of
# ledger_cqrs.fill_batch_size (set server-wide to 20,000 here), each batch
# committed with its cursor.  An inline projection is then handed over to
# the appending transactions under a brief SHARE lock on ledger.events.
#
# Eight pgbench clients append events (single appends and three-event
# append_events, to old streams and new ones) for the whole fill and for a
# few seconds after the projections went live.  A sampler watches the
# registry every 10 ms: the fill must be seen advancing in committed steps
# of exactly one batch.
#
# Afterwards each projection must equal its query recomputed from the log
# (EXCEPT ALL both ways), verify, and count every matching event exactly
# once: nothing lost and nothing applied twice across the batches, the
# hand-over and the inline maintenance that follows it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use LedgerTest qw(bulk_append_sql $APPEND_PGBENCH $SAMPLE_FILL_SQL);
use IPC::Run;
use Time::HiRes qw(time usleep);

my $batch      = 20000;
my $log_events = 300_000;    # loaded before the projections exist
my $after_live = 3;          # seconds of load once both are live

my $node = PostgreSQL::Test::Cluster->new('fill');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
max_worker_processes = 16
log_statement = none
CONF
$node->start;

sub q1 { return $node->safe_psql('postgres', shift); }

q1('CREATE EXTENSION ledger_cqrs');

# server-wide, so that the projector (its own session) folds batches of
# this size; it is started by create_projection, after the reload.  (PG15's
# ALTER SYSTEM only knows the setting once the library is loaded.)
q1("LOAD 'ledger_cqrs'; ALTER SYSTEM SET ledger_cqrs.fill_batch_size = $batch");
q1('SELECT pg_reload_conf()');
$node->poll_query_until('postgres',
	"SELECT current_setting('ledger_cqrs.fill_batch_size', true) = '$batch'")
  or die 'fill_batch_size was not reloaded';

# the log: 6,000 append_events of 50 events each over 1,000 streams; every
# third event is a Counted one carrying n
my $chunks = $log_events / 50;
for my $part (0 .. 2)
{
	my ($from, $to) = ($part * $chunks / 3 + 1, ($part + 1) * $chunks / 3);
	q1(bulk_append_sql($from, $to));
}
my $loaded_max = q1('SELECT max(position) FROM ledger.events');
my $loaded     = q1('SELECT count(*) FROM ledger.events');
cmp_ok($loaded, '>=', $log_events, "the log holds $loaded events");

# a sampler of the registry: one row per projection every 10 ms until all
# are live (read-only, so it holds back no catch-up horizon)
q1($SAMPLE_FILL_SQL);

# pgbench, restarted every 2 s until told to stop, so that it can be stopped
# cleanly and every run's report checked
my $tmp = PostgreSQL::Test::Utils::tempdir;
open my $fh, '>', "$tmp/one.sql" or die $!;
print $fh $APPEND_PGBENCH;
close $fh;
open $fh, '>', "$tmp/two.sql" or die $!;
print $fh <<'PGBENCH';
\set s random(0, 1019)
\set n random(0, 999)
SELECT ledger.append_events('s' || :s::int, jsonb_build_array(
         jsonb_build_object('type', 'Counted', 'data', jsonb_build_object('n', :n::int)),
         jsonb_build_object('type', 'Other'),
         jsonb_build_object('type', 'Counted', 'data', jsonb_build_object('n', 1000 - :n::int))));
PGBENCH
close $fh;

my $stop   = "$tmp/stop";
my $host   = $node->host;
my $port   = $node->port;
my $runner = qq{
	runs=0
	while [ ! -e '$stop' ]; do
		pgbench -n -c 8 -j 2 -T 2 -M prepared -h '$host' -p $port \\
			-f '$tmp/one.sql\@3' -f '$tmp/two.sql\@1' postgres || exit \$?
		runs=\$((runs + 1))
	done
	echo "pgbench runs: \$runs"
};
my $pgbench = IPC::Run::start([ 'bash', '-c', $runner ],
	'>', "$tmp/pgbench.out", '2>', "$tmp/pgbench.err");

# wait for a condition while pgbench runs; die if pgbench stopped
sub wait_for
{
	my ($what, $timeout, $cond) = @_;
	my $deadline = time + $timeout;
	until ($cond->())
	{
		die "pgbench stopped: " . slurp_file("$tmp/pgbench.err") unless $pgbench->pumpable;
		die "timed out waiting for $what" if time > $deadline;
		usleep(50_000);
	}
}

# pgbench is appending before the projections are created
wait_for('pgbench to append', 60,
	sub { q1("SELECT count(*) >= 1000 FROM ledger.events WHERE position > $loaded_max") eq 't' });

my $q_inline = q{SELECT stream, count(*) AS n, sum((data->>'n')::int) AS total,
       min(position) AS first_position, max(position) AS last_position
  FROM ledger.events WHERE type = 'Counted' GROUP BY stream};
my $q_async = q{SELECT stream, type, count(*) AS n, sum(version) AS version_sum,
       max(position) AS last_position
  FROM ledger.events GROUP BY stream, type};

# The sampler starts before the projections exist, so that it watches each
# fill from its first batch: a fill of this log takes well under a second,
# and a sampler started after the checks below could see only its tail.
my $t0 = time;
my $sampled = '';
my $sampler = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c',
	  q{SELECT at_s, name, state, events_applied
	      FROM sample_fill(ARRAY['fill_async', 'fill_inline'], '90 s')} ],
	'>', \$sampled, '2>', "$tmp/sampler.err");
wait_for('the sampler to start', 60,
	sub { q1(q{SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM sample_fill(%' AND pid <> pg_backend_pid()}) eq '1' });

q1("SELECT ledger.create_projection('fill_inline', \$q\$$q_inline\$q\$, 'inline')");
q1("SELECT ledger.create_projection('fill_async', \$q\$$q_async\$q\$, 'async')");

my ($st_i, $total_i) = split /\|/,
  q1("SELECT state, fill_total FROM ledger.projection_status WHERE name = 'fill_inline'");
is($st_i, 'catching_up', 'inline projection over the large log starts catching_up');
cmp_ok($total_i, '>', $loaded, "its fill_total ($total_i) counts the log at creation");
is(q1("SELECT state FROM ledger.projection_status WHERE name = 'fill_async'"),
	'catching_up', 'async projection over the large log starts catching_up');

# both fills watched until live, while pgbench keeps appending
$sampler->finish or die 'the sampler failed: ' . slurp_file("$tmp/sampler.err");
my @samples = map { [ split /\|/ ] } split /\n/, $sampled;
note sprintf('both projections live after %.1f s, %d samples', time - $t0, scalar @samples);

for my $name ('fill_inline', 'fill_async')
{
	my @mine  = grep { $_->[1] eq $name } @samples;
	my @steps = ();    # distinct events_applied values while catching_up
	my $prev  = -1;
	my $monotonic = 1;
	my @odd;
	for my $s (@mine)
	{
		$monotonic = 0 if $s->[3] < $prev;
		$prev = $s->[3];
		next unless $s->[2] eq 'catching_up';
		push @steps, $s->[3] if !@steps || $steps[-1] != $s->[3];
		push @odd, $s->[3] if $s->[3] % $batch != 0;
	}
	note "$name: events_applied while catching_up: @steps";
	is($mine[-1][2], 'live', "$name went live");
	ok($monotonic, "$name: events_applied never went down");
	cmp_ok(scalar(grep { $_ > 0 } @steps), '>=', 2,
		"$name: seen catching_up with events_applied growing in committed steps");
	is_deeply(\@odd, [],
		"$name: every committed step is a whole batch of $batch (the server-wide fill_batch_size)");
}

# pgbench appended while the inline projection was being filled and after
# its hand-over
my $live_at = q1("SELECT updated_at FROM ledger.projections WHERE name = 'fill_inline'");
wait_for('appends after the hand-over', 60,
	sub { q1("SELECT count(*) >= 1000 FROM ledger.events WHERE recorded_at > '$live_at'") eq 't' });
sleep $after_live;
die 'pgbench stopped: ' . slurp_file("$tmp/pgbench.err") unless $pgbench->pumpable;
open $fh, '>', $stop or die $!;
close $fh;
ok($pgbench->finish, 'pgbench ran without a client error for the whole test');
my $pgb_out = slurp_file("$tmp/pgbench.out");
my @failed = ($pgb_out =~ /number of failed transactions: (\d+)/g);
ok(@failed > 0 && !grep({ $_ != 0 } @failed), 'no pgbench transaction failed') or diag $pgb_out;
note(($pgb_out =~ /(pgbench runs: \d+)/)[0] // 'pgbench runs: ?');
note 'pgbench stderr: ' . slurp_file("$tmp/pgbench.err") if -s "$tmp/pgbench.err";

my ($before_live, $after) = split /\|/, q1(qq{
	SELECT count(*) FILTER (WHERE position > $loaded_max AND recorded_at < '$live_at'),
	       count(*) FILTER (WHERE recorded_at > '$live_at')
	  FROM ledger.events});
cmp_ok($before_live, '>', 0, "pgbench appended $before_live events before the inline hand-over");
cmp_ok($after, '>', 0, "and $after after it, folded inline");

# the projector catches the async one up
my $deadline = time + 60;
usleep(20_000)
  until q1(q{SELECT state = 'live' AND lag_events = 0 FROM ledger.projection_status
              WHERE name = 'fill_async'}) eq 't'
  || time > $deadline;

# the inline projection is its query
is(q1(qq{
	SELECT count(*) FROM (
	  (SELECT * FROM fill_inline EXCEPT ALL ($q_inline))
	  UNION ALL
	  (($q_inline) EXCEPT ALL SELECT * FROM fill_inline)) d}),
	0, 'fill_inline equals its query recomputed from the log');
is(q1(q{SELECT (SELECT sum(n) FROM fill_inline) =
               (SELECT count(*) FROM ledger.events WHERE type = 'Counted')}),
	't', 'fill_inline counts every Counted event exactly once');
is(q1("SELECT ledger.verify_projection('fill_inline')"), 't', 'fill_inline verifies');
is(q1("SELECT state || '/' || lag_events FROM ledger.projection_status WHERE name = 'fill_inline'"),
	'live/0', 'fill_inline is live, lag 0');

# and so is the async one, caught up
is(q1(qq{
	SELECT count(*) FROM (
	  (SELECT * FROM fill_async EXCEPT ALL ($q_async))
	  UNION ALL
	  (($q_async) EXCEPT ALL SELECT * FROM fill_async)) d}),
	0, 'fill_async equals its query recomputed from the log');
is(q1(q{SELECT (SELECT sum(n) FROM fill_async) = (SELECT count(*) FROM ledger.events)}),
	't', 'fill_async counts every event exactly once');
is(q1(q{SELECT events_applied = (SELECT count(*) FROM ledger.events)
          FROM ledger.projection_status WHERE name = 'fill_async'}),
	't', 'fill_async applied as many events as the log holds');
is(q1("SELECT state || '/' || lag_events FROM ledger.projection_status WHERE name = 'fill_async'"),
	'live/0', 'fill_async is live, lag 0');

is(q1('SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status'),
	't', 'every projection verifies, the built-in ones included');

# A fill that fails holds up nothing else.  The query of this inline
# projection breaks on an event at the end of the log: its batched fill
# turns it failed, with the error, and the projector's rounds, which also
# catch up the async projection, go on.
q1(q{SELECT ledger.append('bad:1', 'BadNumber', '{"v": "abc"}')});
# (its state is read in the creating transaction: once that commits, the
# projector may fill it, and fail it, before another session looks)
is(q1(q{BEGIN;
	SELECT 'created' FROM ledger.create_projection('fill_bad',
	  'SELECT e.type, sum((e.data->>''v'')::int) AS s FROM ledger.events e
	    WHERE e.type = ''BadNumber'' GROUP BY 1');
	SELECT state FROM ledger.projection_status WHERE name = 'fill_bad';
	COMMIT;}),
	"created\ncatching_up", 'an inline projection whose query fails on an old event starts catching_up');
q1(q{SELECT ledger.append('after-bad:' || i, 'AfterBad', '{}') FROM generate_series(1, 100) AS i});
ok($node->poll_query_until('postgres',
		q{SELECT state = 'failed' FROM ledger.projection_status WHERE name = 'fill_bad'}),
	'its fill turns it failed');
like(q1("SELECT last_error FROM ledger.projection_status WHERE name = 'fill_bad'"),
	qr/invalid input syntax for type integer/, 'with the error as last_error');
ok($node->poll_query_until('postgres',
		q{SELECT state = 'live' AND lag_events = 0 FROM ledger.projection_status WHERE name = 'fill_async'}),
	'the async projection catches up with the later events meanwhile');
is(q1(q{SELECT ledger.catch_up()}), '0', 'catch_up() of everything returns, with nothing left');
is(q1(q{SELECT ledger.append('after-bad:x', 'AfterBad', '{}')}), '1',
	'appends go on: a failed inline projection is not folded into');
is(q1("SELECT ledger.verify_projection('fill_async') AND ledger.verify_projection('fill_inline')"),
	't', 'the other projections still verify');

$node->stop;
done_testing();
