-- The event log: append, append_events, stream_version, read_stream, read_all.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

-- a fresh log holds only the registrations of the common currencies
SELECT position, stream, version, type, data, metadata FROM ledger.events ORDER BY position;
SELECT ledger.stream_version('account:alice');
SELECT position, stream FROM ledger.read_all();
SELECT * FROM ledger.read_stream('account:alice');

-- append returns the stream's new version; versions are 1-based and gapless
SELECT ledger.append('account:alice', 'Deposited', '{"amount": 10}');
SELECT ledger.append('account:alice', 'Deposited', '{"amount": 5}', 1);
SELECT ledger.append('account:bob', 'Opened', '{}', 0, '{"actor": "test", "correlation_id": "c-1"}');
SELECT ledger.append('account:alice', 'Withdrawn', '{"amount": 3}', NULL);
SELECT ledger.stream_version('account:alice'), ledger.stream_version('account:bob'),
       ledger.stream_version('nobody');

-- metadata defaults to {} and is never NULL
SELECT ledger.append('account:bob', 'Renamed', '{"to": "Robert"}', 1, NULL);
SELECT position, stream, version, type, data, metadata
  FROM ledger.events WHERE position > 9 ORDER BY position;
SELECT count(*) FILTER (WHERE metadata IS NULL) AS null_metadata,
       count(*) FILTER (WHERE recorded_at IS NULL) AS null_time,
       bool_and(recorded_at <= clock_timestamp()) AS times_ok
  FROM ledger.events;

-- positions increase in append order, versions are gapless per stream
SELECT bool_and(position = rn) AS positions_dense
  FROM (SELECT position, row_number() OVER (ORDER BY position) AS rn FROM ledger.events) s;
SELECT stream, array_agg(version ORDER BY version) AS versions
  FROM ledger.events WHERE position > 9 GROUP BY stream ORDER BY stream;

-- append_events: all in order, atomically; returns the last version
SELECT ledger.append_events('order:1', '[
    {"type": "OrderPlaced", "data": {"sku": "A", "qty": 2}, "metadata": {"actor": "web"}},
    {"type": "OrderPaid",   "data": {"amount": 20}},
    {"type": "OrderShipped"}
  ]', 0);
SELECT ledger.append_events('order:1', '[{"type": "OrderClosed", "data": null}]', 3);
SELECT version, type, data, metadata FROM ledger.read_stream('order:1');

-- read_stream: from_version and max_count
SELECT version, type FROM ledger.read_stream('order:1', 2);
SELECT version, type FROM ledger.read_stream('order:1', 2, 1);
SELECT version, type FROM ledger.read_stream('order:1', 1, 0);
SELECT version, type FROM ledger.read_stream('order:1', 9);
SELECT count(*) FROM ledger.read_stream('nobody');
-- read_stream returns whole ledger.events rows
SELECT (r).stream, (r).version FROM (SELECT ledger.read_stream('account:bob') AS r) s;

-- read_all: everything committed, here in position order (one transaction
-- per append); the cursor is the position of the last event received
SELECT position, stream, version FROM ledger.read_all(9);
SELECT position, stream, version FROM ledger.read_all(0, 3);
SELECT position, stream, version FROM ledger.read_all(9, 3);
SELECT position, stream, version FROM ledger.read_all(12, 3);
SELECT position, stream, version FROM ledger.read_all(15, 3);
SELECT position FROM ledger.read_all(18);
SELECT count(*) FROM ledger.read_all(0, NULL);

-- paging with the cursor visits every event exactly once
CREATE TEMP TABLE consumed (position bigint);
DO $$
DECLARE
    cursor_pos bigint := 0;
    n int;
BEGIN
    LOOP
        INSERT INTO consumed SELECT position FROM ledger.read_all(cursor_pos, 2);
        GET DIAGNOSTICS n = ROW_COUNT;
        EXIT WHEN n = 0;
        SELECT position INTO cursor_pos FROM consumed ORDER BY ctid DESC LIMIT 1;
    END LOOP;
