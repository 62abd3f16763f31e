# Projections across crashes (immediate shutdown: no checkpoint, recovery
# from WAL at the next start).
#
# (a) Crashes during a fill.  An inline projection over a 250,000-event log
#     is being filled by the projector in committed batches of 20,000; a
#     transaction holding an uncommitted append keeps the hand-over from
#     finishing.  The server is stopped in immediate mode once two batches
#     are committed, and again (after the projector resumed the fill) while
#     the hand-over waits for its lock with the rest of the log folded but
#     not committed.  After each restart the committed batches are there,
#     exactly consistent with the saved cursor and events_applied; CALL
#     ledger.wait_for_projection finishes the fill; the projection equals
#     its query: no batch applied twice, none lost, and the crashed
#     transactions' events are nowhere.
# (b) A crash under load.  pgbench (appends to the streams the inline
#     projection groups, and transfers that feed the built-in read models)
#     and a client that appends ids 1, 2, 3 ... one per transaction and
#     prints each id only after its COMMIT returned run while the projector
#     follows an async projection.  After the crash and restart every id the
#     client saw committed is in the log, at the version it was told, the
#     ids in the log have no hole, every stream's versions are gapless, the
#     async projection's cursor and contents are consistent, and once caught
#     up (projector + CALL ledger.wait_for_projection) every projection,
#     built-ins included, verifies.
# (c) With ledger_cqrs in shared_preload_libraries, a fill interrupted by a
#     crash is finished after the restart by the projector that starts with
#     the server, without anyone calling catch_up.

use strict;
use warnings;

use lib 't';
use LedgerTest qw(bulk_append_sql $APPEND_PGBENCH);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $batch = 20000;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', <<"CONF");
max_worker_processes = 16
log_statement = none
ledger_cqrs.fill_batch_size = $batch
CONF
$node->start;

sub q1 { return $node->safe_psql('postgres', shift); }

# wait until $cond returns true, or die after $timeout seconds
sub wait_for
{
	my ($what, $timeout, $cond) = @_;
	my $deadline = time + $timeout;
	until ($cond->())
	{
		die "timed out waiting for $what" if time > $deadline;
		usleep(10_000);
	}
}

# a psql session kept open in the background
my $marker = 0;

sub bg_start
{
	my $s = { in => '', out => '', err => '', timer => IPC::Run::timer(180) };
	$s->{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', '-' ],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err}, $s->{timer});
	return $s;
}

sub bg_query
{
	my ($s, $sql) = @_;
	my $m = '__done_' . ++$marker;
	$s->{out} = '';
	$s->{in} .= "$sql\n\\echo $m\n";
	$s->{timer}->start(180);
	$s->{h}->pump
	  until $s->{out} =~ /\Q$m\E/ || $s->{timer}->is_expired || !$s->{h}->pumpable;
	die "background psql: no answer to $sql: $s->{err}" unless $s->{out} =~ /\Q$m\E/;
	(my $r = $s->{out}) =~ s/\n?\Q$m\E\n?//;
	return $r;
}

# drive a projection with CALL ledger.wait_for_projection; if that fails,
# report it and finish with catch_up so that the remaining checks still run
sub wait_for_projection
{
	my ($name) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"CALL ledger.wait_for_projection('$name', '60 s')");
	is($rc, 0, "CALL ledger.wait_for_projection('$name') succeeds") or diag $err;
	return if $rc == 0;
	wait_for("$name to catch up", 60, sub {
		q1(qq{SELECT ledger.catch_up('$name');
		      SELECT state = 'live' AND lag_events = 0 FROM ledger.projection_status
		       WHERE name = '$name'}) =~ /t$/;
	});
}

sub differences
{
	my ($table, $query) = @_;
	return q1(qq{
	SELECT count(*) FROM (
	  (SELECT * FROM $table EXCEPT ALL ($query))
	  UNION ALL
	  (($query) EXCEPT ALL SELECT * FROM $table)) d});
}

# events_applied is the number of events at or before the saved cursor
sub cursor_consistent
{
	my ($name) = @_;
	return q1(qq{
	SELECT events_applied = (SELECT count(*) FROM ledger.events e
	                          WHERE (e.tx_order, e.position)
	                                <= (p.checkpoint_order, p.checkpoint_position))
	  FROM ledger.projections p WHERE name = '$name'});
}

q1('CREATE EXTENSION ledger_cqrs');
for my $part (0 .. 4)
{
	my ($from, $to) = ($part * 1000 + 1, ($part + 1) * 1000);
	q1(bulk_append_sql($from, $to));
}
my $loaded = q1('SELECT count(*) FROM ledger.events');
note "log: $loaded events";

my $q_inline = q{SELECT stream, count(*) AS n, sum((data->>'n')::int) AS total,
       min(position) AS first_position, max(position) AS last_position
  FROM ledger.events WHERE type = 'Counted' GROUP BY stream};

