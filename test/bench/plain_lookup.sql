-- ledger_cqrs benchmark (projections): the same lookup on bench.plain_user,
-- a plain table with the projection's columns, rows and primary key.
\set k random(1, 1000)
SELECT * FROM bench.plain_user WHERE user_id = :k;
