# The projector comes back by itself, without shared_preload_libraries.
#
# ledger.projector keeps a database's row from the moment its projector
# started (by start_projector() or create_projection) until stop_projector().
# While the row is there, an append that feeds an async (or filling)
# projection and finds no projector running starts one when it commits.
#
# 1. After a fast and after an immediate shutdown, no projector runs until
#    the first appends: then exactly one starts, records its pid, the lag
#    closes and the projection equals its query.
# 2. A fill the restart left waiting (create_projection prepared before an
#    immediate shutdown, committed after the restart) waits for no call: the
#    next append brings the projector back and it finishes the fill.
# 3. After stop_projector(), appends start no projector, before or after a
#    restart, and the projection lags until start_projector().
# 4. While stop_projector() is uncommitted, appends start no projector
#    (none waits for it, holding a worker slot); after its ROLLBACK the next
#    append starts one.
# 5. A session that has seen the projector and whose projector then dies
#    starts a new one with its very next append (a pooled connection).
# 6. An extension owned by a NOLOGIN role still gets a projector.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('restart');
$node->init;
$node->append_conf('postgresql.conf', <<'CONF');
max_worker_processes = 16
max_prepared_transactions = 2
log_statement = none
CONF
$node->start;

sub q1 { return $node->safe_psql('postgres', shift); }

my $running = q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ledger_cqrs projector'};
my $running_pid =
  q{SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'ledger_cqrs projector'};
# one projector runs, and ledger.projector names it
my $one_recorded = qq{SELECT ($running) = 1 AND (SELECT pid FROM ledger.projector) = ($running_pid)::int};

my %query = (
	follow => q{SELECT stream, count(*) AS n, sum((data->>'n')::int) AS total FROM ledger.events GROUP BY stream},
	late   => q{SELECT type, count(*) AS n FROM ledger.events GROUP BY type});

# the table against its query recomputed from the log, EXCEPT ALL both ways
sub differences
{
	my ($name) = @_;
	my $q = $query{$name};
	return q1(qq{SELECT count(*) FROM (
	  (SELECT * FROM $name EXCEPT ALL ($q)) UNION ALL (($q) EXCEPT ALL SELECT * FROM $name)) d});
}

sub caught_up
{
	my ($name) = @_;
	return $node->poll_query_until('postgres',
		"SELECT state = 'live' AND lag_events = 0 FROM ledger.projection_status WHERE name = '$name'");
}

# $n appends: one statement of $n - 5 events, then 5 transactions of one
sub append_some
{
	my ($n, $tag) = @_;
	q1(qq{SELECT ledger.append('s' || (i % 20), '$tag', jsonb_build_object('n', i))
	        FROM generate_series(1, $n - 5) i});
	q1(qq{SELECT ledger.append('s$_', '$tag', '{"n": 1}')}) for 1 .. 5;
}

q1('CREATE EXTENSION ledger_cqrs');
append_some(200, 'Seeded');
q1(qq{SET ledger_cqrs.fill_sync_limit = 0;
      SELECT ledger.create_projection('follow', \$q\$$query{follow}\$q\$, 'async')});
ok($node->poll_query_until('postgres', $one_recorded), 'create_projection started the projector');
ok(caught_up('follow'), 'and it filled the projection');

#
# 1. a fast and an immediate shutdown
#
for my $mode ('fast', 'immediate')
{
	my $before = q1($running_pid);
	$node->stop($mode);
	$node->start;
	is(q1($running), 0, "$mode: no projector runs after the restart");
	is(q1('SELECT pid FROM ledger.projector'), $before,
		"$mode: ledger.projector still names the one from before");

	append_some(100, "After_$mode");
	ok($node->poll_query_until('postgres', $one_recorded . " AND ($running_pid)::int <> $before"),
		"$mode: the appends started a new projector, which recorded its pid");
	ok(caught_up('follow'), "$mode: the lag closed");
	is(differences('follow'), 0, "$mode: follow equals its query");
	is(q1("SELECT ledger.verify_projection('follow')"), 't', "$mode: follow verifies");
	# each appending session that found no projector may have started one;
	# all but the first gave way
	my $gave_way = () = slurp_file($node->logfile) =~ /another projector runs in this database/g;
	note "$mode: projectors that gave way so far: $gave_way";
}

#
# 2. a fill left waiting by a restart: create_projection is prepared (its
#    projector cannot see it), the server stops, and the projection is
#    committed after the restart, with no projector running
#
q1(qq{BEGIN;
      SET LOCAL ledger_cqrs.fill_sync_limit = 0;
      SELECT ledger.create_projection('late', \$q\$$query{late}\$q\$, 'async');
      PREPARE TRANSACTION 'late'});
$node->stop('immediate');
$node->start;
q1(q{COMMIT PREPARED 'late'});
is(q1("SELECT state FROM ledger.projection_status WHERE name = 'late'") . '/' . q1($running),
	'catching_up/0', 'the committed fill waits, and no projector runs');
q1(q{SELECT ledger.append('one', 'Late', '{}')});
ok($node->poll_query_until('postgres', $one_recorded), 'the next append started the projector');
ok(caught_up('late'), 'which finished the fill');
is(differences('late'), 0, 'late equals its query');
is(q1("SELECT ledger.verify_projection('late')"), 't', 'late verifies');

