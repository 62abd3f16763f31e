# A flagged wallet under a pgbench storm.
#
# A wallet with debits_must_not_exceed_credits is funded with 1000.00 USD;
# 8 pgbench clients then keep trying to spend random amounts (1.00 .. 50.00)
# from it to their own merchant account, far more than it holds.  Refusals
# (23514, check_violation) are expected: a small wrapper, try_spend(),
# catches exactly that error class and records every attempt, so a refusal
# never aborts a pgbench client while any other error still does.
#
# Afterwards the books must add up: the wallet never went negative (neither
# its balance nor any balance_after), it holds 1000.00 minus what the log
# says it paid, balance_after is the running sum in position order, every
# built-in read model verifies against the log, the trial balance balances,
# and every attempt is accounted for as exactly one posting or one refusal.
#
# A second round mixes top-ups (funding -> wallet) into the spends, so the
# wallet keeps going up and down around zero for the whole run, and checks
# the same invariants again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients      = 8;
my $per_client   = 150;
my $attempts     = $clients * $per_client;

my $node = PostgreSQL::Test::Cluster->new('wallet');
$node->init;
$node->start;

$node->safe_psql('postgres', <<'SQL');
CREATE EXTENSION ledger_cqrs;
SELECT ledger.open_account('funding');
SELECT ledger.open_account('wallet', ARRAY['debits_must_not_exceed_credits']);
SELECT ledger.open_account('merchant' || i) FROM generate_series(1, 8) AS i;
SELECT ledger.transfer('fund-wallet', 'funding', 'wallet', 1000.00, 'USD');

CREATE SEQUENCE spend_seq;
CREATE TABLE spend_attempts (
    transfer_id text PRIMARY KEY,
    client      integer NOT NULL,
    amount      numeric NOT NULL,
    outcome     text    NOT NULL CHECK (outcome IN ('posted', 'refused')),
    position    bigint
);

-- Spend from the wallet; a flag refusal (check_violation) is recorded, not
-- raised.  Any other error propagates and aborts the pgbench client.
CREATE FUNCTION try_spend(p_client integer, p_amount numeric, p_prefix text DEFAULT 'd')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id  text := p_prefix || '-' || p_client || '-' || nextval('spend_seq');
    v_pos bigint;
BEGIN
    BEGIN
        v_pos := ledger.transfer(v_id, 'wallet', 'merchant' || p_client, p_amount, 'USD');
    EXCEPTION WHEN check_violation THEN
        INSERT INTO spend_attempts VALUES (v_id, p_client, p_amount, 'refused', NULL);
        RETURN 'refused';
    END;
    INSERT INTO spend_attempts VALUES (v_id, p_client, p_amount, 'posted', v_pos);
    RETURN 'posted';
END
$$;

-- round 2: top-ups, recorded with the position they were posted at
CREATE TABLE topups (
    transfer_id text PRIMARY KEY,
    amount      numeric NOT NULL,
    position    bigint  NOT NULL
);
CREATE FUNCTION topup(p_client integer, p_amount numeric) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id  text := 'top-' || p_client || '-' || nextval('spend_seq');
    v_pos bigint;
BEGIN
    v_pos := ledger.transfer(v_id, 'funding', 'wallet', p_amount, 'USD');
    INSERT INTO topups VALUES (v_id, p_amount, v_pos);
    RETURN v_pos;
END
$$;
SQL

# :client_id is 0-based; merchants are merchant1 .. merchant8
my $script = <<'PGBENCH';
\set cents random(100, 5000)
SELECT try_spend(:client_id + 1, (:cents::integer / 100.0)::numeric(12,2));
PGBENCH

$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$per_client --protocol=prepared",
	0,
	[
		qr{number of transactions actually processed: $attempts/$attempts},
		qr{number of failed transactions: 0 }
	],
	[qr{^$}],
	'pgbench: 8 clients spending from one flagged wallet',
	{ '001_flagged_wallet_spend' => $script });