#
# (a) crash during a fill
#
my $blocker = bg_start();
my $blocker_version = bg_query($blocker,
	q{BEGIN; SELECT ledger.append('blocker', 'Counted', jsonb_build_object('n', 1));});
is($blocker_version, 1, 'a transaction holds an uncommitted append');

q1("SELECT ledger.create_projection('crash_inline', \$q\$$q_inline\$q\$, 'inline')");
is(q1("SELECT state FROM ledger.projection_status WHERE name = 'crash_inline'"),
	'catching_up', 'the inline projection over the large log is catching_up');

my ($state, $applied, $pid);
wait_for('two committed batches', 120, sub {
	($state, $applied) = split /\|/,
	  q1("SELECT state, events_applied FROM ledger.projections WHERE name = 'crash_inline'");
	return $applied >= 2 * $batch;
});
$node->stop('immediate');
note "crashed with crash_inline $state, $applied events applied";
is($state, 'catching_up', 'the crash came before the hand-over');
$blocker->{h}->kill_kill;
$node->start;

my ($st, $ev) = split /\|/,
  q1("SELECT state, events_applied FROM ledger.projections WHERE name = 'crash_inline'");
is($st, 'catching_up', 'after the restart the projection is still catching_up');
cmp_ok($ev, '>=', $applied, "the batches committed before the crash survived ($ev events)");
is($ev % $batch, 0, 'events_applied is a whole number of batches');
is(cursor_consistent('crash_inline'), 't', 'events_applied agrees with the saved cursor');
is(q1("SELECT ledger.verify_projection('crash_inline')"), 't',
	'the partial projection equals its query up to the cursor');
is(q1("SELECT count(*) FROM ledger.events WHERE stream = 'blocker'"), 0,
	'the crashed transaction appended nothing');

# a second crash, in the hand-over: the projector resumes the fill from the
# cursor, folds up to the horizon and waits for SHARE lock on ledger.events,
# which another uncommitted append keeps from it
$blocker = bg_start();
bg_query($blocker, q{BEGIN; SELECT ledger.append('blocker', 'Counted', jsonb_build_object('n', 1));});
$pid = q1('SELECT ledger.start_projector()');
wait_for('the hand-over to wait for its lock', 120, sub {
	q1(q{SELECT count(*) FROM pg_stat_activity
	      WHERE backend_type = 'ledger_cqrs projector' AND wait_event_type = 'Lock'}) == 1;
});
($state, $applied) = split /\|/,
  q1("SELECT state, events_applied FROM ledger.projections WHERE name = 'crash_inline'");
$node->stop('immediate');
note "crashed in the hand-over with crash_inline $state, $applied events applied";
$blocker->{h}->kill_kill;
$node->start;

($st, $ev) = split /\|/,
  q1("SELECT state, events_applied FROM ledger.projections WHERE name = 'crash_inline'");
is($st, 'catching_up', 'after a crash in the hand-over the projection is still catching_up');
is($ev, $applied, "with the batches committed before it ($ev events)");
is($ev % $batch, 0, 'again a whole number of batches');
is(cursor_consistent('crash_inline'), 't', 'events_applied agrees with the saved cursor');
is(q1("SELECT ledger.verify_projection('crash_inline')"), 't',
	'the partial projection equals its query up to the cursor');
is(q1("SELECT count(*) FROM ledger.events WHERE stream = 'blocker'"), 0,
	'the crashed transaction appended nothing');

wait_for_projection('crash_inline');
is(q1("SELECT state || '/' || lag_events FROM ledger.projection_status WHERE name = 'crash_inline'"),
	'live/0', 'crash_inline went live');
is(q1(q{SELECT events_applied = (SELECT count(*) FROM ledger.events)
          FROM ledger.projections WHERE name = 'crash_inline'}),
	't', 'events_applied = the events in the log: none applied twice');
is(differences('crash_inline', $q_inline), 0, 'crash_inline equals its query recomputed from the log');
is(q1(q{SELECT (SELECT sum(n) FROM crash_inline) =
               (SELECT count(*) FROM ledger.events WHERE type = 'Counted')}),
	't', 'crash_inline counts every Counted event exactly once');
is(q1("SELECT ledger.verify_projection('crash_inline')"), 't', 'crash_inline verifies');

#
# (b) crash under load
#
my $q_async = q{SELECT stream, type, count(*) AS n, sum(version) AS version_sum,
       max(position) AS last_position
  FROM ledger.events GROUP BY stream, type};
q1(qq{SET ledger_cqrs.fill_sync_limit = 10000000;
      SELECT ledger.create_projection('crash_async', \$q\$$q_async\$q\$, 'async')});
is(q1("SELECT state FROM ledger.projection_status WHERE name = 'crash_async'"), 'live',
	'crash_async is live');