#
# 3. stop_projector() has the last word
#
is(q1('SELECT ledger.stop_projector()'), 't', 'stop_projector stops the projector');
is(q1($running) . '/' . q1('SELECT count(*) FROM ledger.projector'), '0/0',
	'and clears ledger.projector');
append_some(50, 'Stopped');
$node->restart;
append_some(50, 'Stopped_restarted');
# a started worker shows up within milliseconds; give it a second
usleep(1_000_000);
is(q1($running), 0, 'after stop_projector, appends start no projector, before or after a restart');
cmp_ok(q1("SELECT lag_events FROM ledger.projection_status WHERE name = 'follow'"),
	'>=', 100, 'and follow lags');
my $pid = q1('SELECT ledger.start_projector()');
ok($pid > 0, 'start_projector starts it again');
ok(caught_up('follow'), 'and the lag closes');
is(q1("SELECT ledger.verify_projection('follow')"), 't', 'follow verifies');

#
# 4. appends while a stop_projector() is uncommitted start no projector
#    (each would only wait for the stop, holding a worker slot); after a
#    COMMIT none runs, after a ROLLBACK the next append starts one
#
my $waiting = q{SELECT count(*) FROM pg_stat_activity
                 WHERE backend_type = 'ledger_cqrs projector' AND wait_event_type = 'Lock'};
for my $end ('COMMIT', 'ROLLBACK')
{
	$node->poll_query_until('postgres', $one_recorded) or die 'no projector to stop';
	my $stopper = $node->background_psql('postgres');
	$stopper->query_safe('BEGIN');
	is($stopper->query_safe('SELECT ledger.stop_projector()'), 't', "$end: stop_projector, not committed");
	# five sessions, each appending once: each finds the projector gone and
	# its row still there
	q1(qq{SELECT ledger.append('race', 'Raced', '{}')}) for 1 .. 5;
	usleep(1_000_000);
	is(q1($running) . '/' . q1($waiting), '0/0',
		"$end: appends during the stop start no projector, and none waits for the stop");
	$stopper->query_safe($end);
	$stopper->quit;
	if ($end eq 'COMMIT')
	{
		usleep(500_000);
		is(q1($running) . '/' . q1('SELECT count(*) FROM ledger.projector'), '0/0',
			'COMMIT: no projector runs, and ledger.projector stays empty');
		q1('SELECT ledger.start_projector()');
	}
	else
	{
		is(q1('SELECT count(*) FROM ledger.projector'), 1, 'ROLLBACK: ledger.projector keeps its row');
		q1(q{SELECT ledger.append('race', 'Raced', '{}')});
		ok($node->poll_query_until('postgres', $one_recorded),
			'ROLLBACK: the next append starts a projector, which records its pid');
		ok(caught_up('follow'), 'ROLLBACK: and it applies the appends');
	}
}

#
# 5. a pooled session: it has seen the projector, which then dies; its next
#    append, the only one, brings it back (not just the one after)
#
{
	my $pooled = $node->background_psql('postgres');
	$pooled->query_safe(q{SELECT ledger.append('pool', 'Pooled', '{"n": 1}')});
	ok(caught_up('follow'), 'pooled: the projector applies the first append');
	my $old = q1($running_pid);
	q1("SELECT pg_terminate_backend($old, 5000)");
	is(q1($running), 0, 'pooled: the projector is gone');
	$pooled->query_safe(q{SELECT ledger.append('pool', 'Pooled', '{"n": 2}')});
	ok($node->poll_query_until('postgres', $one_recorded . " AND ($running_pid)::int <> $old"),
		'pooled: its next append started a new projector, with no other append');
	ok(caught_up('follow'), 'pooled: and the lag closed');
	$pooled->quit;
}

#
# 6. an extension owned by a NOLOGIN role: a background worker may not
#    connect as it, so the projector connects as the bootstrap superuser
#
q1(q{CREATE ROLE regress_nologin_owner SUPERUSER NOLOGIN});
q1(q{CREATE DATABASE nologin_db OWNER regress_nologin_owner});
$node->safe_psql('nologin_db', q{SET ROLE regress_nologin_owner; CREATE EXTENSION ledger_cqrs;
	SELECT ledger.create_projection('nl', 'SELECT stream, count(*) AS n FROM ledger.events GROUP BY stream', 'async')});
my $nl_pid = $node->safe_psql('nologin_db', q{SELECT ledger.start_projector()});
ok($nl_pid > 0, 'NOLOGIN owner: start_projector starts a projector');
$node->safe_psql('nologin_db', q{SELECT ledger.append('nl', 'E', '{}') FROM generate_series(1, 3)});
ok($node->poll_query_until('nologin_db',
		q{SELECT state = 'live' AND lag_events = 0 FROM ledger.projection_status WHERE name = 'nl'}),
	'NOLOGIN owner: it keeps the async projection caught up');
is($node->safe_psql('nologin_db', q{SELECT n FROM nl WHERE stream = 'nl'}), 3, 'NOLOGIN owner: nl counts the appends');
$node->safe_psql('nologin_db', q{SELECT ledger.stop_projector()});

$node->stop;
done_testing();