END $$;
SELECT count(*) AS consumed, count(DISTINCT position) AS distinct_positions,
       (SELECT count(*) FROM ledger.events) AS in_log
  FROM consumed;

-- an uncommitted append of this transaction is not delivered by read_all
-- (its transaction is still running), but read_stream sees it
BEGIN;
SELECT ledger.append('account:carol', 'Opened', '{}', 0);
SELECT count(*) FROM ledger.read_stream('account:carol');
SELECT count(*) FROM ledger.read_all(0, NULL) WHERE stream = 'account:carol';
ROLLBACK;
SELECT ledger.stream_version('account:carol');

-- a rolled-back append leaves nothing behind; a later one gets version 1
SELECT ledger.append('account:carol', 'Opened', '{}', 0);
SELECT stream, version FROM ledger.events WHERE stream = 'account:carol';

-- several appends in one transaction keep each stream gapless
BEGIN;
SELECT ledger.append('batch', 'A', '{}', 0);
SELECT ledger.append('batch', 'B', '{}', 1);
SELECT ledger.append_events('batch', '[{"type": "C"}, {"type": "D"}]', 2);
COMMIT;
SELECT version, type FROM ledger.read_stream('batch');

-- a savepoint rolled back in the middle
BEGIN;
SELECT ledger.append('sp', 'A', '{}');
SAVEPOINT s1;
SELECT ledger.append('sp', 'B', '{}');
ROLLBACK TO SAVEPOINT s1;
SELECT ledger.append('sp', 'C', '{}');
COMMIT;
SELECT version, type FROM ledger.read_stream('sp');

