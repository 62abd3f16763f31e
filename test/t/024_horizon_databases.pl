# The read_all / catch-up horizon is this database's.
#
# Only a transaction connected to a database can append to its log, so a
# transaction open in another database of the cluster, or prepared there,
# must not hold back delivery here.  One of this database, open or
# prepared, still must: its events may commit below what was delivered.
# A consumer follows the log with the read_all cursor throughout and must
# get every event exactly once, in (tx_order, position) order; an async
# projection follows it with catch_up and must verify.

use strict;
use warnings;

use lib 't';
use LedgerTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('horizon');
$node->init;
$node->append_conf('postgresql.conf', 'max_prepared_transactions = 10');
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE ledger');
$node->safe_psql('postgres', 'CREATE DATABASE other');
sub q1 { return $node->safe_psql('ledger', shift); }

q1('CREATE EXTENSION ledger_cqrs');
q1(q{SELECT ledger.create_projection('types',
        'SELECT type, count(*) AS n, max(position) AS last FROM ledger.events GROUP BY type', 'async')});

# the consumer: the types read_all delivers after its cursor, in order
my $cursor = 0;
my @sequence;
sub read_new
{
	my $rows = q1(qq{SELECT position, type FROM ledger.read_all($cursor, NULL) WITH ORDINALITY
	                  ORDER BY ordinality});
	my @types;
	for my $row (split /\n/, $rows)
	{
		my ($position, $type) = split /\|/, $row;
		push @sequence, $position;
		$cursor = $position;
		push @types, $type;
	}
	return join(',', @types);
}
read_new();
sub append { q1(qq{SELECT ledger.append('s:$_[0]', '$_[0]', '{}')}); return; }
sub catch_up { return q1(q{SELECT ledger.catch_up('types')}); }

# a session in $db that keeps a transaction with an xid open
sub open_xact
{
	my ($db) = @_;
	my $s = LoadClient->new($node, $db);
	$s->feed('BEGIN;', 'SELECT pg_current_xact_id() IS NOT NULL;', q{SELECT 'ready';});
	ok(wait_for("a session in $db", 60, sub { $s->collect; return grep { $_ eq 'ready' } $s->lines; }),
		"a transaction with an xid is open in database $db");
	return $s;
}

# 1. a transaction open in another database holds back nothing
my $other = open_xact('other');
append('A');
is(read_new(), 'A', 'read_all delivers past a transaction open in another database');
is(catch_up(), '1', 'and catch_up applies it');

# 2. nor does a transaction prepared there, once its session is gone
$other->feed(q{PREPARE TRANSACTION 'other_db';});
$other->finish;
is($node->safe_psql('postgres', q{SELECT database FROM pg_prepared_xacts WHERE gid = 'other_db'}),
	'other', 'a transaction is prepared in database other');
append('B');
is(read_new(), 'B', 'read_all delivers past a transaction prepared in another database');
is(catch_up(), '1', 'and catch_up applies it');

# 3. a transaction open in this database, older than the next append,
#    holds it back until it ends, and its own later append comes first
my $mine = open_xact('ledger');
append('C');
is(read_new(), '', 'an open transaction of this database holds back a later append');
is(catch_up(), '0', 'from catch_up too');
$mine->feed(q{SELECT ledger.append('s:D', 'D', '{}');}, 'COMMIT;');
$mine->finish;
is(read_new(), 'D,C', 'once it commits, its event comes first, then the held-back one');
is(catch_up(), '2', 'catch_up applies both');

# 4. a prepared transaction of this database that appended holds back
#    later appends until COMMIT PREPARED
q1(q{BEGIN; SELECT ledger.append('s:E', 'E', '{}'); PREPARE TRANSACTION 'this_db';});
append('F');
is(read_new(), '', 'a prepared transaction of this database holds back a later append');
is(catch_up(), '0', 'from catch_up too');
q1(q{COMMIT PREPARED 'this_db'});
is(read_new(), 'E,F', 'after COMMIT PREPARED both arrive, the prepared one first');
is(catch_up(), '2', 'catch_up applies both');

