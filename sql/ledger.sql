-- The ledger: commands, the events they append and the read models.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

-- common currencies are registered at CREATE EXTENSION, as events
SELECT code, scale, position FROM ledger.currencies ORDER BY position;
SELECT stream, type, data FROM ledger.events WHERE type = 'CurrencyRegistered' ORDER BY position;

-- register_currency: new, and re-registering with the same scale is a no-op
SELECT ledger.register_currency('BTC_SAT', 0);
SELECT ledger.register_currency('ETH', 18);
SELECT ledger.register_currency('ETH', 18);
SELECT ledger.register_currency('USD', 2);
SELECT stream, version, type, data FROM ledger.events WHERE position > 9 ORDER BY position;

-- open_account: flags, metadata, one AccountOpened event each
SELECT ledger.open_account('bank');
SELECT ledger.open_account('alice', '{debits_must_not_exceed_credits}', '{"name": "Alice", "tier": 2}');
SELECT ledger.open_account('bob', ARRAY['debits_must_not_exceed_credits', 'debits_must_not_exceed_credits']);
SELECT ledger.open_account('revenue', '{credits_must_not_exceed_debits}');
SELECT ledger.open_account('fx');
SELECT account, flags, status, closed_at IS NULL AS not_closed, metadata FROM ledger.accounts ORDER BY account;
SELECT stream, version, type, data FROM ledger.events WHERE type = 'AccountOpened' ORDER BY position;

-- transfer returns the position of its TransferPosted event
SELECT ledger.transfer('fund-alice', 'bank', 'alice', 1000, 'USD') AS pos \gset
SELECT position = :pos AS is_position, stream, version, type, data, metadata
  FROM ledger.events WHERE position = :pos;
SELECT ledger.transfer('t-1', 'alice', 'bob', 12.5, 'USD', '{"memo": "lunch", "tags": ["food"]}');
SELECT ledger.transfer('t-2', 'bob', 'alice', 2.25, 'USD');
SELECT ledger.transfer('jpy-1', 'bank', 'bob', 5000, 'JPY');
-- amounts are written at the currency's scale
SELECT data->'legs' FROM ledger.events WHERE stream IN ('transfer:t-1', 'transfer:jpy-1') ORDER BY position;

-- idempotency: same id and legs returns the original position, appends nothing
SELECT count(*) AS events_before FROM ledger.events \gset
SELECT ledger.transfer('t-1', 'alice', 'bob', 12.50, 'USD') = ledger.transfer('t-1', 'alice', 'bob', 12.5, 'USD') AS same_position;
SELECT ledger.transfer('t-1', 'alice', 'bob', 12.5, 'USD', '{"memo": "retry with other metadata"}')
     = (SELECT position FROM ledger.events WHERE stream = 'transfer:t-1') AS original_position;
SELECT count(*) = :events_before AS nothing_appended FROM ledger.events;

-- the read models
SELECT * FROM ledger.balances ORDER BY account, currency;
SELECT account, currency, transfer_id, side, amount, balance_after
  FROM ledger.account_entries ORDER BY position, account;
SELECT * FROM ledger.currency_totals ORDER BY currency;

