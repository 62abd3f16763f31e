-- Every malformed command gets the contract's SQLSTATE and changes nothing:
-- not the log, not a read model.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

SELECT ledger.open_account('bank');
SELECT ledger.open_account('alice', '{debits_must_not_exceed_credits}');
SELECT ledger.open_account('bob');
SELECT ledger.open_account('closed');
SELECT ledger.close_account('closed');
SELECT ledger.transfer('seed', 'bank', 'alice', 100, 'USD');

-- the whole state, to prove that nothing changed
CREATE TEMP VIEW state AS
SELECT (SELECT count(*) FROM ledger.events) AS events,
       (SELECT max(position) FROM ledger.events) AS last_position,
       (SELECT string_agg(b::text, ';' ORDER BY account, currency) FROM ledger.balances b) AS balances,
       (SELECT count(*) FROM ledger.account_entries) AS entries,
       (SELECT string_agg(a.account || a.status, ';' ORDER BY account) FROM ledger.accounts a) AS accounts,
       (SELECT string_agg(c.code || c.scale, ';' ORDER BY code) FROM ledger.currencies c) AS currencies;
CREATE TEMP TABLE before AS SELECT * FROM state;
CREATE TEMP VIEW unchanged AS
SELECT NOT EXISTS (SELECT * FROM state EXCEPT SELECT * FROM before) AS unchanged;

