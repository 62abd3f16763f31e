-- User projections: definitions, rejections, inline and async maintenance,
-- retroactive fills, verify, rebuild, drop.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
DROP SCHEMA IF EXISTS analytics CASCADE;
CREATE EXTENSION ledger_cqrs;
CREATE SCHEMA analytics;
RESET client_min_messages;

-- a log to project: accounts, transfers in three currencies, user events
SELECT setseed(0.17);
SELECT ledger.open_account('acct' || i) FROM generate_series(1, 6) i \g /dev/null
SELECT ledger.transfer('t' || i, 'acct' || (1 + i % 6), 'acct' || (1 + (i + 1 + i % 4) % 6),
                       round((random() * 100)::numeric + 1, 2), (ARRAY['USD', 'EUR', 'GBP'])[1 + i % 3])
  FROM generate_series(1, 60) i \g /dev/null
SELECT ledger.append('user:' || (i % 5), 'PageViewed',
                     jsonb_build_object('page', '/p' || (i % 3), 'ms', i * 7))
  FROM generate_series(1, 40) i \g /dev/null

-- rejections: 0A000 naming what is not allowed, 42601, 42P07, 22023
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events e JOIN ledger.accounts a ON true GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events WHERE stream IN (SELECT account FROM ledger.accounts) GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'WITH x AS (SELECT 1) SELECT type, count(*) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM (SELECT * FROM ledger.events) e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, rank() OVER (ORDER BY type) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT DISTINCT type, count(*) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type HAVING count(*) > 1');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type ORDER BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type LIMIT 5');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, avg(version) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, string_agg(stream, '','') AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(DISTINCT stream) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, max(position) + 1 AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, now() AS t, count(*) AS n FROM ledger.events GROUP BY 1, 2');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events WHERE random() < 0.5 GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, max(clock_timestamp()) AS t FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT recorded_at::text AS day, count(*) AS n FROM ledger.events GROUP BY 1');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT (data->>''at'')::timestamptz AS at, count(*) AS n FROM ledger.events GROUP BY 1');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY ROLLUP (type)');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT count(*) AS n FROM ledger.events');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type, stream');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) FROM ledger.events GROUP BY type UNION ALL SELECT type, 1 FROM ledger.events');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, xmin AS x, count(*) AS n FROM ledger.events GROUP BY 1, 2');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT tx_order, count(*) AS n FROM ledger.events GROUP BY 1');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT e::text AS row, count(*) AS n FROM ledger.events e GROUP BY 1');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type || ''!'', count(*) AS n FROM ledger.events GROUP BY 1');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type AS n, count(*) AS n FROM ledger.events GROUP BY 1');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type; DROP TABLE ledger.events');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'INSERT INTO ledger.accounts VALUES (1)');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELEC type, count(*) FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type', 'eventually');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection(NULL, 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('p', NULL);
\echo :LAST_ERROR_SQLSTATE
-- a user-defined aggregate named like a built-in one is not the built-in
CREATE AGGREGATE public.sum(bigint) (sfunc = int8pl, stype = bigint);
SELECT ledger.create_projection('p', 'SELECT type, public.sum(version) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
DROP AGGREGATE public.sum(bigint);
-- a rejected definition leaves nothing behind
SELECT count(*) AS registered FROM ledger.projections WHERE kind = 'user';
SELECT to_regclass('public.p') IS NULL AS no_table;

-- a retroactive inline projection: per user and page, over the existing log
SELECT ledger.create_projection('page_views', $$
    SELECT e.stream AS user_stream, e.data->>'page' AS page,
           count(*) AS views, sum((e.data->>'ms')::int) AS total_ms,
           min((e.data->>'ms')::int) AS fastest, max(e.position) AS last_position
      FROM ledger.events e
     WHERE e.type = 'PageViewed'
     GROUP BY e.stream, e.data->>'page' $$);
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_name = 'page_views' ORDER BY ordinal_position;
SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'page_views'::regclass AND contype = 'p';
-- it equals its query
SELECT count(*) AS differences FROM (
    (SELECT * FROM page_views EXCEPT ALL
     SELECT e.stream, e.data->>'page', count(*), sum((e.data->>'ms')::int), min((e.data->>'ms')::int), max(e.position)
       FROM ledger.events e WHERE e.type = 'PageViewed' GROUP BY 1, 2)
    UNION ALL
    (SELECT e.stream, e.data->>'page', count(*), sum((e.data->>'ms')::int), min((e.data->>'ms')::int), max(e.position)
       FROM ledger.events e WHERE e.type = 'PageViewed' GROUP BY 1, 2
     EXCEPT ALL SELECT * FROM page_views)) d;
SELECT * FROM page_views WHERE user_stream = 'user:1' ORDER BY page;

-- a name already taken: 42P07
SELECT ledger.create_projection('page_views', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.create_projection('ledger.events', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type');
\echo :LAST_ERROR_SQLSTATE

-- inline: kept in the appending transaction, read-your-writes; a rollback
-- leaves it unchanged
SELECT ledger.append('user:1', 'PageViewed', '{"page": "/p1", "ms": 5}');
SELECT views, total_ms, fastest FROM page_views WHERE user_stream = 'user:1' AND page = '/p1';
BEGIN;
SELECT ledger.append_events('user:1', '[{"type": "PageViewed", "data": {"page": "/p1", "ms": 1}},
                                        {"type": "PageViewed", "data": {"page": "/new", "ms": 9}}]');
SELECT page, views, total_ms, fastest FROM page_views WHERE user_stream = 'user:1' ORDER BY page;
ROLLBACK;
SELECT page, views, total_ms, fastest FROM page_views WHERE user_stream = 'user:1' ORDER BY page;
SELECT ledger.verify_projection('page_views');

-- a LATERAL projection over transfer legs equals ledger.balances
SELECT ledger.create_projection('analytics.balances_again', $$
    SELECT l->>'account' AS account, l->>'currency' AS currency,
           sum((l->>'amount')::numeric) FILTER (WHERE l->>'side' = 'debit') AS debits,
           sum((l->>'amount')::numeric) FILTER (WHERE l->>'side' = 'credit') AS credits,
           count(*) AS postings, max(e.position) AS last_position
      FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') AS l
     WHERE e.type = 'TransferPosted'
     GROUP BY 1, 2 $$);
SELECT ledger.transfer('t-after', 'acct1', 'acct2', 7.5, 'USD') > 0 AS posted;
SELECT ledger.post_entry('fx-after', '[{"account": "acct3", "side": "debit", "amount": 10, "currency": "USD"},
                                       {"account": "acct4", "side": "credit", "amount": 10, "currency": "USD"},
                                       {"account": "acct4", "side": "debit", "amount": 9, "currency": "EUR"},
                                       {"account": "acct3", "side": "credit", "amount": 9, "currency": "EUR"}]') > 0 AS posted;
SELECT count(*) AS differences FROM (
    SELECT account, currency, coalesce(debits, 0) AS d, coalesce(credits, 0) AS c, postings, last_position
      FROM analytics.balances_again
    EXCEPT ALL
    SELECT account, currency, debits_posted, credits_posted, postings, last_position FROM ledger.balances) d;
SELECT count(*) = (SELECT count(*) FROM ledger.balances) AS same_rows FROM analytics.balances_again;

-- async: lags until caught up, by catch_up or the projector
SELECT ledger.create_projection('event_types', 'SELECT type, count(*) AS n, max(position) AS last FROM ledger.events GROUP BY type', 'async');
SELECT name, kind, mode, state, lag_events, last_error FROM ledger.projection_status WHERE name = 'event_types';
SELECT ledger.append('user:9', 'Signed', '{}');
SELECT ledger.append('user:9', 'Signed', '{}');
SELECT name, state, lag_events FROM ledger.projection_status WHERE name = 'event_types';
SELECT * FROM event_types WHERE type = 'Signed';
SELECT ledger.catch_up('event_types', 1);
SELECT name, state, lag_events FROM ledger.projection_status WHERE name = 'event_types';
SELECT ledger.catch_up('event_types');
SELECT ledger.catch_up('event_types');
SELECT name, state, lag_events, checkpoint = (SELECT max(position) FROM ledger.events) AS at_head
  FROM ledger.projection_status WHERE name = 'event_types';
SELECT * FROM event_types WHERE type = 'Signed';
SELECT ledger.verify_projection('event_types');
-- catch_up of every async projection, and of inline or built-in ones (0)
SELECT ledger.append('user:9', 'Signed', '{}');
SELECT ledger.catch_up();
SELECT ledger.catch_up('page_views'), ledger.catch_up('ledger.balances');

-- projection_status lists the built-ins and the user projections
SELECT name, kind, mode, state, lag_events, target FROM ledger.projection_status ORDER BY kind, name;

-- verify detects a tampered row; rebuild fixes it
ALTER TABLE page_views DISABLE TRIGGER ledger_projection_guard;
\echo :LAST_ERROR_SQLSTATE
ALTER EVENT TRIGGER ledger_guard_triggers DISABLE;
ALTER TABLE page_views DISABLE TRIGGER ledger_projection_guard;
UPDATE page_views SET views = views + 100 WHERE user_stream = 'user:2' AND page = '/p0';
ALTER TABLE page_views ENABLE ALWAYS TRIGGER ledger_projection_guard;
ALTER EVENT TRIGGER ledger_guard_triggers ENABLE ALWAYS;
SELECT ledger.verify_projection('page_views');
SELECT ledger.rebuild_projection('page_views') = (SELECT count(*) FROM ledger.events) AS replayed_log;
SELECT ledger.verify_projection('page_views');
SELECT ledger.rebuild_projection('event_types') > 0 AS rebuilt_async;
SELECT ledger.verify_projection('event_types');
-- verify only reads: it runs in a read-only transaction
BEGIN TRANSACTION READ ONLY;
SELECT ledger.verify_projection('event_types'), ledger.verify_projection('page_views'),
       ledger.verify_projection('ledger.balances');
COMMIT;
SELECT name, state, lag_events FROM ledger.projection_status WHERE kind = 'user' ORDER BY name;

-- projection tables refuse direct writes by every role
INSERT INTO page_views VALUES ('x', 'y', 1, 1, 1, 1);
\echo :LAST_ERROR_SQLSTATE
UPDATE page_views SET views = 0;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM analytics.balances_again;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE event_types;
\echo :LAST_ERROR_SQLSTATE

-- an inline projection that fails on an event fails the append, naming it
SELECT ledger.create_projection('amounts', $$
    SELECT stream, sum((data->>'amount')::int) AS total FROM ledger.events
     WHERE type = 'Charged' GROUP BY stream $$);
SELECT ledger.append('c1', 'Charged', '{"amount": 5}');
SELECT count(*) AS before FROM ledger.events \gset
SELECT ledger.append('c1', 'Charged', '{"amount": "five"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) = :before AS nothing_appended FROM ledger.events;
SELECT * FROM amounts;

-- an async projection that fails goes to state failed, stops advancing,
-- and appends go on; drop and re-create fixes it
SELECT ledger.create_projection('amounts_async', $$
    SELECT stream, sum((data->>'amount')::int) AS total FROM ledger.events
     WHERE type = 'Billed' GROUP BY stream $$, 'async');
SELECT ledger.append('c2', 'Billed', '{"amount": 3}');
SELECT ledger.append('c2', 'Billed', '{"amount": "three"}');
SELECT ledger.append('c2', 'Billed', '{"amount": 4}');
SET client_min_messages = error;
SELECT ledger.catch_up('amounts_async');
RESET client_min_messages;
SELECT name, state, lag_events, last_error FROM ledger.projection_status WHERE name = 'amounts_async';
SELECT ledger.catch_up('amounts_async');
SELECT * FROM amounts_async;
SELECT ledger.drop_projection('amounts_async');
SELECT ledger.create_projection('amounts_async', $$
    SELECT stream, sum((data->>'amount')::numeric) FILTER (WHERE jsonb_typeof(data->'amount') = 'number') AS total,
           count(*) AS billed FROM ledger.events
     WHERE type = 'Billed' GROUP BY stream $$, 'async');
SELECT name, state, lag_events, last_error FROM ledger.projection_status WHERE name = 'amounts_async';
SELECT * FROM amounts_async;

-- names: as created or schema-qualified; unknown names raise 42704
SELECT ledger.verify_projection('analytics.balances_again'), ledger.verify_projection('public.page_views');
SELECT ledger.verify_projection('balances_again');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.drop_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.rebuild_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.catch_up('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.catch_up(NULL, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.drop_projection('ledger.balances');
\echo :LAST_ERROR_SQLSTATE

-- drop removes the table, its trigger and the registry row
SELECT ledger.drop_projection('analytics.balances_again');
SELECT to_regclass('analytics.balances_again') IS NULL AS table_gone,
       NOT EXISTS (SELECT 1 FROM ledger.projections WHERE name = 'analytics.balances_again') AS row_gone;
-- appends after a drop are fine
SELECT ledger.transfer('t-after-drop', 'acct1', 'acct2', 1, 'USD') > 0 AS posted;

SELECT name, ledger.verify_projection(name) FROM ledger.projection_status ORDER BY name;

-- a projection's table goes only with its projection: DROP TABLE and DROP
-- SCHEMA ... CASCADE are refused (2BP01), and the projection stays current
CREATE SCHEMA doomed;
SELECT ledger.create_projection('doomed.by_type', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type');
SELECT ledger.create_projection('by_stream_async', 'SELECT stream, count(*) AS n FROM ledger.events GROUP BY stream', 'async');
DROP TABLE doomed.by_type;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA doomed CASCADE;
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE plain_table ();
DROP TABLE plain_table, by_stream_async;
\echo :LAST_ERROR_SQLSTATE
-- the whole statement was refused; other tables drop as usual
SELECT to_regclass('plain_table') IS NOT NULL AS plain_table_kept;
DROP TABLE plain_table;
SELECT ledger.append('doomed-1', 'Doomed', '{}') AS version;
SELECT n FROM doomed.by_type WHERE type = 'Doomed';
SELECT ledger.verify_projection('doomed.by_type');
-- with the event trigger switched off, a superuser can still drop the
-- table: appends then fail, naming the projection (42P01), and append
-- nothing; catch-up marks an async projection failed; drop_projection
-- still removes the projection, and appends work again
ALTER EVENT TRIGGER ledger_projection_tables DISABLE;
DROP SCHEMA doomed CASCADE;
DROP TABLE by_stream_async;
ALTER EVENT TRIGGER ledger_projection_tables ENABLE ALWAYS;
SELECT count(*) AS events_before FROM ledger.events \gset
SELECT ledger.append('doomed-2', 'Doomed', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.transfer('t-doomed', 'acct1', 'acct2', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) = :events_before AS nothing_appended FROM ledger.events;
SELECT ledger.verify_projection('doomed.by_type');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.drop_projection('doomed.by_type');
SELECT ledger.append('doomed-3', 'Doomed', '{}') AS version;
SELECT ledger.catch_up('by_stream_async');
SELECT name, state, last_error FROM ledger.projection_status WHERE name = 'by_stream_async';
SELECT ledger.drop_projection('by_stream_async');
SELECT count(*) AS left_over FROM ledger.projections WHERE name IN ('doomed.by_type', 'by_stream_async');

-- a definition that no longer resolves (a function it calls was dropped)
-- fails its own projection at catch-up; appends that do not feed an inline
-- projection through it go on
CREATE FUNCTION public.kind_of(d jsonb) RETURNS text IMMUTABLE LANGUAGE sql
    AS $$ SELECT coalesce(d->>'kind', '-') $$;
SELECT ledger.create_projection('by_kind', 'SELECT public.kind_of(e.data) AS kind, count(*) AS n FROM ledger.events e GROUP BY 1', 'async');
SELECT ledger.append('kinds', 'Kinded', '{"kind": "a"}') AS version;
SELECT ledger.catch_up('by_kind');
DROP FUNCTION public.kind_of(jsonb);
\c
SELECT ledger.append('kinds', 'Kinded', '{"kind": "b"}') AS version;
SELECT ledger.transfer('t-after-kind', 'acct1', 'acct2', 1, 'USD') > 0 AS posted;
SELECT ledger.catch_up('by_kind');
SELECT name, state, last_error FROM ledger.projection_status WHERE name = 'by_kind';
SELECT ledger.drop_projection('by_kind');

-- a literal means to catch-up, rebuild and verify what it means to the
-- inline fold, whatever the calling session's settings
SELECT ledger.create_projection('backslashes', $$SELECT type, count(*) AS n FROM ledger.events e WHERE e.type = 'a\b' GROUP BY type$$, 'async');
SELECT ledger.append('bs', E'a\\b', '{}') AS version;
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT ledger.catch_up('backslashes');
SELECT ledger.rebuild_projection('backslashes');
SELECT ledger.verify_projection('backslashes');
RESET escape_string_warning;
RESET standard_conforming_strings;
SELECT type, n FROM backslashes;
SELECT ledger.drop_projection('backslashes');

-- a projection's columns take the query's collations: keys and the min or
-- max folded into the table compare as the query does ('a' < 'B' in ICU's
-- root collation, 'B' < 'a' bytewise), and verify agrees
SELECT ledger.create_projection('first_names',
  $$SELECT stream, min((data->>'name') COLLATE "und-x-icu") AS first_name, max(data->>'name' COLLATE "C") AS last_c
      FROM ledger.events WHERE type = 'Named' GROUP BY stream$$);
SELECT ledger.append('named:1', 'Named', '{"name": "B"}') AS version;
SELECT ledger.append('named:1', 'Named', '{"name": "a"}') AS version;
SELECT stream, first_name, last_c FROM first_names;
SELECT attname, collname FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
 WHERE attrelid = 'first_names'::regclass AND attnum > 0 ORDER BY attnum;
SELECT ledger.verify_projection('first_names');
SELECT ledger.drop_projection('first_names');

-- an inline projection is filled, rebuilt and snapshotted up to the log's
-- head under a lock; a REPEATABLE READ snapshot, taken before that lock,
-- would miss events, so those are refused there (0A000), and nothing is
-- created
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ledger.create_projection('rr_inline', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT to_regclass('rr_inline') IS NULL AS no_table;
SELECT ledger.create_projection('rr_inline', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ledger.rebuild_projection('rr_inline');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT ledger.snapshot_projection('rr_inline');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- async projections read below the snapshot's horizon, and may
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ledger.create_projection('rr_async', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type', 'async');
COMMIT;
SELECT ledger.catch_up('rr_async') >= 0 AS caught_up;
SELECT ledger.verify_projection('rr_inline') AND ledger.verify_projection('rr_async') AS verified;
SELECT ledger.drop_projection('rr_inline'), ledger.drop_projection('rr_async');
-- catch_up() of everything in REPEATABLE READ skips the automatic inline
-- snapshots rather than fail
SET ledger_cqrs.projection_snapshot_interval = 1;
SELECT ledger.create_projection('rr_inline', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT ledger.append('rr', 'RR', '{}') AS version;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ledger.catch_up() >= 0 AS caught_up;
COMMIT;
RESET ledger_cqrs.projection_snapshot_interval;
SELECT ledger.drop_projection('rr_inline');