q1(q{SELECT ledger.open_account('a' || i) FROM generate_series(1, 10) i;
     CREATE SEQUENCE transfer_ids;});
$pid = q1('SELECT ledger.start_projector()');
wait_for('the projector to register', 60,
	sub { q1("SELECT count(*) FROM ledger.projector WHERE pid = $pid") == 1 });

my $tmp = PostgreSQL::Test::Utils::tempdir;
open my $fh, '>', "$tmp/append.sql" or die $!;
print $fh $APPEND_PGBENCH;
close $fh;
open $fh, '>', "$tmp/transfer.sql" or die $!;
print $fh <<'PGBENCH';
\set a random(1, 10)
\set cents random(1, 10000)
SELECT ledger.transfer('t' || nextval('transfer_ids'), 'a' || :a::int, 'a' || (:a::int % 10 + 1),
                       (:cents::int / 100.0)::numeric(12, 2), 'USD');
PGBENCH
close $fh;

# the id client: one transaction per id, each id printed once COMMIT returned
my $ids = 200_000;
open $fh, '>', "$tmp/ids.sql" or die $!;
for my $i (1 .. $ids)
{
	print $fh "BEGIN;\n"
	  . "SELECT ledger.append('ids', 'Id', jsonb_build_object('id', $i)) AS v \\gset\n"
	  . "COMMIT;\n"
	  . "\\echo committed $i :v\n";
}
close $fh;

my $pgbench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '7', '-j', '2', '-T', '120', '-M', 'prepared',
		'-h', $node->host, '-p', $node->port,
		'-f', "$tmp/append.sql\@3", '-f', "$tmp/transfer.sql\@1", 'postgres'
	],
	'>', "$tmp/pgbench.out", '2>', "$tmp/pgbench.err");
my $idclient = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', "$tmp/ids.sql" ],
	'>', "$tmp/ids.out", '2>', "$tmp/ids.err");

my $t_load = time;
wait_for('load', 120, sub {
	die 'pgbench stopped: ' . slurp_file("$tmp/pgbench.err") unless $pgbench->pumpable;
	die 'id client stopped: ' . slurp_file("$tmp/ids.err") unless $idclient->pumpable;
	return time - $t_load >= 3
	  && q1(q{SELECT (SELECT count(*) FROM ledger.events WHERE stream = 'ids') >= 500
	             AND (SELECT count(*) FROM ledger.events WHERE type = 'TransferPosted') >= 100})
	  eq 't';
});
my ($async_applied_before) = q1("SELECT events_applied FROM ledger.projections WHERE name = 'crash_async'");
ok($pgbench->pumpable && $idclient->pumpable, 'pgbench and the id client were running at the crash');
$node->stop('immediate');
$pgbench->finish;
$idclient->finish;

my @claimed = grep { defined } map { /^committed (\d+) (\d+)$/ ? "($1, $2)" : undef }
  split /\n/, slurp_file("$tmp/ids.out");
note scalar(@claimed) . ' ids committed before the crash, as the client saw it';
cmp_ok(scalar @claimed, '>=', 500, 'the id client committed ids before the crash');

$node->start;

q1('CREATE TABLE claimed (id int PRIMARY KEY, version bigint NOT NULL)');
q1('INSERT INTO claimed VALUES ' . join(', ', @claimed));
is(q1(q{SELECT count(*) FROM claimed c
         WHERE NOT EXISTS (SELECT 1 FROM ledger.events e
                            WHERE e.stream = 'ids' AND e.version = c.version
                              AND (e.data->>'id')::int = c.id)}),
	0, 'every id the client saw committed is in the log, at the version it was told');
my ($in_log, $min_id, $max_id) = split /\|/,
  q1(q{SELECT count(*), min((data->>'id')::int), max((data->>'id')::int)
         FROM ledger.events WHERE stream = 'ids'});
is("$min_id..$max_id", "1..$in_log", 'the ids in the log are 1..n, without a hole');
ok($in_log - @claimed == 0 || $in_log - @claimed == 1,
	"at most the id in flight at the crash committed unseen ($in_log in the log, "
	  . scalar(@claimed) . ' seen)');
is(q1(q{SELECT count(*) FROM (SELECT stream FROM ledger.events GROUP BY stream
                               HAVING min(version) <> 1 OR max(version) <> count(*)) g}),
	0, 'every stream\'s versions are gapless after the crash');

# the async projection, as the crash left it
is(cursor_consistent('crash_async'), 't', 'crash_async: events_applied agrees with its cursor');
is(q1("SELECT ledger.verify_projection('crash_async')"), 't',
	'crash_async equals its query up to its cursor');
cmp_ok(q1("SELECT events_applied FROM ledger.projections WHERE name = 'crash_async'"),
	'>=', $async_applied_before, 'crash_async kept what it had committed');