-- event types of the ledger commands are reserved: appending them directly
-- would forge postings the read models never saw
SELECT ledger.append('transfer:t-1', 'TransferPosted', '{"legs": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('account:x', '[{"type": "AccountOpened"}]');
\echo :LAST_ERROR_SQLSTATE
-- other events in those streams are fine
SELECT ledger.append('account:alice', 'EmailChanged', '{"email": "a@example.com"}');

-- within a stream, read_all keeps version order
SELECT stream, bool_and(ok) AS in_version_order FROM (
    SELECT stream, version > coalesce(lag(version) OVER (PARTITION BY stream ORDER BY n), 0) AS ok
      FROM (SELECT *, row_number() OVER () AS n FROM ledger.read_all(0, NULL)) a) s
 GROUP BY stream ORDER BY stream;

-- names are stored literally: quotes, %s, control characters, 4-byte UTF-8
SELECT ledger.append(E'we''ird; DROP TABLE x; --%s\t\u0001', E'T\u00e9\U0001F600', '{"k": "v"}');
SELECT stream = E'we''ird; DROP TABLE x; --%s\t\u0001' AS stream_ok, type = E'T\u00e9\U0001F600' AS type_ok
  FROM ledger.events ORDER BY position DESC LIMIT 1;
-- 255 bytes is the limit, counted in bytes
SELECT ledger.append(repeat('x', 255), 'T', '{}');
SELECT ledger.append(repeat(E'\U0001F600', 63), 'T', '{}');

-- a JSON null metadata is stored as {} too, in append as in append_events;
-- any other JSON value is kept as given
SELECT ledger.append('meta:null', 'Noted', '{}', NULL, 'null');
SELECT ledger.append_events('meta:null', '[{"type": "Noted", "data": {}, "metadata": null}]');
SELECT ledger.append('meta:null', 'Noted', '{}', NULL, '"web"');
SELECT version, metadata FROM ledger.read_stream('meta:null');

-- paging inside one transaction's events (a restore's, or any big
-- transaction's, all share one tx_order): each page starts right after the
-- cursor's (tx_order, position), nothing lost, nothing repeated, in order
SELECT ledger.append('bulk:before', 'Before', '{}');
BEGIN;
SELECT sum(ledger.append_events('bulk:' || s,
         (SELECT jsonb_agg(jsonb_build_object('type', 'Bulk', 'data', jsonb_build_object('n', g)))
            FROM generate_series(1, 500) g))) AS appended
  FROM generate_series(1, 5) s;
COMMIT;
SELECT ledger.append('bulk:after', 'After', '{}');
SELECT min(position) AS bulk_first, count(DISTINCT tx_order) AS bulk_tx_orders
  FROM ledger.events WHERE type = 'Bulk' \gset
SELECT :bulk_tx_orders AS bulk_tx_orders;
-- from a cursor in the middle of it, and from its last event
SELECT position - :bulk_first AS offset, type FROM ledger.read_all(:bulk_first + 1234, 3);
SELECT position - :bulk_first AS offset, type FROM ledger.read_all(:bulk_first + 2499, 2);
CREATE TEMP TABLE pages (size int, page int, n bigint, position bigint);
CREATE FUNCTION pg_temp.page_through(size int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cursor_pos bigint := 0;
    page int := 0;
    got int;
BEGIN
    LOOP
        page := page + 1;
        INSERT INTO pages
            SELECT size, page, (SELECT count(*) FROM pages p WHERE p.size = page_through.size)
                               + row_number() OVER (), r.position
              FROM ledger.read_all(cursor_pos, size) r;
        GET DIAGNOSTICS got = ROW_COUNT;
        EXIT WHEN got = 0;
        SELECT p.position INTO cursor_pos FROM pages p
         WHERE p.size = page_through.size ORDER BY p.n DESC LIMIT 1;
    END LOOP;
END $$;
SELECT pg_temp.page_through(9), pg_temp.page_through(1000);
-- the n-th event delivered is the n-th of the log in (tx_order, position)
-- order; every page but the last is full
WITH log AS (SELECT row_number() OVER (ORDER BY tx_order, position) AS n, position FROM ledger.events)
SELECT p.size, count(*) AS delivered, count(DISTINCT p.position) AS distinct_positions,
       (SELECT count(*) FROM ledger.events) AS in_log,
       count(*) FILTER (WHERE log.position IS DISTINCT FROM p.position) AS out_of_place,
       count(DISTINCT p.page) AS pages
  FROM pages p LEFT JOIN log USING (n) GROUP BY p.size ORDER BY p.size;
SELECT size, page, count(*) AS rows FROM pages GROUP BY size, page
HAVING count(*) <> size ORDER BY size, page;

-- an async projection caught up in batches inside that transaction reads
-- the same way: its batches add up to the log, and it verifies
BEGIN;
SET LOCAL ledger_cqrs.fill_sync_limit = 0;
SET LOCAL client_min_messages = warning;
SELECT ledger.create_projection('bulk_streams',
    'SELECT stream, count(*) AS n, max(position) AS last FROM ledger.events GROUP BY stream', 'async');
CREATE TEMP TABLE batches (batch serial, n bigint);
DO $$
DECLARE
    n bigint;
BEGIN
    LOOP
        n := ledger.catch_up('bulk_streams', 9);
        INSERT INTO batches (n) VALUES (n);
        EXIT WHEN n = 0;
    END LOOP;
END $$;
SELECT count(*) FILTER (WHERE n = 9) AS full_batches, sum(n) AS caught_up,
       (SELECT count(*) FROM ledger.events) AS in_log
  FROM batches;
SELECT state, lag_events, checkpoint = (SELECT position FROM ledger.events
                                         ORDER BY tx_order DESC, position DESC LIMIT 1) AS at_last
  FROM ledger.projection_status WHERE name = 'bulk_streams';
SELECT ledger.verify_projection('bulk_streams');
SELECT stream, n, last - :bulk_first AS last_offset FROM bulk_streams WHERE stream LIKE 'bulk:%' ORDER BY stream;
COMMIT;
SELECT ledger.stop_projector() IS NOT NULL AS projector_stopped;
