# Shared checks for the ledger_cqrs TAP tests (010, 011, 020, 021, 022).
#
# Each check recomputes what the extension maintains from ledger.events
# itself, in plain SQL, rather than trusting the extension's own verify;
# ledger.verify_projection is checked as well, as one more invariant.
#
# Tests run from the test directory (prove t/*.pl), so they load this file
# with "use lib 't';".

package LedgerTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  check_ledger_invariants
  catch_up_all
  server_log_clean
  wait_for
  bulk_append_sql
  $APPEND_PGBENCH
  $SAMPLE_FILL_SQL
  $TURNOVER_PROJECTION_SQL
  leg_totals_projection_sql
  $TURNOVER_DIFF_SQL
);

# A pgbench script appending one event to one of 1,020 streams: type
# 'Counted' one time in three, else 'Other', with data {"n": 0..999}.
our $APPEND_PGBENCH = <<'PGBENCH';
\set s random(0, 1019)
\set n random(0, 999)
\set k random(1, 3)
SELECT ledger.append('s' || :s::int, CASE WHEN :k::int = 1 THEN 'Counted' ELSE 'Other' END,
                     jsonb_build_object('n', :n::int));
PGBENCH

# A function that samples the registry: one row per named projection every
# 10 ms until all exist and are live, or the timeout passes (read-only, so
# it holds back no catch-up horizon).  It may be started before the
# projections are created.
our $SAMPLE_FILL_SQL = q{
CREATE FUNCTION sample_fill(p_names text[], p_timeout interval)
RETURNS TABLE (at_s double precision, name text, state text, events_applied bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    r record;
    all_live boolean;
    seen integer;
BEGIN
    LOOP
        all_live := true;
        seen := 0;
        FOR r IN SELECT p.name, p.state, p.events_applied FROM ledger.projections p
                  WHERE p.name = ANY (p_names) ORDER BY p.name LOOP
            at_s := extract(epoch FROM clock_timestamp() - t0);
            name := r.name; state := r.state; events_applied := r.events_applied;
            RETURN NEXT;
            all_live := all_live AND r.state = 'live';
            seen := seen + 1;
        END LOOP;
        EXIT WHEN (all_live AND seen = cardinality(p_names)) OR clock_timestamp() - t0 > p_timeout;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$};

# The async projection 'turnover': per currency and side of the posted
# legs, their total and count.
our $TURNOVER_PROJECTION_SQL = q{
SELECT ledger.create_projection('turnover', $$
    SELECT l->>'currency' AS currency, l->>'side' AS side,
           sum((l->>'amount')::numeric) AS total, count(*) AS legs
      FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') AS l
     WHERE e.type = 'TransferPosted'
     GROUP BY 1, 2 $$, 'async');
};

# leg_totals_projection_sql($name): the statement creating the inline
# projection $name of debits, credits, legs and last position per account
# and currency, from the legs of TransferPosted events.
sub leg_totals_projection_sql
{
	my ($name) = @_;
	return "SELECT ledger.create_projection('$name', \$\$\n" . <<'SQL';
    SELECT l->>'account' AS account, l->>'currency' AS currency,
           sum((l->>'amount')::numeric) FILTER (WHERE l->>'side' = 'debit') AS debits,
           sum((l->>'amount')::numeric) FILTER (WHERE l->>'side' = 'credit') AS credits,
           count(*) AS legs, max(e.position) AS last_position
      FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') AS l
     WHERE e.type = 'TransferPosted'
     GROUP BY 1, 2 $$, 'inline');
SQL
}

# bulk_append_sql($from, $to): a statement appending batches $from..$to, one
# append_events of 50 events per batch, to stream 's' || batch % 1000;
# every third event is 'Counted', the rest 'Other', with data {"n": 0..999}.
sub bulk_append_sql
{
	my ($from, $to) = @_;
	return qq{
		SELECT count(ledger.append_events('s' || (b % 1000),
		         (SELECT jsonb_agg(jsonb_build_object(
		                   'type', CASE WHEN j % 3 = 0 THEN 'Counted' ELSE 'Other' END,
		                   'data', jsonb_build_object('n', (b * 7 + j) % 1000)))
		            FROM generate_series(1, 50) j)))
		  FROM generate_series($from, $to) b};
}

# Rows by which the projection 'turnover' (per currency and side: total,
# legs) differs from its query over the whole log: 0 when it is exact.
our $TURNOVER_DIFF_SQL = q{
	SELECT count(*) FROM (
	  (SELECT currency, side, total, legs FROM turnover
	   EXCEPT ALL
	   SELECT l->>'currency', l->>'side', sum((l->>'amount')::numeric), count(*)
	     FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
	    WHERE e.type = 'TransferPosted' GROUP BY 1, 2)
	  UNION ALL
	  (SELECT l->>'currency', l->>'side', sum((l->>'amount')::numeric), count(*)
	     FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
	    WHERE e.type = 'TransferPosted' GROUP BY 1, 2
	   EXCEPT ALL
	   SELECT currency, side, total, legs FROM turnover)) d};

