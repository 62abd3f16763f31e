-- ledger_cqrs demo: run by `make demo` against a throwaway cluster.
\set QUIET on
\pset footer off
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

\echo
\echo '== 1. The event log: append with optimistic concurrency, read a stream'
SELECT ledger.append('order:1001', 'OrderPlaced', '{"sku": "book", "qty": 2}', 0) AS version;
SELECT ledger.append_events('order:1001', '[{"type": "OrderPaid", "data": {"amount": 40}},
                                           {"type": "OrderShipped", "metadata": {"actor": "warehouse"}}]', 1) AS version;
SELECT version, type, data, metadata FROM ledger.read_stream('order:1001');
\echo 'A writer that expected version 1 now gets SQLSTATE 40001:'
DO $$
BEGIN
    PERFORM ledger.append('order:1001', 'OrderCancelled', '{}', 1);
EXCEPTION WHEN serialization_failure THEN
    RAISE NOTICE 'refused (%): %', SQLSTATE, SQLERRM;
END $$;

\echo
\echo '== 2. The ledger: accounts, transfers, a currency exchange, a refused overdraft'
SELECT ledger.open_account(account, flags, metadata)
  FROM (VALUES ('bank',    '{}'::text[],                        '{}'::jsonb),
               ('alice',   '{debits_must_not_exceed_credits}',  '{"name": "Alice"}'),
               ('bob',     '{debits_must_not_exceed_credits}',  '{"name": "Bob"}'),
               ('fx-desk', '{}',                                '{}')) AS a(account, flags, metadata)
\g /dev/null
SELECT account, flags, status, metadata FROM ledger.accounts ORDER BY account;
SELECT ledger.transfer('salary-1', 'bank', 'alice', 2500.00, 'USD') AS position;
SELECT ledger.transfer('rent-1', 'alice', 'bob', 900.00, 'USD', '{"memo": "rent"}') AS position;
SELECT ledger.transfer('gift-1', 'bank', 'bob', 10000, 'JPY') AS position;
\echo 'Alice changes 500 USD into EUR: four legs, balanced per currency'
SELECT ledger.post_entry('fx-1', '[
    {"account": "alice",   "side": "debit",  "amount": 500.00, "currency": "USD"},
    {"account": "fx-desk", "side": "credit", "amount": 500.00, "currency": "USD"},
    {"account": "fx-desk", "side": "debit",  "amount": 462.00, "currency": "EUR"},
    {"account": "alice",   "side": "credit", "amount": 462.00, "currency": "EUR"}
  ]', '{"rate": "0.924"}') AS position;
\echo 'Retrying rent-1 is idempotent: same position, nothing appended'
SELECT ledger.transfer('rent-1', 'alice', 'bob', 900.00, 'USD') AS position;
\echo 'Bob tries to spend more than he has (his account is flagged):'
DO $$
BEGIN
    PERFORM ledger.transfer('overdraft-1', 'bob', 'bank', 1000.00, 'USD');
EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'refused (%): %', SQLSTATE, SQLERRM;
END $$;

\echo
\echo '== Balances per account and currency (ledger.balances)'
SELECT account, currency, debits_posted, credits_posted, balance, postings
  FROM ledger.balances ORDER BY account, currency;

\echo '== Statement of alice (ledger.account_entries, running balance)'
SELECT position, currency, transfer_id, side, amount, balance_after
  FROM ledger.account_entries WHERE account = 'alice' ORDER BY currency, position;

\echo '== Trial balance (ledger.currency_totals): debits = credits'
SELECT currency, debits, credits, debits = credits AS balanced
  FROM ledger.currency_totals ORDER BY currency;

\echo '== The audit trail: every command is one event in ledger.events'
SELECT position, stream, version, type FROM ledger.events WHERE position > 9 ORDER BY position;

\echo
\echo '== 3. A retroactive projection: a new read model over the whole existing log'
SELECT ledger.create_projection('spending', $$
    SELECT l->>'account' AS account, l->>'currency' AS currency,
           count(*) AS payments, sum((l->>'amount')::numeric) AS spent, max(e.recorded_at) AS last_paid_at
      FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') AS l
     WHERE e.type = 'TransferPosted' AND l->>'side' = 'debit'
     GROUP BY 1, 2 $$);
SELECT account, currency, payments, spent FROM spending ORDER BY account, currency;
\echo 'It is inline: the next transfer updates it in the same transaction'
SELECT ledger.transfer('coffee-1', 'alice', 'bob', 4.50, 'USD') AS position;
SELECT account, currency, payments, spent FROM spending WHERE account = 'alice' ORDER BY currency;

\echo
\echo '== 4. An async projection: maintained after commit, its lag visible'
SELECT ledger.create_projection('event_counts', 'SELECT type, count(*) AS events FROM ledger.events GROUP BY type', 'async');
SELECT ledger.append('order:1002', 'OrderPlaced', '{"sku": "pen", "qty": 1}') AS version;
SELECT name, mode, state, lag_events FROM ledger.projection_status WHERE name = 'event_counts';
SELECT ledger.catch_up('event_counts') AS applied;
SELECT name, mode, state, lag_events FROM ledger.projection_status WHERE name = 'event_counts';
SELECT type, events FROM event_counts ORDER BY type;

\echo
\echo '== 5. Balance as of: a past position or a past moment'
SELECT clock_timestamp() AS before_bonus \gset
SELECT ledger.transfer('bonus-1', 'bank', 'alice', 250.00, 'USD') AS position;
SELECT e.position, e.transfer_id, e.balance_after,
       ledger.balance_at('alice', 'USD', e.position) AS balance_at_position
  FROM ledger.account_entries e WHERE account = 'alice' AND currency = 'USD' ORDER BY position;
SELECT ledger.balance_at('alice', 'USD', :'before_bonus'::timestamptz) AS alice_usd_before_bonus,
       ledger.balance_at('alice', 'USD', now() + interval '1 second') AS alice_usd_now;

\echo
\echo '== Read models are projections of the log, verifiable at any time'
SELECT name, kind, mode, state, ledger.verify_projection(name) AS verified
  FROM ledger.projection_status ORDER BY name;

\echo '== An outside consumer follows the log with read_all(after => last position received)'
SELECT position, stream, type FROM ledger.read_all(12, 5);
