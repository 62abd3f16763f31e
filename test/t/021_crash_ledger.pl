# Crash safety: kill the server (immediate stop, no shutdown checkpoint)
#  A. during a transfer load, and
#  B. during ledger.rebuild_projection('ledger.account_entries') over a
#     log of ~100k postings (with a load still running, blocked behind it),
# then restart and check that nothing acknowledged was lost and that the
# books are consistent.
#
# The load runs as psql processes driven through pipes (IPC::Run), in
# autocommit, one statement per line.  Each statement selects a tag with its
# result ("c-17|4711": transfer c-17 was posted at position 4711), so every
# tag that came back is a command the server acknowledged as committed.
# The load mixes transfers in USD, EUR and JPY (scale 0), 4-leg exchanges
# (ledger.post_entry), spends from a flagged wallet (refusals are errors,
# not acknowledgements), top-ups of that wallet, and plain appends to user
# streams (ledger.append, whose returned version is acknowledged too).
#
# After each restart: every acknowledged posting is in ledger.events
# (stream transfer:<id>) at the position it returned, every acknowledged
# append is in its stream at its version; and the invariants hold: every
# currency balances, ledger.balances and ledger.account_entries equal the
# legs in the log, flags held, versions are gapless, every projection
# (built-in, user inline, user async after catch-up) verifies.  After the
# crash in B, the interrupted rebuild left the old table intact; a second
# rebuild then runs to completion and everything verifies again.

use strict;
use warnings;

use lib 't';
use LedgerTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $bulk_postings = 100_000;
my $accounts      = 50;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', "max_worker_processes = 16\nrestart_after_crash = on\n");
$node->start;

sub q1 { return $node->safe_psql('postgres', shift); }

$node->safe_psql('postgres', <<"SQL");
CREATE EXTENSION ledger_cqrs;
SELECT ledger.open_account('acct' || i) FROM generate_series(1, $accounts) AS i;
SELECT ledger.open_account('funding');
SELECT ledger.open_account('wallet', '{debits_must_not_exceed_credits}');
SELECT ledger.transfer('fund-wallet', 'funding', 'wallet', 1000.00, 'USD');

-- the big log, in batches (each posting holds its locks to commit)
CREATE PROCEDURE bulk(n int, batch int) LANGUAGE plpgsql AS \$\$
DECLARE
    i int := 0;
BEGIN
    WHILE i < n LOOP
        PERFORM ledger.transfer('bulk-' || g, 'acct' || (1 + g % $accounts),
                                'acct' || (1 + (g + 1 + g % 7) % $accounts),
                                CASE g % 3 WHEN 2 THEN (1 + g % 5000)::numeric
                                           ELSE (1 + g % 10000) / 100.0 END,
                                (ARRAY['USD', 'EUR', 'JPY'])[1 + g % 3])
          FROM generate_series(i + 1, least(i + batch, n)) AS g;
        i := i + batch;
        COMMIT;
    END LOOP;
END
\$\$;
CALL bulk($bulk_postings, 1000);
SQL
is(q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'transfer:bulk-%'}),
	$bulk_postings, "the log holds $bulk_postings bulk postings");

# user projections, created over the big log (filled in batches), one inline
# and one async; the projector runs
$node->safe_psql('postgres', leg_totals_projection_sql('leg_totals'));
$node->safe_psql('postgres', <<'SQL');
SELECT ledger.create_projection('stream_stats', $$
    SELECT split_part(e.stream, ':', 1) AS kind, e.type, count(*) AS n,
           max(e.position) AS last_position, max(e.version) AS max_version
      FROM ledger.events e
     GROUP BY 1, 2 $$, 'async');
SELECT ledger.start_projector() >= 0;
SQL
catch_up_all($node, 'postgres', 'projections over the big log');

#
# The load: psql clients fed through pipes
#
my $counter = 0;
srand(21);

# one random statement; its tag comes back only if it committed
sub next_statement
{
	my $n = ++$counter;
	my $r = rand();
	my $a = 1 + int(rand($accounts));
	my $b = 1 + ($a + int(rand($accounts - 1))) % $accounts;
	my $usd = sprintf('%.2f', (1 + int(rand(5000))) / 100);
	my $yen = 1 + int(rand(5000));
	if ($r < 0.10)
	{
		return "SELECT 'c-$n', ledger.transfer('c-$n', 'wallet', 'acct$b', $usd, 'USD');";
	}
	if ($r < 0.15)
	{
		return "SELECT 'c-$n', ledger.transfer('c-$n', 'funding', 'wallet', $usd, 'USD');";
	}
	if ($r < 0.25)
	{
		return "SELECT 'c-$n', ledger.post_entry('c-$n', '["
		  . qq({"account": "acct$a", "side": "debit", "amount": $usd, "currency": "USD"}, )
		  . qq({"account": "acct$b", "side": "credit", "amount": $usd, "currency": "USD"}, )
		  . qq({"account": "acct$b", "side": "debit", "amount": $yen, "currency": "JPY"}, )
		  . qq({"account": "acct$a", "side": "credit", "amount": $yen, "currency": "JPY"}])
		  . "');";
	}
	if ($r < 0.35)
	{
		my $s = 'user:' . (1 + int(rand(5)));
		return "SELECT 'a-$n', '$s', ledger.append('$s', 'Clicked', '{\"n\": $n}');";
	}
	my ($cur, $amt) = rand() < 0.3 ? ('JPY', $yen) : (rand() < 0.5 ? 'USD' : 'EUR', $usd);
	return "SELECT 'c-$n', ledger.transfer('c-$n', 'acct$a', 'acct$b', $amt, '$cur');";
}