# The legs of every posting, one row per leg, straight from the log.
our $LEGS_SQL = q{
	SELECT l->>'account' AS account, l->>'currency' AS currency,
	       l->>'side' AS side, (l->>'amount')::numeric AS amount,
	       e.position, e.data->>'transfer_id' AS transfer_id, n - 1 AS leg
	  FROM ledger.events e, jsonb_array_elements(e.data->'legs') WITH ORDINALITY AS x(l, n)
	 WHERE e.type = 'TransferPosted'};

# wait_for($what, $deadline_seconds, sub { ... return true when done })
# Polls every 50 ms; returns true if the condition held before the deadline.
sub wait_for
{
	my ($what, $seconds, $cond) = @_;
	my $deadline = time + $seconds;
	while (1)
	{
		return 1 if $cond->();
		if (time > $deadline)
		{
			diag("timed out after ${seconds}s waiting for $what");
			return 0;
		}
		usleep(50_000);
	}
}

# catch_up_all($node, $db): drive every async projection to the head of the
# log with ledger.catch_up() (the projector, if running, may hold a
# projection for a moment: catch_up skips it then, so poll), then require
# every projection to be live with no lag.  Returns true on success.
sub catch_up_all
{
	my ($node, $db, $label) = @_;
	my $ok = wait_for(
		"$label: every projection live with lag 0",
		150,
		sub {
			$node->safe_psql($db, 'SELECT ledger.catch_up()');
			return $node->safe_psql($db,
				q{SELECT count(*) FROM ledger.projection_status
				   WHERE state <> 'live' OR lag_events <> 0}) eq '0';
		});
	ok($ok, "$label: every projection caught up (live, lag_events = 0)")
	  or diag($node->safe_psql($db,
		'SELECT name, mode, state, checkpoint, lag_events, last_error FROM ledger.projection_status'));
	return $ok;
}

# check_ledger_invariants($node, $db, $label, %opt)
#
# The invariants every test asserts after a workload, a crash or a restore:
#  - every currency balances in ledger.currency_totals (and the view agrees
#    with the legs in the log);
#  - ledger.balances = the aggregation of the TransferPosted legs;
#  - ledger.account_entries = the legs, balance_after the running sum in
#    position order;
#  - no balance has more decimals than its currency's scale;
#  - flags hold: no flagged account ever went past zero (balance_after);
#  - per-stream versions are gapless: 1..count for every stream;
#  - every projection, built-in and user, verifies against the log.
# Options: skip_verify => 1 leaves out ledger.verify_projection (the caller
# runs it itself).
sub check_ledger_invariants
{
	my ($node, $db, $label, %opt) = @_;
	my $q = sub { return $node->safe_psql($db, shift) };

	is($q->('SELECT count(*) FROM ledger.currency_totals WHERE debits IS DISTINCT FROM credits'),
		'0', "$label: every currency balances in ledger.currency_totals");

	is($q->(qq{
		WITH legs AS ($LEGS_SQL)
		SELECT count(*) FROM (
		  SELECT currency, sum(amount) FILTER (WHERE side = 'debit') AS d,
		         sum(amount) FILTER (WHERE side = 'credit') AS c
		    FROM legs GROUP BY currency) l
		  FULL JOIN ledger.currency_totals t USING (currency)
		 WHERE t.debits IS DISTINCT FROM l.d OR t.credits IS DISTINCT FROM l.c}),
		'0', "$label: currency_totals = the legs in the log, per currency");

	is($q->(qq{
		WITH legs AS ($LEGS_SQL),
		agg AS (
		  SELECT account, currency,
		         coalesce(sum(amount) FILTER (WHERE side = 'debit'), 0)  AS d,
		         coalesce(sum(amount) FILTER (WHERE side = 'credit'), 0) AS c,
		         count(*) AS n, max(position) AS p
		    FROM legs GROUP BY account, currency)
		SELECT count(*)
		  FROM agg FULL JOIN ledger.balances b
		    ON b.account = agg.account AND b.currency = agg.currency
		 WHERE b.account IS NULL OR agg.account IS NULL
		    OR b.debits_posted <> agg.d OR b.credits_posted <> agg.c
		    OR b.balance <> agg.c - agg.d
		    OR b.postings <> agg.n OR b.last_position <> agg.p}),
		'0', "$label: ledger.balances = aggregation of the TransferPosted legs");

	is($q->(qq{
		WITH legs AS ($LEGS_SQL)
		SELECT count(*)
		  FROM legs FULL JOIN ledger.account_entries ae
		    ON ae.account = legs.account AND ae.currency = legs.currency
		   AND ae.position = legs.position AND ae.leg = legs.leg
		 WHERE ae.account IS NULL OR legs.account IS NULL
		    OR ae.side <> legs.side OR ae.amount <> legs.amount
		    OR ae.transfer_id <> legs.transfer_id}),
		'0', "$label: ledger.account_entries = the legs in the log, one row each");

	is($q->(q{
		SELECT count(*) FROM (
		  SELECT balance_after,
		         sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
		           OVER (PARTITION BY account, currency ORDER BY position) AS running
		    FROM ledger.account_entries) r
		 WHERE balance_after <> running}),
		'0', "$label: balance_after is the running sum in position order");

	is($q->(q{
		SELECT count(*) FROM ledger.balances b JOIN ledger.currencies c ON c.code = b.currency
		 WHERE b.debits_posted <> round(b.debits_posted, c.scale)
		    OR b.credits_posted <> round(b.credits_posted, c.scale)}),
		'0', "$label: no total has more decimals than its currency's scale");

	is($q->(q{
		SELECT count(*)
		  FROM ledger.account_entries ae JOIN ledger.accounts a USING (account)
		 WHERE ('debits_must_not_exceed_credits' = ANY (a.flags) AND ae.balance_after < 0)
		    OR ('credits_must_not_exceed_debits' = ANY (a.flags) AND ae.balance_after > 0)}),
		'0', "$label: no flagged account ever went past zero");

	is($q->(q{
		SELECT count(*) FROM (
		  SELECT stream FROM ledger.events GROUP BY stream
		  HAVING count(*) <> max(version) OR min(version) <> 1) s}),
		'0', "$label: every stream's versions are gapless (count = max(version))");

	unless ($opt{skip_verify})
	{
		# one pass of ledger.verify_projection over every projection; the
		# names of those that fail are reported
		my ($all, $failed) = split /\|/, $q->(q{
			SELECT bool_and(ok), coalesce(string_agg(name, ', ' ORDER BY name) FILTER (WHERE ok IS NOT TRUE), '')
			  FROM (SELECT name, ledger.verify_projection(name) AS ok
			          FROM ledger.projection_status) v}), -1;
		is($all, 't', "$label: every projection verifies (bool_and(ledger.verify_projection(name)))")
		  or diag("projections that do not verify: $failed");
	}
	return;
}

