-- ledger_cqrs benchmark (projections): point lookup by primary key on the
-- projection table bench.p_user (maintained by ledger_cqrs).
\set k random(1, 1000)
SELECT * FROM bench.p_user WHERE user_id = :k;