# keep every client busy with at most $window statements outstanding
sub drive
{
	my ($clients, $sent, $window) = @_;
	for my $i (0 .. $#$clients)
	{
		my $c = $clients->[$i];
		$c->collect;
		my $done = scalar($c->lines) + (() = $c->errors =~ /^ERROR:/mg);
		if ($sent->[$i] - $done < $window / 2)
		{
			my @s = map { next_statement() } 1 .. $window / 2;
			$c->feed(@s);
			$sent->[$i] += @s;
		}
	}
	return;
}

# crash: drop what psql has not read yet, kill the server, let psql exit,
# gather every acknowledgement
sub crash_and_collect
{
	my ($clients) = @_;
	$_->discard_input for @$clients;
	$node->stop('immediate');
	my (@acks, @codes);
	for my $c (@$clients)
	{
		$c->finish;
		push @acks, $c->lines;
		push @codes, $c->error_codes;
	}
	# the only error a statement of the load may get is a refused wallet
	# spend (23514); psql reports the crash itself without an ERROR line
	is(join(', ', grep { $_ ne '23514' } @codes), '',
		'the load got no error but flag refusals (' . scalar(@codes) . ' refusals)');
	return @acks;
}

# record acknowledgements in a table, after the restart
sub record_acks
{
	my ($phase, @acks) = @_;
	my @rows;
	for my $l (@acks)
	{
		if ($l =~ /^(c-\d+)\|(\d+)$/)
		{
			push @rows, "('$phase', '$1', NULL, $2)";
		}
		elsif ($l =~ /^(a-\d+)\|(user:\d+)\|(\d+)$/)
		{
			push @rows, "('$phase', '$1', '$2', $3)";
		}
		else
		{
			fail("$phase: unexpected output line from a load client: '$l'");
		}
	}
	while (my @chunk = splice(@rows, 0, 500))
	{
		q1('INSERT INTO acked (phase, tag, stream, value) VALUES ' . join(', ', @chunk));
	}
	return;
}

# every acknowledged command of the phase is in the log
sub check_acks
{
	my ($phase) = @_;
	my ($postings, $appends) = split /\|/, q1(qq{
		SELECT count(*) FILTER (WHERE stream IS NULL), count(*) FILTER (WHERE stream IS NOT NULL)
		  FROM acked WHERE phase = '$phase'});
	ok($postings > 0, "$phase: the load had $postings postings acknowledged before the crash");
	is(q1(qq{
		SELECT count(*) FROM acked a
		  LEFT JOIN ledger.events e ON e.stream = 'transfer:' || a.tag
		 WHERE a.phase = '$phase' AND a.stream IS NULL
		   AND (e.position IS DISTINCT FROM a.value OR e.type IS DISTINCT FROM 'TransferPosted')}),
		'0', "$phase: every acknowledged posting is in ledger.events at the position it returned");
	is(q1(qq{
		SELECT count(*) FROM acked a
		  LEFT JOIN ledger.events e ON e.stream = a.stream AND e.version = a.value
		 WHERE a.phase = '$phase' AND a.stream IS NOT NULL
		   AND (e.position IS NULL OR e.data->>'n' IS DISTINCT FROM substr(a.tag, 3))}),
		'0', "$phase: every acknowledged append ($appends) is in its stream at the version it returned");
	return;
}

#
# A. crash during the transfer load
#
my @clients = map { LoadClient->new($node, 'postgres') } 1 .. 4;
my @sent = (0) x @clients;
my $target = 1500;
my $loaded = wait_for(
	"$target load postings in the log",
	90,
	sub {
		drive(\@clients, \@sent, 40);
		return q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'transfer:c-%'}) >= $target;
	});
ok($loaded, "A: the load posted at least $target transfers before the crash");
drive(\@clients, \@sent, 40);
my @acks = crash_and_collect(\@clients);

