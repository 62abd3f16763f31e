-- ledger_cqrs benchmark: one ledger.transfer per transaction between two
-- distinct random accounts of a1..a1000.
-- The transfer id is unique per call: :run is distinct for every pgbench
-- run (run.sh passes -D run=...), :client_id per client, and :n counts the
-- client's transactions (pgbench variables persist across a client's
-- transactions; run.sh passes -D n=0).  A reused id would make the call an
-- idempotent no-op; run.sh also checks that every transaction appended one
-- TransferPosted event.
\set n :n + 1
\set a random(1, 1000)
\set b 1 + (:a + random(0, 998)) % 1000
SELECT ledger.transfer('t' || :run || '-' || :client_id || '-' || :n,
                       'a' || :a, 'a' || :b, 1.00, 'USD');
