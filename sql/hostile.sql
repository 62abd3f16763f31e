-- Hostile input.  Every call below either gets a clear error with the
-- contract's SQLSTATE and changes nothing (the "unchanged" view), or is
-- stored literally: names with quotes, semicolons, format directives,
-- control characters and 4-byte UTF-8; a 10 MB event; 10,000 legs;
-- malformed legs; numbers at and beyond the edges of the range; projection
-- names and queries that try SQL injection.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
DROP SCHEMA IF EXISTS regress_hostile CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

-- the SQLSTATE of a statement, or 'ok': for errors whose message would
-- repeat a 400-digit (or 131,072-digit) number
CREATE FUNCTION pg_temp.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

SELECT ledger.open_account('bank');
SELECT ledger.open_account('alice', '{debits_must_not_exceed_credits}');
SELECT ledger.open_account('bob');
SELECT ledger.transfer('seed', 'bank', 'alice', 100, 'USD');
-- a canary: an inline projection that every append below folds into
SELECT ledger.create_projection('regress_type_counts',
    'SELECT type, count(*) AS n, max(version) AS v FROM ledger.events e GROUP BY type');

-- the whole state, to prove that nothing changed
CREATE TEMP VIEW state AS
SELECT (SELECT count(*) FROM ledger.events) AS events,
       (SELECT max(position) FROM ledger.events) AS last_position,
       (SELECT md5(string_agg(b::text, ';' ORDER BY account, currency)) FROM ledger.balances b) AS balances,
       (SELECT count(*) FROM ledger.account_entries) AS entries,
       (SELECT md5(string_agg(a.account || a.status, ';' ORDER BY account)) FROM ledger.accounts a) AS accounts,
       (SELECT string_agg(c.code || c.scale, ';' ORDER BY code) FROM ledger.currencies c) AS currencies,
       (SELECT string_agg(p.name, ';' ORDER BY name) FROM ledger.projections p) AS projections;
CREATE TEMP TABLE before AS SELECT * FROM state;
CREATE TEMP VIEW unchanged AS
SELECT NOT EXISTS (SELECT * FROM state EXCEPT SELECT * FROM before) AS unchanged;

