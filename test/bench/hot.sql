-- ledger_cqrs benchmark: as transfer.sql, but every transfer credits the
-- same account 'hot' (the debit account is a random one of a1..a1000), so
-- all clients contend for one balance lock.
\set n :n + 1
\set a random(1, 1000)
SELECT ledger.transfer('h' || :run || '-' || :client_id || '-' || :n,
                       'a' || :a, 'hot', 1.00, 'USD');
