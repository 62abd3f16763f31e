-- ledger_cqrs benchmark: the baseline, one plain INSERT of the same row shape.
-- Keep the data expression identical to append.sql.
\set sid random(1, 1000)
INSERT INTO bench.bare_events(position, stream, version, type, data, metadata, recorded_at, tx_order)
VALUES (nextval('bench.bare_events_position_seq'), 's' || :sid,
        nextval('bench.bare_events_version_seq'), 'Deposited',
        jsonb_build_object('account', 's' || :sid, 'amount', 100, 'currency', 'EUR',
                           'memo', 'benchmark deposit, fixed-length filler'),
        '{}', clock_timestamp(), pg_current_xact_id());