------------------------------------------------------------------------------
-- 1. Names: quotes, semicolons, %s, control characters, 4-byte UTF-8.
--    Accounts, transfer ids, streams and event types are stored literally.
------------------------------------------------------------------------------
CREATE TEMP TABLE hostile (n int PRIMARY KEY, name text NOT NULL);
INSERT INTO hostile VALUES
    (1, $$o'brien$$),
    (2, '"quoted"'),
    (3, 'semi;colon''); DROP TABLE ledger.events; --'),
    (4, '%s%s%n%x%p%d %1$s'),
    (5, E'ctl\x01\x02\x1b[31m\x7f\ttab\nnl\rcr'),
    (6, E'\U0001F600\U0001F4B0\U00010348 four-byte'),
    (7, E'back\\slash \\x41 \\u0041 \\'),
    (8, '$$dollar$$ $q$ :var'),
    (9, '  spaced  '),
    (10, 'account:mallory'),
    (11, repeat(E'\U0001F600', 50));        -- exactly 200 bytes, the limit
SELECT n, octet_length(name) AS bytes, char_length(name) AS chars FROM hostile ORDER BY n;

SELECT count(ledger.open_account(name, '{}', jsonb_build_object('note', name))) AS opened FROM hostile;
SELECT h.n,
       a.account = h.name AS account_literal,
       a.metadata->>'note' = h.name AS metadata_literal,
       e.stream = 'account:' || h.name AS stream_literal,
       e.data->>'account' = h.name AS event_literal
  FROM hostile h
  LEFT JOIN ledger.accounts a ON a.account = h.name
  LEFT JOIN ledger.events e ON e.type = 'AccountOpened' AND e.data->>'account' = h.name
 ORDER BY h.n;

-- transfers between them, each with a hostile transfer id (the name itself)
SELECT h.n, ledger.transfer(h.name, h.name, n2.name, h.n, 'USD') > 0 AS posted
  FROM hostile h JOIN hostile n2 ON n2.n = h.n % 11 + 1
 ORDER BY h.n;
SELECT h.n,
       e.stream = 'transfer:' || h.name AS stream_literal,
       e.data->>'transfer_id' = h.name AS id_literal,
       e.data->'legs' @> jsonb_build_array(jsonb_build_object('account', h.name, 'side', 'debit')) AS leg_literal,
       b.balance
  FROM hostile h
  JOIN ledger.events e ON e.type = 'TransferPosted' AND e.data->>'transfer_id' = h.name
  JOIN ledger.balances b ON b.account = h.name AND b.currency = 'USD'
 ORDER BY h.n;
-- retrying one with the same hostile id is idempotent
SELECT ledger.transfer(name, name, (SELECT name FROM hostile WHERE n = 6), 5, 'USD') =
       (SELECT position FROM ledger.events WHERE stream = 'transfer:' || name) AS same_position
  FROM hostile WHERE n = 5;

-- one post_entry with a leg for each, and a hostile transfer id
SELECT ledger.post_entry(E'pe\x01;"''%s\U0001F600',
    (SELECT jsonb_agg(jsonb_build_object('account', name,
                                         'side', CASE WHEN n < 11 THEN 'debit' ELSE 'credit' END,
                                         'amount', CASE WHEN n < 11 THEN 1 ELSE 10 END,
                                         'currency', 'EUR') ORDER BY n)
       FROM hostile)) > 0 AS posted;
SELECT count(*) AS legs,
       bool_and(l->>'account' IN (SELECT name FROM hostile)) AS accounts_literal,
       bool_and(e.data->>'transfer_id' = E'pe\x01;"''%s\U0001F600') AS id_literal
  FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
 WHERE e.stream = E'transfer:pe\x01;"''%s\U0001F600';
SELECT h.n, b.debits_posted, b.credits_posted
  FROM hostile h JOIN ledger.balances b ON b.account = h.name AND b.currency = 'EUR'
 ORDER BY h.n;

-- append and read back: hostile stream, type, data keys and values, metadata
SELECT count(ledger.append(name, name, jsonb_build_object(name, name), 0,
                           jsonb_build_object('who', name))) AS appended
  FROM hostile;
SELECT h.n, r.version, r.type = h.name AS type_literal, r.data->>h.name = h.name AS data_literal,
       r.metadata->>'who' = h.name AS metadata_literal
  FROM hostile h, LATERAL ledger.read_stream(h.name) r
 ORDER BY h.n;
-- stream names are limited in bytes, not characters: 63 four-byte
-- characters and 3 ASCII are exactly 255 bytes
SELECT ledger.append(repeat(E'\U0001F600', 63) || 'abc', 'T', '{}');
SELECT octet_length(stream) FROM ledger.read_stream(repeat(E'\U0001F600', 63) || 'abc');

-- names differing only in a 4-byte character, or in Unicode normalization
-- (precomposed e-acute versus e + combining acute), are different accounts
SELECT ledger.open_account(E'\U0001F600 four-byte');
SELECT ledger.open_account(E'caf\u00e9');
SELECT ledger.open_account(E'cafe\u0301');
SELECT count(*) AS accounts FROM ledger.accounts WHERE account IN (E'caf\u00e9', E'cafe\u0301');

DELETE FROM before;
INSERT INTO before SELECT * FROM state;

-- hostile names in errors: the message quotes them, nothing changes
SELECT ledger.open_account(repeat(E'\U0001F600', 51));       -- 204 bytes
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.open_account(E'\U0001F600\U0001F4B0\U00010348 four-byte');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'ghost %s %n %x', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', $$o'brien; DROP TABLE ledger.events; --$$, 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer(repeat(E'\U0001F4B0', 51), 'bank', 'bob', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, $$US'D; DROP TABLE ledger.events; --$$);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, '%s%n');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "%s%n", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "\"; DROP TABLE ledger.events; --", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- JSON can spell a NUL, text cannot hold one: PostgreSQL refuses it (22P05)
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "b\u0000ob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": "T\u0000"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append(E'\U0001F600;''"%s', 'TransferPosted', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

------------------------------------------------------------------------------
-- 2. Legs: missing keys, wrong JSON types, duplicated accounts.  All 22023.
------------------------------------------------------------------------------
-- missing keys
SELECT ledger.post_entry('x', '[{"side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{}, {}]');
\echo :LAST_ERROR_SQLSTATE
-- keys that differ only in case or spacing are other keys
SELECT ledger.post_entry('x', '[{"Account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account ": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- wrong JSON types for each key
SELECT ledger.post_entry('x', '[{"account": ["bank"], "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": {"id": "bank"}, "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": null, "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": 1, "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": ["debit"], "amount": 1, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": true, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": [1], "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": {"value": 1}, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": 840},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": ["USD"]},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": null},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- legs that are not objects, legs that are not an array
SELECT ledger.post_entry('x', '[[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"}],
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[null, {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '["bank", "bob"]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '{"0": {"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                "1": {"account": "bob", "side": "credit", "amount": 1, "currency": "USD"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', 'null');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', ('[' || repeat('[', 200) || repeat(']', 200) || ', {}]')::jsonb);
\echo :LAST_ERROR_SQLSTATE
-- legs name the same balance only with the same bytes: these differ (a
-- trailing space, the other normalization of e-acute), so they name other
-- accounts, which do not exist (23503), and two debits of 1 against a
-- credit of 1 stay unbalanced (23514)
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bank ", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "caf\u00e9", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "cafe\u0301", "side": "debit", "amount": 1, "currency": "USD"},
                                {"account": "bank", "side": "credit", "amount": 1, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- stored as PostgreSQL's jsonb sees it: a duplicated key keeps its last
-- value, unknown keys are not kept in the event
SELECT ledger.post_entry('dup-key', '[{"account": "alice", "account": "bank", "side": "debit", "amount": 1, "currency": "USD", "note": "x"},
                                      {"account": "bob", "side": "credit", "side": "credit", "amount": 1, "currency": "USD", "amount": 1}]') > 0 AS posted;
SELECT data->'legs' FROM ledger.events WHERE stream = 'transfer:dup-key';
-- the same account in two currencies is allowed (an exchange)
SELECT ledger.post_entry('fx', '[{"account": "bank", "side": "debit", "amount": 10, "currency": "USD"},
                                 {"account": "bob", "side": "credit", "amount": 10, "currency": "USD"},
                                 {"account": "bob", "side": "debit", "amount": 9, "currency": "EUR"},
                                 {"account": "bank", "side": "credit", "amount": 9, "currency": "EUR"}]') > 0 AS posted;
-- and so is the same (account, currency) in several legs, on either side:
-- one balance row, an entry per leg, each with the balance after the posting
SELECT ledger.post_entry('dup-legs', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                       {"account": "bob", "side": "credit", "amount": 2, "currency": "USD"},
                                       {"account": "bank", "side": "debit", "amount": 1, "currency": "USD"}]') AS dup_pos \gset
SELECT ledger.post_entry('self-legs', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "USD"},
                                        {"account": "bank", "side": "credit", "amount": 1, "currency": "USD"}]') AS self_pos \gset
SELECT account, leg, side, amount, balance_after FROM ledger.account_entries
 WHERE position IN (:dup_pos, :self_pos) ORDER BY position, leg;
SELECT ledger.verify_projection('ledger.account_entries') AS entries_ok,
       ledger.verify_projection('ledger.balances') AS balances_ok;
DELETE FROM before;
INSERT INTO before SELECT * FROM state;

------------------------------------------------------------------------------
-- 3. Numbers: strings, exponents, negative zero, the edges of the range,
--    huge and tiny exponents.
------------------------------------------------------------------------------
SELECT ledger.register_currency('E18', 18);
SELECT ledger.open_account('hi-src');
SELECT ledger.open_account('hi-dst');
DELETE FROM before;
INSERT INTO before SELECT * FROM state;

-- numbers as JSON strings are not numbers
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": "1", "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": "1", "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": "1e3", "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 1000, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": "NaN", "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": "NaN", "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": "Infinity", "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": "Infinity", "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- JSON has no NaN or Infinity: the text is not JSON (22P02)
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": NaN, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": NaN, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
-- negative zero, zero with an exponent, negative amounts
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": -0, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": -0, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": -0.0, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": -0.0, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 0e10, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": 0E-10, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": -1e3, "currency": "USD"},
                                {"account": "bob", "side": "credit", "amount": -1e3, "currency": "USD"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', '-0', 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', '-0.0', 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', '-1e3', 'USD');
\echo :LAST_ERROR_SQLSTATE
-- huge and tiny exponents: out of range (22003), too many decimals (22023);
-- beyond numeric itself, PostgreSQL refuses the JSON (22003)
SELECT pg_temp.sqlstate_of($$SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1e400, "currency": "USD"},
    {"account": "bob", "side": "credit", "amount": 1e400, "currency": "USD"}]')$$) AS "1e400";
SELECT pg_temp.sqlstate_of($$SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1e-400, "currency": "USD"},
    {"account": "bob", "side": "credit", "amount": 1e-400, "currency": "USD"}]')$$) AS "1e-400";
SELECT pg_temp.sqlstate_of($$SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1e131071, "currency": "JPY"},
    {"account": "bob", "side": "credit", "amount": 1e131071, "currency": "JPY"}]')$$) AS "1e131071";
SELECT pg_temp.sqlstate_of($$SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1e-16383, "currency": "E18"},
    {"account": "bob", "side": "credit", "amount": 1e-16383, "currency": "E18"}]')$$) AS "1e-16383";
SELECT pg_temp.sqlstate_of($$SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1e131072, "currency": "JPY"},
    {"account": "bob", "side": "credit", "amount": 1, "currency": "JPY"}]')$$) AS "1e131072";
SELECT pg_temp.sqlstate_of($$SELECT ledger.transfer('x', 'bank', 'bob', 1e400, 'USD')$$) AS "1e400";
SELECT pg_temp.sqlstate_of($$SELECT ledger.transfer('x', 'bank', 'bob', 1e-400, 'USD')$$) AS "1e-400";
SELECT pg_temp.sqlstate_of($$SELECT ledger.transfer('x', 'bank', 'bob', 1e131071, 'JPY')$$) AS "1e131071";
-- one more decimal than the scale, at each scale
SELECT ledger.transfer('x', 'bank', 'bob', 0.001, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 0.1, 'JPY');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1e-19, 'E18');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1.5e-1, "currency": "JPY"},
                                {"account": "bob", "side": "credit", "amount": 1.5e-1, "currency": "JPY"}]');
\echo :LAST_ERROR_SQLSTATE
-- the first amount out of range at each scale: 10^(38 - scale)
SELECT ledger.transfer('x', 'hi-src', 'hi-dst', 1e38, 'JPY');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'hi-src', 'hi-dst', 1e36, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'hi-src', 'hi-dst', 1e35, 'BHD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'hi-src', 'hi-dst', 1e20, 'E18');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "hi-src", "side": "debit", "amount": 1e20, "currency": "E18"},
                                {"account": "hi-dst", "side": "credit", "amount": 100000000000000000000.000000000000000000, "currency": "E18"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- exponents and trailing zeros are fine when the value fits the scale;
-- the event holds the amount written at the currency's scale
SELECT ledger.post_entry('exp-1', '[{"account": "bank", "side": "debit", "amount": 1e3, "currency": "USD"},
                                    {"account": "bob", "side": "credit", "amount": 1E+3, "currency": "USD"}]') > 0 AS posted;
SELECT ledger.post_entry('exp-2', '[{"account": "bank", "side": "debit", "amount": 1.5e-1, "currency": "USD"},
                                    {"account": "bob", "side": "credit", "amount": 0.1500000000000000000000, "currency": "USD"}]') > 0 AS posted;
SELECT ledger.post_entry('exp-3', '[{"account": "bank", "side": "debit", "amount": 2.000E2, "currency": "JPY"},
                                    {"account": "bob", "side": "credit", "amount": 200, "currency": "JPY"}]') > 0 AS posted;
SELECT ledger.transfer('exp-4', 'bank', 'bob', '1e-18', 'E18') > 0 AS posted;
SELECT stream, l->>'side' AS side, l->'amount' AS amount, l->>'currency' AS currency
  FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
 WHERE stream LIKE 'transfer:exp-%' ORDER BY position, side;

-- the largest amount at each scale is accepted and stored literally; one
-- unit more on the same total is out of range (22003)
SELECT ledger.transfer('max-jpy', 'hi-src', 'hi-dst', 99999999999999999999999999999999999999, 'JPY') > 0 AS posted;
SELECT ledger.transfer('max-bhd', 'hi-src', 'hi-dst', 99999999999999999999999999999999999.999, 'BHD') > 0 AS posted;
SELECT ledger.post_entry('max-e18', '[{"account": "hi-src", "side": "debit", "amount": 99999999999999999999.999999999999999999, "currency": "E18"},
                                      {"account": "hi-dst", "side": "credit", "amount": 99999999999999999999.999999999999999999, "currency": "E18"}]') > 0 AS posted;
SELECT stream, data->'legs'->0->'amount' AS amount FROM ledger.events
 WHERE stream IN ('transfer:max-jpy', 'transfer:max-bhd', 'transfer:max-e18') ORDER BY position;
DELETE FROM before;
INSERT INTO before SELECT * FROM state;
SELECT ledger.transfer('over-1', 'bank', 'hi-dst', 1, 'JPY');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('over-2', 'hi-src', 'bank', 0.001, 'BHD');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('over-3', '[{"account": "bank", "side": "debit", "amount": 1e-18, "currency": "E18"},
                                     {"account": "hi-dst", "side": "credit", "amount": 1e-18, "currency": "E18"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;
SELECT account, currency, debits_posted, credits_posted, balance FROM ledger.balances
 WHERE account LIKE 'hi-%' ORDER BY account, currency;
SELECT currency, debits = credits AS balanced FROM ledger.currency_totals ORDER BY currency;

------------------------------------------------------------------------------
-- 4. Currencies: lowercase, too long, odd characters.  All 22023.
------------------------------------------------------------------------------
SELECT ledger.register_currency('usd', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('Usd', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('ABCDEFGHIJKLM', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency(repeat('A', 40), 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('USD ', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency('US;D', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency($$US'D$$, 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency(E'US\tD', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.register_currency(E'\uFF35\uFF33\uFF24', 2);       -- fullwidth USD
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, 'usd');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, 'USDUSDUSDUSDU');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('x', 'bank', 'bob', 1, repeat('U', 40));
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "eur"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "eur"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "EUREUREUREURE"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "EUREUREUREURE"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('x', '[{"account": "bank", "side": "debit", "amount": 1, "currency": "EUR\n"},
                                {"account": "bob", "side": "credit", "amount": 1, "currency": "EUR\n"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;
-- twelve characters is the limit and is fine
SELECT ledger.register_currency('ABCDEFGHIJ_1', 0);
SELECT code, scale FROM ledger.currencies WHERE code = 'ABCDEFGHIJ_1';
DELETE FROM before;
INSERT INTO before SELECT * FROM state;

------------------------------------------------------------------------------
-- 5. 10,000 legs (the cap is 1000: 22023, nothing appended), and a
--    1000-leg posting that succeeds and balances.
------------------------------------------------------------------------------
SELECT count(ledger.open_account('leg-' || i)) AS opened FROM generate_series(1, 500) i;
DELETE FROM before;
INSERT INTO before SELECT * FROM state;
CREATE TEMP TABLE legs1000 AS
SELECT jsonb_agg(jsonb_build_object('account', 'leg-' || a,
                                    'side', CASE WHEN a % 2 = 0 THEN 'debit' ELSE 'credit' END,
                                    'amount', a,
                                    'currency', c) ORDER BY c, a) AS legs
  FROM generate_series(1, 500) a, unnest(ARRAY['USD', 'EUR']) c;
SELECT jsonb_array_length(legs) FROM legs1000;
SELECT ledger.post_entry('legs-10000',
    (SELECT jsonb_agg(jsonb_build_object('account', 'leg-' || (1 + i % 500),
                                         'side', CASE WHEN i % 2 = 0 THEN 'debit' ELSE 'credit' END,
                                         'amount', 1, 'currency', 'USD'))
       FROM generate_series(0, 9999) i));
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.post_entry('legs-1001', (SELECT legs || '[{"account": "bank", "side": "debit", "amount": 1, "currency": "GBP"}]' FROM legs1000));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;
SELECT ledger.stream_version('transfer:legs-10000') AS v10000, ledger.stream_version('transfer:legs-1001') AS v1001;
-- 1000 legs: even accounts debit, odd credit, 250 of each per currency
-- (but amounts differ: debits 2+4+..+500, credits 1+3+..+499, unbalanced)
SELECT ledger.post_entry('legs-1000-unbalanced', (SELECT legs FROM legs1000));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;
UPDATE legs1000 SET legs =
    (SELECT jsonb_agg(jsonb_set(l, '{amount}', to_jsonb(CASE WHEN l->>'side' = 'debit'
                                                            THEN (l->>'amount')::int - 1
                                                            ELSE (l->>'amount')::int END)) ORDER BY o)
       FROM jsonb_array_elements(legs) WITH ORDINALITY AS x(l, o));
SELECT ledger.post_entry('legs-1000', (SELECT legs FROM legs1000)) > 0 AS posted;
SELECT count(*) AS entries, count(DISTINCT account) AS accounts, count(DISTINCT currency) AS currencies,
       sum(amount) FILTER (WHERE side = 'debit') AS debits, sum(amount) FILTER (WHERE side = 'credit') AS credits
  FROM ledger.account_entries WHERE transfer_id = 'legs-1000';
SELECT jsonb_array_length(data->'legs') AS legs_in_event FROM ledger.events WHERE stream = 'transfer:legs-1000';
-- a retry of the same 1000 legs in another order appends nothing
SELECT ledger.post_entry('legs-1000', (SELECT jsonb_agg(l ORDER BY o DESC)
                                         FROM legs1000, jsonb_array_elements(legs) WITH ORDINALITY AS x(l, o)))
       = (SELECT position FROM ledger.events WHERE stream = 'transfer:legs-1000') AS same_position;
SELECT currency, debits = credits AS balanced FROM ledger.currency_totals ORDER BY currency;
DELETE FROM before;
INSERT INTO before SELECT * FROM state;

------------------------------------------------------------------------------
-- 6. A 10 MB event: stored (TOASTed) and read back intact.
------------------------------------------------------------------------------
-- 128 kB of hex, repeated farther apart than pglz's or lz4's window, so
-- that it does not compress: 10,485,760 bytes
CREATE TEMP TABLE big AS
SELECT jsonb_build_object('blob', repeat(string_agg(md5(i::text), '' ORDER BY i), 80),
                          'tail', E'\U0001F600 "quoted" %s \\ end') AS data
  FROM generate_series(1, 4096) i;
SELECT octet_length(data->>'blob') AS blob_bytes, octet_length(data::text) > 10485760 AS over_10mb FROM big;
SELECT pg_relation_size(reltoastrelid) AS toast_before FROM pg_class WHERE oid = 'ledger.events'::regclass \gset
SELECT ledger.append('big:1', 'Big', (SELECT data FROM big), 0, jsonb_build_object('size', '10MB'));
SELECT ledger.append_events('big:2', jsonb_build_array(jsonb_build_object('type', 'Small', 'data', '{"n": 1}'::jsonb),
                                                     jsonb_build_object('type', 'Big', 'data', (SELECT data FROM big))));
SELECT pg_relation_size(reltoastrelid) - :toast_before > 2 * 10000000 AS toasted
  FROM pg_class WHERE oid = 'ledger.events'::regclass;
SELECT r.stream, r.version, r.type, md5(r.data::text) = md5(b.data::text) AS intact, r.metadata
  FROM big b, LATERAL (SELECT * FROM ledger.read_stream('big:1')
                       UNION ALL SELECT * FROM ledger.read_stream('big:2')) r
 ORDER BY r.stream, r.version;
SELECT count(*) AS big_events, bool_and(md5(r.data::text) = md5(b.data::text)) AS intact
  FROM big b, ledger.read_all(0, 100000) r WHERE r.type = 'Big';
-- a partial read of the stream leaves the big event alone
SELECT version, type FROM ledger.read_stream('big:2', 1, 1);
-- appending again with expected_version 0: 40001, nothing appended
DELETE FROM before;
INSERT INTO before SELECT * FROM state;
SELECT ledger.append('big:1', 'Big', (SELECT data FROM big), 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

------------------------------------------------------------------------------
-- 7. Projection names and queries that try SQL injection.  Nothing is
--    executed, nothing is broken: the log, the read models and every
--    projection stay consistent.
------------------------------------------------------------------------------
-- not a valid (qualified) name
SELECT ledger.create_projection('x; DROP TABLE ledger.events; --', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('a.b.c.d', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection(NULL, 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('"unterminated', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
-- names of existing relations
SELECT ledger.create_projection('ledger.events', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('ledger.balances', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('pg_catalog.pg_class', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('regress_type_counts', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
-- the mode is a value, not SQL
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type', 'inline; DROP TABLE ledger.events');
\echo :LAST_ERROR_SQLSTATE
-- a second statement, a data-modifying CTE, SELECT INTO, a side effect
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type; DROP TABLE ledger.events');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'WITH d AS (DELETE FROM ledger.balances RETURNING 1) SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n INTO public.regress_stolen FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
CREATE SEQUENCE regress_side_effect;
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events e WHERE nextval(''public.regress_side_effect'') > 0 GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events e WHERE pg_catalog.pg_read_file(''/etc/passwd'') IS NOT NULL GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events e WHERE type = current_user GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'EXPLAIN ANALYZE SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type /*');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', E'SELECT type, count(*) AS n FROM ledger.events e WHERE type <> \'');
\echo :LAST_ERROR_SQLSTATE
SELECT nextval('regress_side_effect') AS never_advanced;
SELECT to_regclass('public.regress_stolen') AS not_created;
SELECT * FROM unchanged;

-- quoted names with quotes, semicolons and spaces: the table is created
-- with exactly that name, nothing else happens
SELECT ledger.create_projection('"weird name"', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT ledger.create_projection($$"x'); DROP TABLE ledger.events; --"$$, 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT ledger.create_projection('"a""b"', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
CREATE SCHEMA regress_hostile;
SELECT ledger.create_projection('regress_hostile."%s%n; DROP SCHEMA ledger CASCADE"', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT name, target, state FROM ledger.projection_status WHERE kind = 'user' ORDER BY name;
SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname IN ('public', 'regress_hostile') ORDER BY relname;
SELECT count(*) AS types FROM public."weird name";
SELECT count(*) AS types FROM public."x'); DROP TABLE ledger.events; --";
-- every function takes the name as created and schema-qualified
SELECT ledger.verify_projection('"weird name"') AS as_created, ledger.verify_projection('public.weird name') AS qualified;
SELECT ledger.rebuild_projection('"a""b"') > 0 AS rebuilt, ledger.catch_up('public.a"b') AS caught_up;
SELECT ledger.verify_projection('regress_hostile.%s%n; DROP SCHEMA ledger CASCADE') AS qualified;
SELECT ledger.drop_projection('"weird name"');
SELECT ledger.drop_projection($$public.x'); DROP TABLE ledger.events; --$$);
SELECT ledger.drop_projection('"a""b"');
SELECT ledger.drop_projection('regress_hostile."%s%n; DROP SCHEMA ledger CASCADE"');
SELECT ledger.drop_projection('"weird name"');
\echo :LAST_ERROR_SQLSTATE
SELECT to_regclass('ledger.events') AS events_still_there, to_regnamespace('ledger') AS schema_still_there;

-- column names that try to escape their quoting; literals with quotes
SELECT ledger.create_projection('regress_hostile.cols',
    $$SELECT type AS "k""); DROP TABLE ledger.events; --",
             count(*) AS "n'; DROP TABLE ledger.events; --",
             max(stream) FILTER (WHERE stream <> $q$'); DROP TABLE ledger.events; --$q$) AS "%s"
        FROM ledger.events e
       WHERE type <> 'it''s; DROP TABLE ledger.events; --' AND type <> E'\'; --'
       GROUP BY type$$);
SELECT attname FROM pg_attribute WHERE attrelid = 'regress_hostile.cols'::regclass AND attnum > 0 ORDER BY attnum;
SELECT ledger.append('s', 'Canary', '{}') AS folded;
SELECT ledger.verify_projection('regress_hostile.cols');
SELECT ledger.drop_projection('regress_hostile.cols');

-- names longer than 63 bytes: the table name is truncated like any
-- identifier (at a character boundary); the projection keeps its name
SELECT ledger.create_projection(repeat('l', 70), 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT length(name) AS name_chars, target FROM ledger.projection_status WHERE name LIKE 'lll%';
SELECT ledger.verify_projection(repeat('l', 70));
-- another name with the same first 63 bytes: the table exists (42P07)
SELECT ledger.create_projection(repeat('l', 63) || 'xyz', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.drop_projection(repeat('l', 70));
SELECT ledger.create_projection('"' || repeat(E'\U0001F4B0', 20) || '"', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT char_length(target_table) AS chars, octet_length(target_table) AS bytes
  FROM ledger.projections WHERE name = '"' || repeat(E'\U0001F4B0', 20) || '"';
SELECT ledger.verify_projection('"' || repeat(E'\U0001F4B0', 20) || '"');
SELECT ledger.drop_projection('"' || repeat(E'\U0001F4B0', 20) || '"');

-- valid queries with a trailing semicolon or a trailing comment are
-- ordinary projections (the fold must not splice them into broken SQL)
SELECT ledger.create_projection('regress_hostile.semi', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type;');
SELECT ledger.create_projection('regress_hostile.dashdash', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type -- per type');
SELECT ledger.create_projection('regress_hostile.block', 'SELECT type, count(*) AS n FROM ledger.events /* the log */ e GROUP BY type /* per type */');
SELECT ledger.append('s', 'Canary', '{}') AS folded;
SELECT name, state FROM ledger.projection_status WHERE name LIKE 'regress_hostile.%' ORDER BY name;
SELECT name, ledger.verify_projection(name) FROM ledger.projection_status WHERE name LIKE 'regress_hostile.%' ORDER BY name;
SELECT ledger.drop_projection(name) FROM ledger.projection_status WHERE name LIKE 'regress_hostile.%';

-- a definition means the same in every session: standard_conforming_strings
-- (here off at creation, on in the sessions that append) must not change
-- what '\x41' is.  Either it is refused, or it folds the same everywhere.
SELECT ledger.append('scs', 'A', '{}');
SELECT ledger.append('scs', E'\\x41', '{}');
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT pg_temp.sqlstate_of($$SELECT ledger.create_projection('regress_hostile.scs',
    'SELECT type, count(*) AS n FROM ledger.events e WHERE type = ''\\x41'' GROUP BY type')$$)
    IN ('ok', '0A000', '22023', '42601') AS created_or_refused;
RESET escape_string_warning;
RESET standard_conforming_strings;
SELECT ledger.append('scs', 'A', '{}');
SELECT ledger.append('scs', E'\\x41', '{}');
SELECT coalesce(bool_and(ledger.verify_projection(name)), true) AS consistent
  FROM ledger.projection_status WHERE name = 'regress_hostile.scs';
SELECT count(*) >= 0 AS cleaned_up FROM (SELECT ledger.drop_projection(name) FROM ledger.projection_status WHERE name = 'regress_hostile.scs') d;

-- a failed fold caught in a subtransaction must not leave the read-model
-- guard open for the rest of the transaction (42501 for every role)
SELECT ledger.create_projection('regress_hostile.div', $$SELECT type, sum(1 / (data->>'d')::int) AS s FROM ledger.events e WHERE type = 'Div' GROUP BY type$$);
DELETE FROM before;
INSERT INTO before SELECT * FROM state;
BEGIN;
DO $$
BEGIN
    BEGIN
        PERFORM ledger.append('div', 'Div', '{"d": 0}');
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'append: %', SQLSTATE;
    END;
    BEGIN
        INSERT INTO ledger.balances VALUES ('forged', 'USD', 0, 1000000, 1000000, 1, 1);
        RAISE NOTICE 'insert into ledger.balances: accepted';
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'insert into ledger.balances: %', SQLSTATE;
    END;
    BEGIN
        UPDATE ledger.accounts SET status = 'open' WHERE account = 'bank';
        RAISE NOTICE 'update of ledger.accounts: accepted';
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'update of ledger.accounts: %', SQLSTATE;
    END;
END
$$;
ROLLBACK;
SELECT * FROM unchanged;
SELECT ledger.drop_projection('regress_hostile.div');

-- nothing above broke anything
SELECT name, ledger.verify_projection(name) FROM ledger.projection_status ORDER BY name;
SELECT currency, debits = credits AS balanced FROM ledger.currency_totals ORDER BY currency;
-- the canary counted every append, the 10 MB ones included
SELECT type, n FROM regress_type_counts WHERE type IN ('Big', 'Small', 'Canary', 'TransferPosted') ORDER BY type;

------------------------------------------------------------------------------
-- 8. A projection table in pg_temp would vanish with the session that
--    created it (and no other session may write it), leaving every append
--    of every session failing.  Whatever create_projection does with such a
--    name, appends from other sessions must keep working.
------------------------------------------------------------------------------
SELECT pg_temp.sqlstate_of($$SELECT ledger.create_projection('pg_temp.regress_tmp', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type')$$) <> 'ok' AS refused;
\c
SELECT pg_sleep(0.2);
SELECT ledger.append('after-reconnect', 'Canary', '{}') AS appended;
SELECT ledger.transfer('after-reconnect', 'bank', 'bob', 1, 'USD') > 0 AS posted;
SELECT name, ledger.verify_projection(name) FROM ledger.projection_status WHERE kind = 'user' ORDER BY name;

SET client_min_messages = warning;
DROP SCHEMA regress_hostile CASCADE;
DROP SEQUENCE regress_side_effect;
RESET client_min_messages;