-- register_currency
SELECT ledger.register_currency(NULL, 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('ABC', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('usd', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('ABCDEFGHIJKLM', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('US-D', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('US D', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency(E'\U0001F4B0', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('ABC', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('ABC', 19);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('USD', 3);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- open_account
SELECT ledger.open_account(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account(repeat('a', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('carol', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('carol', '{overdraft_allowed}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('carol', '{debits_must_not_exceed_credits,credits_must_not_exceed_debits}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('carol', ARRAY['debits_must_not_exceed_credits', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('carol', '{{debits_must_not_exceed_credits}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('carol', '{}', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('carol', '{}', '"text"');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('alice');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account('closed');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- close_account
SELECT ledger.close_account(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.close_account('');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.close_account('nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.close_account('alice');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.close_account('closed');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- transfer: NULLs and empties
SELECT ledger.transfer(NULL, 'bank', 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', NULL, 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', NULL, 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', NULL, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('', 'bank', 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', '', 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer(repeat('t', 201), 'bank', 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
-- same account on both sides
SELECT ledger.transfer('x', 'bob', 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
-- amounts: zero, negative, NaN, infinite, too many decimals
SELECT ledger.transfer('x', 'bank', 'bob', 0, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', -5, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 'NaN', 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 'Infinity', 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1.001, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1.5, 'JPY');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 0.0001, 'BHD');
\echo :LAST_ERROR_SQLSTATE
-- out of range: 38 significant digits at most
SELECT ledger.transfer('x', 'bank', 'bob', 1e36, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1e100, 'JPY');
\echo :LAST_ERROR_SQLSTATE
-- currencies: unregistered, lowercase, too long
SELECT ledger.transfer('x', 'bank', 'bob', 1, 'XXX');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, 'usd');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, 'USDUSDUSDUSDUSD');
\echo :LAST_ERROR_SQLSTATE
-- accounts: unknown, closed
SELECT ledger.transfer('x', 'bank', 'nobody', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'nobody', 'bank', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'closed', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
-- metadata must be an object
SELECT ledger.transfer('x', 'bank', 'bob', 1, 'USD', '[]');
\echo :LAST_ERROR_SQLSTATE
-- the idempotency key reused for other legs
SELECT ledger.transfer('seed', 'bank', 'alice', 101, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('seed', 'bank', 'bob', 100, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('seed', 'bank', 'alice', 100, 'EUR');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('seed', 'alice', 'bank', 100, 'USD');
\echo :LAST_ERROR_SQLSTATE
-- a flag
SELECT ledger.transfer('x', 'alice', 'bob', 100.01, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- post_entry: legs that are not an array of leg objects
SELECT ledger.post_entry('x', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry(NULL, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '{"account": "bank"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '"legs"');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"}, 7]');
\echo :LAST_ERROR_SQLSTATE
-- a missing key
SELECT ledger.post_entry('x', '[{"side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- wrong JSON types: numbers as strings, accounts as numbers, null
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": "1", "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": "1", "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": 42, "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": null, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": true, "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- side other than debit/credit
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "DEBIT", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "both", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- negative zero and negative amounts
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": -0, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": -0, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": -1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": -1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- a leg in an unregistered currency, a lowercase one
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "XXX"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "XXX"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "eur"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "eur"}]');
\echo :LAST_ERROR_SQLSTATE
-- the same balance in several legs: flags judge the posting's total, so two
-- debits of 60 overdraw alice's 100 although each alone would not (23514)
SELECT ledger.post_entry('x', '[{"account": "alice", "side": "debit", "amount": 60, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 120, "currency": "USD"},
                                {"account": "alice", "side": "debit", "amount": 60, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- unbalanced, and unbalanced in one of two currencies
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 2, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "debit", "amount": 1, "currency": "EUR"},
                                {"account": "bank", "side": "credit", "amount": 2, "currency": "EUR"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "EUR"}]');
\echo :LAST_ERROR_SQLSTATE
-- too many legs
SELECT ledger.post_entry('x', (SELECT jsonb_agg(jsonb_build_object('account', 'a' || i, 'side',
                                  CASE WHEN i % 2 = 0 THEN 'debit' ELSE 'credit' END,
                                  'amount', 1, 'currency', 'USD'))
                               FROM generate_series(1, 1002) i));
\echo :LAST_ERROR_SQLSTATE
-- a leg on a closed or unknown account
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "closed", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "ghost", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- a flag broken by one leg of several
SELECT ledger.post_entry('x', '[{"account": "alice", "side": "debit", "amount": 60, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 60, "currency": "USD"},
                                {"account": "alice", "side": "debit", "amount": 1, "currency": "EUR"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "EUR"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- the range: 38 significant digits.  The largest USD amount is accepted
-- and stored literally; any more on the same side would take a total out
-- of range (22003) and is refused.
SELECT ledger.open_account('big-src');
SELECT ledger.open_account('big-dst');
SELECT ledger.transfer('max-1', 'big-src', 'big-dst', 999999999999999999999999999999999999.99, 'USD') > 0 AS posted;
SELECT data->'legs'->0->'amount' AS stored_literally FROM ledger.events WHERE stream = 'transfer:max-1';
DELETE FROM before;
INSERT INTO before SELECT * FROM state;
SELECT ledger.transfer('max-2', 'big-src', 'big-dst', 0.01, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('max-3', '[{"account": "bank", "side": "debit", "amount": 0.01, "currency": "USD"},
                                    {"account": "big-dst", "side": "credit", "amount": 0.01, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- two legs in range on one balance whose total is not
SELECT ledger.post_entry('max-4', '[{"account": "big-src", "side": "debit", "amount": 600000000000000000000000000000000000, "currency": "EUR"},
                                    {"account": "big-src", "side": "debit", "amount": 600000000000000000000000000000000000, "currency": "EUR"},
                                    {"account": "bank", "side": "credit", "amount": 600000000000000000000000000000000000, "currency": "EUR"},
                                    {"account": "bob", "side": "credit", "amount": 600000000000000000000000000000000000, "currency": "EUR"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;
SELECT account, debits_posted, credits_posted, balance FROM ledger.balances
 WHERE account LIKE 'big-%' ORDER BY account;
-- the other way still works
SELECT ledger.transfer('back', 'big-dst', 'big-src', 0.01, 'USD') > 0 AS posted;
SELECT bool_and(ledger.verify_projection(name)) AS all_verify FROM ledger.projection_status;

-- rebuilding a built-in model reads the log to its head under a lock that a
-- transaction snapshot would predate: refused in REPEATABLE READ (0A000)
DELETE FROM before;
INSERT INTO before SELECT * FROM state;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ledger.rebuild_projection('ledger.balances');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT * FROM unchanged;

-- every command that writes is refused in a read-only transaction (25006),
-- naming itself, and changes nothing
DELETE FROM before;
INSERT INTO before SELECT * FROM state;
BEGIN READ ONLY;
SAVEPOINT s;
SELECT ledger.transfer('ro-1', 'bank', 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.transfer('seed', 'bank', 'alice', 100, 'USD');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.post_entry('ro-2', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                   {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.open_account('ro-account');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.close_account('bob');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.register_currency('RO', 2);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.append('ro:1', 'Happened', '{}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.append_events('ro:1', '[{"type": "Happened", "data": {}}]');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO s;
SELECT ledger.save_snapshot('account:bob', 1, '{}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT * FROM unchanged;
