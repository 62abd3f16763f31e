-- ledger_cqrs benchmark: objects of the `snapshots` section (run by
-- test/bench/run.sh after setup.sql, in a fresh database): the account
-- 'hot' that receives every loaded posting, and the funding accounts
-- f1..f1000 that pay them in turn (so each gets 1/1000 of the postings,
-- spread over the whole log).
\set ON_ERROR_STOP on

SELECT ledger.open_account('hot');
SELECT count(ledger.open_account('f' || i)) FROM generate_series(1, 1000) AS i;
ANALYZE ledger.accounts;
