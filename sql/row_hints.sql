-- Postings find balance and account rows first at the heap TID the index
-- gave for them earlier in the same backend (a hint), then through the
-- index.  A hint may go stale in every way a heap TID can: the row moves
-- (non-HOT update, rewrite), its line pointer is freed and reused by another
-- row, the table is rewritten or shrinks.  Each case below posts again in
-- the same session after the hint went stale, and checks the read models
-- against the log.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;
-- no autovacuum or autoanalyze here: they would make backends forget hints
-- at moments this test cannot predict
ALTER TABLE ledger.accounts SET (autovacuum_enabled = off);
ALTER TABLE ledger.balances SET (autovacuum_enabled = off);

-- the read models against the log, and against sums computed here
CREATE FUNCTION pg_temp.models_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status
$$;
CREATE FUNCTION pg_temp.balances_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT NOT EXISTS (
        SELECT account, currency, balance FROM ledger.balances
        EXCEPT
        SELECT leg->>'account', leg->>'currency',
               sum(CASE leg->>'side' WHEN 'credit' THEN (leg->>'amount')::numeric
                                     ELSE -(leg->>'amount')::numeric END)
          FROM ledger.events, jsonb_array_elements(data->'legs') AS leg
         WHERE type = 'TransferPosted'
         GROUP BY 1, 2)
$$;

-- One transfer, reporting how many index scans it took on the accounts
-- and balances primary keys: 0 when every row was found at its hint.
CREATE FUNCTION pg_temp.post(id text, dr text, cr text, amount numeric,
                             currency text DEFAULT 'USD')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    a0 bigint := pg_stat_get_xact_numscans('ledger.accounts_pkey'::regclass);
    b0 bigint := pg_stat_get_xact_numscans('ledger.balances_pkey'::regclass);
BEGIN
    PERFORM ledger.transfer(id, dr, cr, amount, currency);
    RETURN format('index scans: accounts %s, balances %s',
                  pg_stat_get_xact_numscans('ledger.accounts_pkey'::regclass) - a0,
                  pg_stat_get_xact_numscans('ledger.balances_pkey'::regclass) - b0);
END
$$;

-- Opened in this order, the accounts sit in this order on the heap page.
SELECT ledger.open_account('zz');
SELECT ledger.open_account('mm');
SELECT ledger.open_account('aa');
SELECT ledger.open_account('bank');
SELECT account, ctid FROM ledger.accounts ORDER BY ctid;

-- 1. A balance row met for the first time is looked up through the index
-- (before the lock, to know whether it exists, and under it); a row this
-- backend created or read is found at its hint from then on.
SELECT pg_temp.post('h1', 'bank', 'zz', 10);
SELECT pg_temp.post('h2', 'bank', 'aa', 20);
SELECT pg_temp.post('h3', 'bank', 'zz', 1);
SELECT pg_temp.post('h4', 'aa', 'zz', 2);
SELECT account, balance, postings FROM ledger.balances ORDER BY account;

