-- ledger_cqrs benchmark: the floor for transfer.sql -- one plain INSERT of
-- the row ledger.transfer appends (stream 'transfer:<id>', version 1, a
-- TransferPosted data object of the same shape and size) into
-- bench.bare_events (same columns, constraints and indexes as
-- ledger.events).  No balances, no entries, no checks, no locks.
-- Ids: see transfer.sql.  ('transfer:' || 'b' is split because pgbench
-- would read the :b in 'transfer:b' as the variable :b.)
\set n :n + 1
\set a random(1, 1000)
\set b 1 + (:a + random(0, 998)) % 1000
INSERT INTO bench.bare_events(position, stream, version, type, data, metadata, recorded_at, tx_order)
VALUES (nextval('bench.bare_events_position_seq'),
        'transfer:' || 'b' || :run || '-' || :client_id || '-' || :n, 1, 'TransferPosted',
        jsonb_build_object(
            'transfer_id', 'b' || :run || '-' || :client_id || '-' || :n,
            'legs', jsonb_build_array(
                jsonb_build_object('account', 'a' || :a, 'side', 'debit',
                                   'amount', 1.00, 'currency', 'USD'),
                jsonb_build_object('account', 'a' || :b, 'side', 'credit',
                                   'amount', 1.00, 'currency', 'USD')),
            'metadata', '{}'::jsonb),
        '{}', clock_timestamp(), pg_current_xact_id());