# the inline one was maintained in the appending transactions
is(differences('crash_inline', $q_inline), 0,
	'crash_inline equals its query after the crash, without catching up');

# catch up from a session (the append below also brings the projector
# back, see 014), while a transaction that took its xid before that append
# holds the horizon back for both, so that wait_for_projection has to wait
# (and commit) more than once
my $hold = bg_start();
bg_query($hold, 'BEGIN; SELECT pg_current_xact_id();');
q1(q{SELECT ledger.append('after_hold', 'Other', '{}')});
my $call = IPC::Run::start(
	[
		'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		'-c', "CALL ledger.wait_for_projection('crash_async', '60 s')"
	],
	'>', "$tmp/call.out", '2>', "$tmp/call.err");
wait_for('wait_for_projection to start', 60, sub {
	q1(q{SELECT count(*) FROM pg_stat_activity
          WHERE query LIKE 'CALL ledger.wait_for_projection%' AND state = 'active'
            AND now() - query_start > interval '500 ms'}) == 1
	  || !$call->pumpable;
});
ok($call->pumpable, 'wait_for_projection waits while the horizon is held back');
bg_query($hold, 'COMMIT;');
$hold->{h}->kill_kill;
ok($call->finish, 'CALL ledger.wait_for_projection returns once the transaction has committed')
  or diag slurp_file("$tmp/call.err");
is(q1("SELECT state || '/' || lag_events FROM ledger.projection_status WHERE name = 'crash_async'"),
	'live/0', 'crash_async is live and caught up');

# more load, then the projector and a session both catch up
q1(q{SELECT ledger.append('s' || (i % 1020), 'Counted', jsonb_build_object('n', i))
       FROM generate_series(1, 5000) i});
$pid = q1('SELECT ledger.start_projector()');
ok($pid > 0, 'projector restarted');
wait_for_projection('crash_async');
is(differences('crash_async', $q_async), 0, 'crash_async equals its query once caught up');
is(q1(q{SELECT events_applied = (SELECT count(*) FROM ledger.events)
          FROM ledger.projections WHERE name = 'crash_async'}),
	't', 'crash_async applied each event of the log once');
is(q1('SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status'),
	't', 'every projection verifies after the crash, the built-in ones included');
is(q1('SELECT count(*) FROM ledger.currency_totals WHERE debits <> credits'),
	0, 'the trial balance balances');

#
# (c) the projector of shared_preload_libraries resumes a fill after a crash
#
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ledger_cqrs'\n");
$node->restart;
wait_for('the preloaded projector', 60, sub {
	q1(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ledger_cqrs projector'}) == 1;
});

# a transaction holding an xid keeps the fill from reaching the events
# appended after it, so the crash cannot come after the fill's end
$blocker = bg_start();
bg_query($blocker, 'BEGIN; SELECT pg_current_xact_id();');
q1(q{SELECT count(ledger.append_events('late' || (b % 100),
        (SELECT jsonb_agg(jsonb_build_object('type', 'Counted', 'data', jsonb_build_object('n', j)))
           FROM generate_series(1, 50) j)))
       FROM generate_series(1, 1000) b});
q1("SELECT ledger.create_projection('crash_fill', \$q\$$q_inline\$q\$, 'async')");
is(q1("SELECT state FROM ledger.projection_status WHERE name = 'crash_fill'"), 'catching_up',
	'crash_fill is catching_up');
wait_for('a committed batch of crash_fill', 120, sub {
	($state, $applied) = split /\|/,
	  q1("SELECT state, events_applied FROM ledger.projections WHERE name = 'crash_fill'");
	return $applied >= $batch;
});
my $lag = q1("SELECT lag_events FROM ledger.projection_status WHERE name = 'crash_fill'");
$node->stop('immediate');
note "crashed with crash_fill $state, $applied events applied, lag $lag";
cmp_ok($lag, '>', 0, 'the crash came before the fill was done');
$blocker->{h}->kill_kill;
$node->start;

my $t_restart = time;
my $done = 0;
my $deadline = time + 90;
until ($done || time > $deadline)
{
	$done = q1(q{SELECT state = 'live' AND lag_events = 0 FROM ledger.projection_status
	              WHERE name = 'crash_fill'}) eq 't';
	usleep(50_000) unless $done;
}
ok($done, sprintf('the preloaded projector finished crash_fill after the restart on its own (%.1f s)',
	time - $t_restart));
is(differences('crash_fill', $q_inline), 0, 'crash_fill equals its query recomputed from the log');
is(q1(q{SELECT events_applied = (SELECT count(*) FROM ledger.events)
          FROM ledger.projections WHERE name = 'crash_fill'}),
	't', 'crash_fill applied each event of the log once');
is(q1('SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status'),
	't', 'every projection verifies');

$node->stop;
done_testing();
