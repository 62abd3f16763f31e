-- ledger_cqrs benchmark: the same posting as transfer.sql through the
-- hand-written PL/pgSQL function bench.transfer_plpgsql (transfer_setup.sql).
-- Ids: see transfer.sql.
\set n :n + 1
\set a random(1, 1000)
\set b 1 + (:a + random(0, 998)) % 1000
SELECT bench.transfer_plpgsql('p' || :run || '-' || :client_id || '-' || :n,
                              'a' || :a, 'a' || :b, 1.00, 'USD');