sub q1 { return $node->safe_psql('postgres', shift); }

# every attempt is recorded exactly once, as a posting or a refusal
is(q1('SELECT count(*) FROM spend_attempts'), $attempts,
	'every attempt was recorded');
my ($posted, $refused) = split /\|/, q1(
	"SELECT count(*) FILTER (WHERE outcome = 'posted'),
	        count(*) FILTER (WHERE outcome = 'refused') FROM spend_attempts");
is($posted + $refused, $attempts, 'posted + refused = attempts');
ok($posted > 0,  "some spends were posted ($posted)");
ok($refused > 0, "some spends were refused ($refused): the wallet ran dry");

# the log agrees with the wrapper: one TransferPosted per posted spend, at
# the position the wrapper saw, and none for a refused one
is(q1("SELECT count(*) FROM ledger.events
        WHERE type = 'TransferPosted' AND stream LIKE 'transfer:d-%'"),
	$posted, 'one TransferPosted event per posted spend');
is(q1("SELECT count(*) FROM spend_attempts s
         LEFT JOIN ledger.events e ON e.stream = 'transfer:' || s.transfer_id
        WHERE (s.outcome = 'posted' AND (e.position IS DISTINCT FROM s.position
                                         OR (e.data->'legs'->0->>'amount')::numeric <> s.amount))
           OR (s.outcome = 'refused' AND e.position IS NOT NULL)"),
	0, 'posted spends are in the log at their returned position; refused ones are not');

# the wallet
my $balance = q1("SELECT balance FROM ledger.balances
                   WHERE account = 'wallet' AND currency = 'USD'");
ok($balance >= 0, "wallet balance is not negative ($balance)");
is(q1(q{
	SELECT 1000.00 - coalesce(sum((l->>'amount')::numeric), 0)
	  FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
	 WHERE e.type = 'TransferPosted'
	   AND l->>'account' = 'wallet' AND l->>'side' = 'debit' AND l->>'currency' = 'USD'}),
	$balance, 'wallet balance = 1000.00 - the debits the log holds for it');
is(q1("SELECT 1000.00 - sum(amount) FROM spend_attempts WHERE outcome = 'posted'"),
	$balance, 'wallet balance = 1000.00 - the spends the wrapper saw posted');
is(q1("SELECT min(balance_after) >= 0 FROM ledger.account_entries
        WHERE account = 'wallet' AND currency = 'USD'"),
	't', 'the wallet balance_after never went negative');
# the wallet only ever paid out after funding, so its balance only fell: an
# attempt refused at any moment asked for more than the final balance
is(q1("SELECT count(*) FROM spend_attempts
        WHERE outcome = 'refused' AND amount <= $balance"),
	0, 'no spend was refused that the wallet could have paid');
is(q1("SELECT sum(balance) FROM ledger.balances WHERE account LIKE 'merchant%'"),
	q1("SELECT 1000.00 - $balance"), 'the merchants received what the wallet paid');

# running balances, for every account
is(q1(q{
	SELECT count(*) FROM (
	  SELECT balance_after,
	         sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
	           OVER (PARTITION BY account, currency ORDER BY position) AS running
	    FROM ledger.account_entries) r
	 WHERE balance_after <> running}),
	0, 'balance_after is the running sum in position order');
is(q1(q{
	SELECT count(*) FROM ledger.balances b
	 WHERE b.balance <> (SELECT ae.balance_after FROM ledger.account_entries ae
	                      WHERE ae.account = b.account AND ae.currency = b.currency
	                      ORDER BY ae.position DESC LIMIT 1)
	    OR b.postings <> (SELECT count(*) FROM ledger.account_entries ae
	                       WHERE ae.account = b.account AND ae.currency = b.currency)}),
	0, 'each balance is its last balance_after and counts its entries');

# read models and trial balance
is(q1('SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status'),
	't', 'every projection verifies against the log');
is(q1('SELECT count(*) FROM ledger.currency_totals WHERE debits <> credits'),
	0, 'currency_totals: debits = credits');
is(q1("SELECT debits FROM ledger.currency_totals WHERE currency = 'USD'"),
	q1("SELECT 1000.00 + sum(amount) FROM spend_attempts WHERE outcome = 'posted'"),
	'USD turnover = funding + posted spends');

#
# Round 2: spends (weight 3) and top-ups (weight 1) at once.
#
my $round2 = 2 * $attempts;
my $per_client2 = 2 * $per_client;
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$per_client2 --protocol=prepared",
	0,
	[
		qr{number of transactions actually processed: $round2/$round2},
		qr{number of failed transactions: 0 }
	],
	[qr{^$}],
	'pgbench: spends and top-ups on one flagged wallet',
	{
		'001_flagged_wallet_spend2@3' => <<'PGBENCH',
\set cents random(100, 5000)
SELECT try_spend(:client_id + 1, (:cents::integer / 100.0)::numeric(12,2), 'e');
PGBENCH
		'001_flagged_wallet_topup@1' => <<'PGBENCH',
\set cents random(100, 5000)
SELECT topup(:client_id + 1, (:cents::integer / 100.0)::numeric(12,2));
PGBENCH
	});

my ($posted2, $refused2, $topups) = split /\|/, q1(
	"SELECT count(*) FILTER (WHERE outcome = 'posted'),
	        count(*) FILTER (WHERE outcome = 'refused'),
	        (SELECT count(*) FROM topups)
	   FROM spend_attempts WHERE transfer_id LIKE 'e-%'");
is($posted2 + $refused2 + $topups, $round2,
	'round 2: spends posted + refused + top-ups = attempts');
ok($posted2 > 0 && $topups > 0,
	"round 2: spends ($posted2 posted, $refused2 refused) and top-ups ($topups) happened");
is(q1("SELECT count(*) FROM ledger.events
        WHERE type = 'TransferPosted'
          AND (stream LIKE 'transfer:e-%' OR stream LIKE 'transfer:top-%')"),
	$posted2 + $topups, 'round 2: one TransferPosted event per posting');

$balance = q1("SELECT balance FROM ledger.balances
                WHERE account = 'wallet' AND currency = 'USD'");
ok($balance >= 0, "round 2: wallet balance is not negative ($balance)");
is(q1(q{
	SELECT sum(CASE l->>'side' WHEN 'credit' THEN (l->>'amount')::numeric
	                           ELSE -(l->>'amount')::numeric END)
	  FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
	 WHERE e.type = 'TransferPosted'
	   AND l->>'account' = 'wallet' AND l->>'currency' = 'USD'}),
	$balance, 'round 2: wallet balance = its credits - its debits in the log');
is(q1("SELECT 1000.00 + (SELECT sum(amount) FROM topups)
                      - (SELECT sum(amount) FROM spend_attempts WHERE outcome = 'posted')"),
	$balance, 'round 2: wallet balance = funding + top-ups - posted spends');
is(q1("SELECT min(balance_after) >= 0 FROM ledger.account_entries
        WHERE account = 'wallet' AND currency = 'USD'"),
	't', 'round 2: the wallet balance_after never went negative');
is(q1(q{
	SELECT count(*) FROM (
	  SELECT balance_after,
	         sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
	           OVER (PARTITION BY account, currency ORDER BY position) AS running
	    FROM ledger.account_entries) r
	 WHERE balance_after <> running}),
	0, 'round 2: balance_after is the running sum in position order');
is(q1('SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status'),
	't', 'round 2: every projection verifies against the log');
is(q1('SELECT count(*) FROM ledger.currency_totals WHERE debits <> credits'),
	0, 'round 2: currency_totals: debits = credits');

$node->stop;
done_testing();
