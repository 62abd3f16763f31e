-- ledger_cqrs benchmark: the same posting as transfer.sql through
-- bench.transfer_plpgsql_checked (transfer_setup.sql): hand-written
-- PL/pgSQL with the same rules as ledger.transfer.  Ids: see transfer.sql.
\set n :n + 1
\set a random(1, 1000)
\set b 1 + (:a + random(0, 998)) % 1000
SELECT bench.transfer_plpgsql_checked('c' || :run || '-' || :client_id || '-' || :n,
                                      'a' || :a, 'a' || :b, 1.00, 'USD');