# 5. still past the other database's prepared transaction
append('G');
is(read_new(), 'G', 'the other database\'s prepared transaction still holds back nothing');
is(catch_up(), '1', 'nor catch_up');
$node->safe_psql('other', q{ROLLBACK PREPARED 'other_db'});

# 6. both databases under load: in this one, transactions that take their
#    xid, then append to two streams (in stream order: no deadlock) with
#    pauses, or append, prepare and commit prepared; in the other, short
#    transactions and prepared ones.  The consumer and catch_up follow all
#    along.
my $tmp = PostgreSQL::Test::Utils::tempdir;
my %scripts = (
	'late.sql' => <<'PGBENCH',
\set s random(1, 40)
\set t :s + random(0, 5)
BEGIN;
SELECT pg_current_xact_id();
SELECT pg_sleep(random() * 0.004);
SELECT ledger.append('st:' || :s, 'X', '{}');
SELECT pg_sleep(random() * 0.004);
SELECT ledger.append('st:' || :t, 'Y', '{}');
COMMIT;
PGBENCH
	'prepared.sql' => <<'PGBENCH',
\set s random(1, 40)
BEGIN;
SELECT ledger.append('st:' || :s, 'P', '{}');
PREPARE TRANSACTION 'mine_:client_id';
SELECT pg_sleep(random() * 0.004);
COMMIT PREPARED 'mine_:client_id';
PGBENCH
	'other.sql' => <<'PGBENCH',
BEGIN;
SELECT pg_current_xact_id();
SELECT pg_sleep(0.01);
COMMIT;
PGBENCH
	'other_prepared.sql' => <<'PGBENCH',
BEGIN;
SELECT pg_current_xact_id();
PREPARE TRANSACTION 'other_:client_id';
SELECT pg_sleep(0.01);
COMMIT PREPARED 'other_:client_id';
PGBENCH
);
for my $f (keys %scripts)
{
	open my $fh, '>', "$tmp/$f" or die $!;
	print $fh $scripts{$f};
	close $fh;
}
my @conn = ('-h', $node->host, '-p', $node->port);
my @runs = (
	IPC::Run::start(
		[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '4', @conn,
		  '-f', "$tmp/late.sql\@3", '-f', "$tmp/prepared.sql\@1", 'ledger' ],
		'>', "$tmp/ledger.out", '2>', "$tmp/ledger.err"),
	IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-T', '4', @conn,
		  '-f', "$tmp/other.sql", '-f', "$tmp/other_prepared.sql", 'other' ],
		'>', "$tmp/other.out", '2>', "$tmp/other.err"));
my ($reads, $applied) = (0, 0);
while (grep { $_->pumpable } @runs)
{
	$reads++ if read_new() ne '';
	$applied += catch_up();
	usleep(20_000);
	$_->pump_nb for grep { $_->pumpable } @runs;
}
ok($_->finish, 'pgbench ran without error') for @runs;
like(slurp_file("$tmp/ledger.out"), qr/number of failed transactions: 0 /,
	'no appending transaction failed');
cmp_ok($reads, '>', 10, "the consumer received events during the load ($reads reads)");
cmp_ok($applied, '>', 0, "catch_up applied events during the load ($applied)");
read_new();
catch_up();

# every event once, and the consumer's sequence is the log's final
# (tx_order, position) order: nothing ever turned up behind its cursor
is(join(',', @sequence),
	q1(q{SELECT string_agg(position::text, ',' ORDER BY tx_order, position) FROM ledger.events}),
	'the consumer received every event once, in (tx_order, position) order');
is(catch_up(), '0', 'the projection is at the head');
is(q1(q{SELECT state || ',' || lag_events FROM ledger.projection_status WHERE name = 'types'}),
	'live,0', 'live with no lag');
is(q1(q{SELECT ledger.verify_projection('types')}), 't', 'and verifies');
server_log_clean($node, 'after the run', 0);

$node->stop;
done_testing();