# server_log_clean($node, $label, $offset): nothing in the server log (from
# byte $offset) that a healthy run never writes.  Crash tests pass the
# offset at which their restart began, so the crash itself is not counted.
sub server_log_clean
{
	my ($node, $label, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset // 0);
	unlike($log, qr/deadlock detected/, "$label: no deadlock in the server log");
	unlike($log, qr/\b(PANIC|TRAP):|terminated by signal|was terminated by/,
		"$label: no PANIC, assertion failure or crashed backend in the server log");
	return;
}

#
# LoadClient: one psql process fed statements through a pipe, in autocommit.
# Each statement prints a tag and a result on success ("c-17|4711"); a
# tagged line that came back means the statement committed.
#
package LoadClient;

use IPC::Run;

# psql may exit (server crash) with input still queued; never die of it
$SIG{PIPE} = 'IGNORE';

sub new
{
	my ($class, $node, $db) = @_;
	my $self = bless { in => '', out => '', err => '', lines => [], partial => '' }, $class;
	$self->{h} = IPC::Run::start(
		[
			'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=0',
			'-v', 'VERBOSITY=sqlstate', '-d', $node->connstr($db)
		],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err},
		IPC::Run::timeout(600));
	return $self;
}

# queue statements (each one a complete line)
sub feed
{
	my ($self, @stmts) = @_;
	$self->{in} .= join('', map { "$_\n" } @stmts);
	return;
}

sub pending_input { return length($_[0]->{in}); }

# move what psql printed so far into the list of complete lines
sub collect
{
	my ($self) = @_;
	IPC::Run::pump_nb($self->{h}) if $self->{h}->pumpable;
	if ($self->{out} ne '')
	{
		my $buf = $self->{partial} . $self->{out};
		$self->{out} = '';
		my @l = split /\n/, $buf, -1;
		$self->{partial} = pop @l;
		push @{ $self->{lines} }, @l;
	}
	return;
}

# drop whatever has not been handed to psql yet
sub discard_input { $_[0]->{in} = ''; return; }

# stop feeding and wait for psql to exit (after a crash it exits on its own
# at its next statement); returns psql's exit status
sub finish
{
	my ($self) = @_;
	eval { $self->{h}->finish; 1; } or do {
		my $e = $@;
		Test::More::diag("psql client: $e");
		eval { $self->{h}->kill_kill; };
	};
	$self->collect;
	push @{ $self->{lines} }, $self->{partial} if $self->{partial} ne '';
	$self->{partial} = '';
	return $self->{h}->result(0) // -1;
}

sub lines  { return @{ $_[0]->{lines} }; }
sub errors { return $_[0]->{err}; }

# the SQLSTATEs of the errors psql reported (VERBOSITY=sqlstate)
sub error_codes { return $_[0]->{err} =~ /^ERROR:\s+([0-9A-Z]{5})\s*$/mg; }

1;