-- 2. Hints to dead rows.  A rebuild of ledger.accounts deletes and
-- reinserts every row: the hints lead to deleted versions, and the
-- postings find the rows through the index.  Then VACUUM frees the old line
-- pointers and a second rebuild refills them; whatever the hints now lead
-- to, a row is taken only if it is visible and has the key, so 'mm',
-- closed meanwhile, stays closed.
SELECT ledger.rebuild_projection('accounts') > 0 AS rebuilt;
SELECT pg_temp.post('h5', 'zz', 'aa', 3);
SELECT pg_temp.post('h6', 'aa', 'zz', 1);
SELECT ledger.close_account('mm');
VACUUM ledger.accounts;
SELECT ledger.rebuild_projection('accounts') > 0 AS rebuilt;
SELECT account, status, ctid FROM ledger.accounts ORDER BY ctid;
SELECT ledger.transfer('h7', 'bank', 'mm', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS h7_events FROM ledger.events WHERE stream = 'transfer:h7';
SELECT pg_temp.post('h7b', 'zz', 'aa', 1);
SELECT account, balance, postings FROM ledger.balances ORDER BY account;
SELECT pg_temp.balances_ok() AS balances_ok, pg_temp.models_ok() AS models_ok;

-- 3. Balance rows rebuilt: deleted and reinserted at new TIDs.  The
-- rebuild makes every backend forget its balance hints.
SELECT ledger.rebuild_projection('balances') > 0 AS rebuilt;
SELECT pg_temp.post('h8', 'bank', 'zz', 5);
SELECT pg_temp.post('h9', 'aa', 'bank', 4);
SELECT account, balance, postings FROM ledger.balances ORDER BY account;
SELECT pg_temp.balances_ok() AS balances_ok, pg_temp.models_ok() AS models_ok;

-- 4. Non-HOT updates: with an index on balance, every update gives the row
-- a new index entry.  The backend that made it moves its hint along (for
-- another backend's hint, which now leads to a dead version, see the
-- ledger_row_hints isolation spec).
CREATE INDEX balances_balance_idx ON ledger.balances (balance);
SELECT pg_temp.post('n1', 'bank', 'zz', 1);
SELECT pg_temp.post('n2', 'bank', 'zz', 1);
SELECT count(ledger.transfer('n' || i, 'zz', 'aa', 1, 'USD')) FROM generate_series(3, 50) AS i;
DROP INDEX ledger.balances_balance_idx;
SELECT pg_temp.post('n51', 'bank', 'zz', 1);
SELECT pg_temp.post('n52', 'bank', 'zz', 1);
SELECT account, balance, postings FROM ledger.balances ORDER BY account;
SELECT pg_temp.balances_ok() AS balances_ok, pg_temp.models_ok() AS models_ok;

-- 5. A table rewritten (VACUUM FULL: new files, other TIDs) and a table
-- cut short by VACUUM while hints point past its new end.
SELECT count(ledger.open_account('w' || i)) FROM generate_series(1, 400) AS i;
SELECT count(ledger.transfer('w' || i, 'bank', 'w' || i, 1, 'USD')) FROM generate_series(1, 400) AS i;
SELECT pg_relation_size('ledger.accounts') / 8192 AS pages_before \gset
SELECT pg_temp.post('w-1', 'w400', 'w399', 1);
-- the hints for w399 and w400 point to the last page; move every row to
-- new pages, free the old ones, move them back, and let VACUUM cut the end
SELECT ledger.rebuild_projection('accounts') > 0 AS rebuilt;
VACUUM ledger.accounts;
SELECT ledger.rebuild_projection('accounts') > 0 AS rebuilt;
VACUUM ledger.accounts;
SELECT pg_relation_size('ledger.accounts') / 8192 AS pages_after \gset
SELECT :pages_after <= :pages_before AS not_longer;
SELECT pg_temp.post('w-2', 'w400', 'w399', 1);
VACUUM FULL ledger.balances;
VACUUM FULL ledger.accounts;
SELECT pg_temp.post('full-1', 'bank', 'w398', 1);
SELECT pg_temp.post('full-2', 'bank', 'w398', 1);
SELECT account, balance, postings FROM ledger.balances
 WHERE account IN ('bank', 'zz', 'aa', 'w398', 'w399', 'w400') ORDER BY account;
SELECT pg_temp.balances_ok() AS balances_ok, pg_temp.models_ok() AS models_ok;

-- 6. Rows written in a savepoint that is rolled back are not remembered:
-- neither a currency registered there nor balance rows created there.
BEGIN;
SAVEPOINT s;
SELECT ledger.register_currency('XSV', 2);
SELECT ledger.transfer('sv-1', 'bank', 'zz', 1, 'XSV') > 0 AS posted;
ROLLBACK TO SAVEPOINT s;
SELECT ledger.transfer('sv-2', 'bank', 'zz', 1, 'XSV');
ROLLBACK;
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SAVEPOINT s;
SELECT pg_temp.post('sv-3', 'bank', 'zz', 1, 'GBP');
SELECT pg_temp.post('sv-4', 'bank', 'zz', 1, 'GBP');
ROLLBACK TO SAVEPOINT s;
-- the GBP rows are gone: looked for again, created again
SELECT pg_temp.post('sv-5', 'bank', 'zz', 1, 'GBP');
COMMIT;
SELECT stream FROM ledger.events WHERE stream LIKE 'transfer:sv-%' ORDER BY position;
SELECT account, currency, balance, postings FROM ledger.balances
 WHERE currency IN ('GBP', 'XSV') ORDER BY account, currency;
SELECT pg_temp.balances_ok() AS balances_ok, pg_temp.models_ok() AS models_ok;