-- flags: alice may not overdraw, revenue may not go above zero
SELECT ledger.transfer('overdraw', 'alice', 'bob', 989.76, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('exact', 'alice', 'bob', 989.75, 'USD');
SELECT balance FROM ledger.balances WHERE account = 'alice' AND currency = 'USD';
SELECT ledger.transfer('rev-wrong-way', 'bank', 'revenue', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('rev-1', 'revenue', 'bank', 10, 'USD');
SELECT ledger.transfer('rev-2', 'bank', 'revenue', 10, 'USD');
SELECT account, balance FROM ledger.balances WHERE account IN ('alice', 'revenue') ORDER BY 1;
-- a flag holds per currency: alice has no EUR, so she cannot pay in EUR
SELECT ledger.transfer('eur-1', 'alice', 'bob', 1, 'EUR');
\echo :LAST_ERROR_SQLSTATE

-- post_entry: a currency exchange is four legs, balanced per currency
SELECT ledger.transfer('fund-bob-usd', 'bank', 'bob', 100, 'USD');
SELECT ledger.post_entry('fx-1', '[
    {"account": "bob", "side": "debit",  "amount": 100,   "currency": "USD"},
    {"account": "fx",  "side": "credit", "amount": 100,   "currency": "USD"},
    {"account": "fx",  "side": "debit",  "amount": 92.4,  "currency": "EUR"},
    {"account": "bob", "side": "credit", "amount": 92.40, "currency": "EUR"}
  ]', '{"rate": "0.924"}') AS fx_pos \gset
SELECT type, data FROM ledger.events WHERE position = :fx_pos;
-- retried with the legs in another order: still the same posting
SELECT ledger.post_entry('fx-1', '[
    {"account": "bob", "side": "credit", "amount": 92.4, "currency": "EUR"},
    {"account": "fx",  "side": "debit",  "amount": 92.4, "currency": "EUR"},
    {"account": "fx",  "side": "credit", "amount": 100,  "currency": "USD"},
    {"account": "bob", "side": "debit",  "amount": 100,  "currency": "USD"}
  ]') = :fx_pos AS same_posting;
-- a transfer retried as a post_entry with the same legs is the same posting
SELECT ledger.post_entry('t-2', '[{"account": "alice", "side": "credit", "amount": 2.25, "currency": "USD"},
                                 {"account": "bob", "side": "debit", "amount": 2.25, "currency": "USD"}]')
     = (SELECT position FROM ledger.events WHERE stream = 'transfer:t-2') AS same_posting;
-- many legs, three accounts, one currency; zero-scale currency
SELECT ledger.post_entry('split', '[
    {"account": "bank",    "side": "debit",  "amount": 300, "currency": "JPY"},
    {"account": "alice",   "side": "credit", "amount": 100, "currency": "JPY"},
    {"account": "fx",      "side": "credit", "amount": 200, "currency": "JPY"}
  ]');
-- exponent notation is a number like any other
SELECT ledger.post_entry('exp', '[{"account": "bank", "side": "debit", "amount": 1e3, "currency": "JPY"},
                                 {"account": "fx", "side": "credit", "amount": 1000, "currency": "JPY"}]');
SELECT data->'legs' FROM ledger.events WHERE stream = 'transfer:exp';
SELECT * FROM ledger.balances ORDER BY account, currency;
SELECT * FROM ledger.currency_totals ORDER BY currency;

-- close_account: only at zero in every currency; then no more postings
SELECT ledger.close_account('bob');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('temp');
SELECT ledger.transfer('temp-in', 'bank', 'temp', 5, 'GBP');
SELECT ledger.transfer('temp-out', 'temp', 'bank', 5, 'GBP');
SELECT ledger.close_account('temp');
SELECT account, status, closed_at IS NOT NULL AS has_closed_at FROM ledger.accounts WHERE account = 'temp';
SELECT stream, version, type, data FROM ledger.events WHERE stream = 'account:temp' ORDER BY version;
SELECT ledger.transfer('temp-again', 'bank', 'temp', 5, 'GBP');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('temp-new-currency', 'bank', 'temp', 5, 'CHF');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.close_account('temp');
\echo :LAST_ERROR_SQLSTATE
-- an account that never had a posting closes at once
SELECT ledger.open_account('empty');
SELECT ledger.close_account('empty');
-- and a closed account's id stays taken
SELECT ledger.open_account('empty');
\echo :LAST_ERROR_SQLSTATE

-- every command appends exactly one event in its documented shape
SELECT type, count(*) FROM ledger.events GROUP BY type ORDER BY type;
SELECT count(*) AS posting_events, (SELECT count(DISTINCT transfer_id) FROM ledger.account_entries) AS postings
  FROM ledger.events WHERE type = 'TransferPosted';
SELECT bool_and(jsonb_typeof(l->'amount') = 'number' AND l ?& ARRAY['account', 'side', 'amount', 'currency']
                AND (SELECT count(*) FROM jsonb_object_keys(l)) = 4) AS legs_well_formed
  FROM ledger.events e, jsonb_array_elements(e.data->'legs') l WHERE e.type = 'TransferPosted';
-- amounts are written with exactly the currency's scale
SELECT bool_and(scale((l->>'amount')::numeric) = c.scale) AS amounts_at_scale
  FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
  JOIN ledger.currencies c ON c.code = l->>'currency'
 WHERE e.type = 'TransferPosted';

-- the trial balance balances
SELECT bool_and(debits = credits) AS balanced FROM ledger.currency_totals;

-- the built-in read models are projections, listed and verifiable
SELECT name, kind, mode, state, lag_events, last_error FROM ledger.projection_status ORDER BY name;
SELECT name, ledger.verify_projection(name) FROM ledger.projection_status ORDER BY name;
SELECT ledger.verify_projection('balances'), ledger.verify_projection('ledger.account_entries');

-- read models refuse direct writes, by any role, even under replica role
UPDATE ledger.balances SET balance = 0;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ledger.account_entries;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ledger.accounts VALUES ('forged', '{}', 'open', now(), NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ledger.currencies;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
UPDATE ledger.balances SET balance = 0;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;

-- verify notices tampering; rebuild repairs it.  Tamper the only way a
-- superuser can: by switching the guards off (the event trigger that keeps
-- the triggers on, then the trigger).
ALTER EVENT TRIGGER ledger_guard_triggers DISABLE;
ALTER TABLE ledger.balances DISABLE TRIGGER balances_read_only;
UPDATE ledger.balances SET credits_posted = credits_posted + 1, balance = balance + 1
 WHERE account = 'alice' AND currency = 'USD';
DELETE FROM ledger.balances WHERE account = 'fx' AND currency = 'JPY';
ALTER TABLE ledger.balances ENABLE ALWAYS TRIGGER balances_read_only;
ALTER EVENT TRIGGER ledger_guard_triggers ENABLE ALWAYS;
SELECT ledger.verify_projection('ledger.balances');
SELECT ledger.rebuild_projection('ledger.balances') = (SELECT count(*) FROM ledger.events) AS replayed_whole_log;
SELECT ledger.verify_projection('ledger.balances');
SELECT account, currency, balance FROM ledger.balances WHERE account IN ('alice', 'fx') ORDER BY 1, 2;
-- postings go on after a rebuild
SELECT ledger.transfer('after-rebuild', 'bank', 'alice', 1, 'USD') > 0 AS posted;
SELECT ledger.rebuild_projection('account_entries') > 0, ledger.rebuild_projection('accounts') > 0,
       ledger.rebuild_projection('currencies') > 0, ledger.rebuild_projection('currency_totals') > 0;
SELECT bool_and(ledger.verify_projection(name)) AS all_verify FROM ledger.projection_status;

-- unknown projections
SELECT ledger.verify_projection('ledger.nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.rebuild_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.verify_projection(NULL);
\echo :LAST_ERROR_SQLSTATE

-- a user's own events in a transfer:<id> stream: the posting follows them,
-- and retries still find it (only a TransferPosted is a twin)
SELECT ledger.append('transfer:noted', 'Note', '{"text": "expected soon"}') AS version;
SELECT ledger.transfer('noted', 'bank', 'alice', 3, 'USD') AS noted_pos \gset
SELECT ledger.append('transfer:noted', 'Note', '{"text": "arrived"}') AS version;
SELECT ledger.transfer('noted', 'bank', 'alice', 3, 'USD') = :noted_pos AS retry_same_position;
SELECT ledger.transfer('noted', 'bank', 'alice', 4, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT version, type, position = :noted_pos AS is_posting FROM ledger.events
 WHERE stream = 'transfer:noted' ORDER BY version;
SELECT count(*) AS entries FROM ledger.account_entries WHERE transfer_id = 'noted';
SELECT ledger.verify_projection('ledger.balances') AND ledger.verify_projection('ledger.account_entries') AS verified;

-- one balance in several legs of a posting: a purchase and its fee, both
-- debited to carol.  One balance row each, one entry per leg (leg = its
-- index in the event's legs), every entry with the balance after the posting
SELECT ledger.open_account('carol', '{debits_must_not_exceed_credits}');
SELECT ledger.open_account('shop');
SELECT ledger.open_account('fees');
SELECT ledger.transfer('carol-in', 'bank', 'carol', 150, 'USD') > 0 AS funded;
SELECT ledger.post_entry('purchase', '[
    {"account": "carol", "side": "debit",  "amount": 100, "currency": "USD"},
    {"account": "shop",  "side": "credit", "amount": 100, "currency": "USD"},
    {"account": "carol", "side": "debit",  "amount": 2,   "currency": "USD"},
    {"account": "fees",  "side": "credit", "amount": 2,   "currency": "USD"}]') AS purchase_pos \gset
SELECT account, leg, side, amount, balance_after FROM ledger.account_entries
 WHERE position = :purchase_pos ORDER BY leg;
SELECT account, debits_posted, credits_posted, balance, postings FROM ledger.balances
 WHERE account IN ('carol', 'shop', 'fees') ORDER BY account;
SELECT ledger.balance_at('carol', 'USD', :purchase_pos) AS carol_at_purchase,
       ledger.balance_at('carol', 'USD', :purchase_pos - 1) AS carol_before;
-- a retry with the legs in another order is the same posting; the same
-- accounts with the fee split otherwise are not (23505)
SELECT ledger.post_entry('purchase', '[
    {"account": "fees",  "side": "credit", "amount": 2,   "currency": "USD"},
    {"account": "carol", "side": "debit",  "amount": 2,   "currency": "USD"},
    {"account": "shop",  "side": "credit", "amount": 100, "currency": "USD"},
    {"account": "carol", "side": "debit",  "amount": 100, "currency": "USD"}]') = :purchase_pos AS retry_same_position;
SELECT ledger.post_entry('purchase', '[
    {"account": "carol", "side": "debit",  "amount": 101, "currency": "USD"},
    {"account": "shop",  "side": "credit", "amount": 100, "currency": "USD"},
    {"account": "carol", "side": "debit",  "amount": 1,   "currency": "USD"},
    {"account": "fees",  "side": "credit", "amount": 2,   "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS purchase_events FROM ledger.events WHERE stream = 'transfer:purchase';
-- a refund and a fee in one posting on a flagged account: judged on the
-- total (-49 + 50), which the account can take although the legs' order puts
-- the debit first
SELECT ledger.post_entry('refund', '[
    {"account": "carol", "side": "debit",  "amount": 49,  "currency": "USD"},
    {"account": "fees",  "side": "credit", "amount": 49,  "currency": "USD"},
    {"account": "shop",  "side": "debit",  "amount": 50,  "currency": "USD"},
    {"account": "carol", "side": "credit", "amount": 50,  "currency": "USD"}]') > 0 AS posted;
SELECT account, leg, side, amount, balance_after FROM ledger.account_entries
 WHERE transfer_id = 'refund' ORDER BY leg;
-- balance_after agrees with a window over position (peers: the posting's
-- legs), and the built-in models with a rebuild from the log
SELECT count(*) AS mismatches FROM (
  SELECT balance_after,
         sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
           OVER (PARTITION BY account, currency ORDER BY position) AS running
    FROM ledger.account_entries) r
 WHERE balance_after <> running;
SELECT ledger.verify_projection('ledger.balances') AND ledger.verify_projection('ledger.account_entries')
       AND ledger.verify_projection('ledger.currency_totals') AS verified;
SELECT ledger.rebuild_projection('ledger.account_entries') > 0 AS rebuilt;
SELECT account, leg, balance_after FROM ledger.account_entries
 WHERE position = :purchase_pos ORDER BY leg;