my $offset = -s $node->logfile;
$node->start;
q1('CREATE TABLE acked (phase text, tag text, stream text, value bigint)');
record_acks('A', @acks);
check_acks('A');
q1('SELECT ledger.start_projector() >= 0');
catch_up_all($node, 'postgres', 'A: after the crash');
check_ledger_invariants($node, 'postgres', 'A: after the crash');

# the ledger takes new work after recovery, and the projections follow it
my $pos = q1(q{SELECT ledger.transfer('after-crash-a', 'acct1', 'acct2', 12.34, 'USD')});
is(q1(q{SELECT max(position) FROM ledger.events}), $pos, 'A: a new transfer gets the last position');
is(q1(q{SELECT last_position FROM leg_totals WHERE account = 'acct1' AND currency = 'USD'}),
	$pos, 'A: the inline projection folds a new transfer after recovery');
is(q1(q{SELECT ledger.append('user:1', 'Clicked', '{"n": 0}')}),
	q1(q{SELECT count(*) FROM ledger.events WHERE stream = 'user:1'}) + 0,
	'A: a new append continues its stream gaplessly');

#
# B. crash during a rebuild of ledger.account_entries (~100k postings),
#    with a load that queues up behind it
#
@clients = map { LoadClient->new($node, 'postgres') } 1 .. 2;
@sent = (0) x @clients;
my $before = q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'transfer:c-%'});
ok(wait_for("load postings before the rebuild", 60,
		sub {
			drive(\@clients, \@sent, 20);
			return q1(q{SELECT count(*) FROM ledger.events WHERE stream LIKE 'transfer:c-%'}) >= $before + 200;
		}),
	'B: the load is running');

my $rebuilder = LoadClient->new($node, 'postgres');
$rebuilder->feed(
	q{SELECT 'pid', pg_backend_pid();},
	q{BEGIN;},
	q{SELECT 'rebuilt', ledger.rebuild_projection('ledger.account_entries');},
	q{SELECT 'slept', pg_sleep(600);},
	q{COMMIT;});
my $pid;
ok(wait_for("the rebuild's backend pid", 60,
		sub {
			drive(\@clients, \@sent, 20);
			$rebuilder->collect;
			($pid) = map { /^pid\|(\d+)$/ ? $1 : () } $rebuilder->lines;
			return defined $pid;
		}),
	'B: the rebuild session started');
# the rebuild holds SHARE ROW EXCLUSIVE on ledger.events once it is replacing the rows
my $rebuilding = wait_for("the rebuild to lock ledger.events", 90,
	sub {
		drive(\@clients, \@sent, 20);
		return q1(qq{
			SELECT count(*) FROM pg_locks
			 WHERE pid = $pid AND locktype = 'relation' AND relation = 'ledger.events'::regclass
			   AND mode = 'ShareRowExclusiveLock' AND granted}) eq '1';
	});
ok($rebuilding, 'B: the rebuild of ledger.account_entries is running');
my $entries_before = q1(q{SELECT count(*) FROM ledger.account_entries});

push @clients, $rebuilder;
@acks = crash_and_collect(\@clients);
my @rebuild_out = grep { /^(rebuilt|slept)\|/ } @acks;
diag('the rebuild ' . (@rebuild_out ? 'had returned, uncommitted,' : 'was still running')
	  . ' when the server was killed');
ok(!grep({ /^slept\|/ } @rebuild_out), 'B: the rebuild transaction had not committed at the crash');
@acks = grep { !/^(pid|rebuilt|slept)\|/ } @acks;

$offset = -s $node->logfile;
$node->start;
record_acks('B', @acks);
check_acks('B');
is(q1(q{SELECT ledger.verify_projection('ledger.account_entries')}), 't',
	'B: after the crash, ledger.account_entries (the interrupted rebuild) verifies');
cmp_ok(q1(q{SELECT count(*) FROM ledger.account_entries}), '>=', $entries_before,
	'B: the interrupted rebuild lost no entry');
check_ledger_invariants($node, 'postgres', 'B: after the crash', skip_verify => 1);

# rebuild again, to completion
is(q1(q{SELECT ledger.rebuild_projection('ledger.account_entries')}),
	q1(q{SELECT count(*) FROM ledger.events}),
	'B: a second rebuild runs to completion over the whole log');
q1(q{SELECT ledger.rebuild_projection('leg_totals')});
q1('SELECT ledger.start_projector() >= 0');
q1(q{SELECT ledger.transfer('after-crash-b', 'acct3', 'acct4', 5, 'JPY')});
catch_up_all($node, 'postgres', 'B: after the rebuild');
check_ledger_invariants($node, 'postgres', 'B: after the rebuild');

server_log_clean($node, 'after the last restart', $offset);
unlike(slurp_file($node->logfile), qr/deadlock detected/, 'no deadlock in the whole server log');

$node->stop;
done_testing();
