-- Snapshots and time travel: balance snapshots, balance_at, projection
-- snapshots, stream snapshots.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
DROP TABLE IF EXISTS public.per_account, public.by_x, public.fsum, public.by_size, public.by_size_async, public.by_kind CASCADE;
DROP SCHEMA IF EXISTS regress_snapfn CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

SHOW ledger_cqrs.snapshot_interval;
SET ledger_cqrs.snapshot_interval = 10;
SELECT ledger.open_account(a) FROM unnest(ARRAY['bank', 'alice', 'bob']) a \g /dev/null

-- batch 1: 25 postings on alice in USD, 5 in JPY
SELECT ledger.transfer('u' || i, 'bank', 'alice', i, 'USD') FROM generate_series(1, 25) i \g /dev/null
SELECT ledger.transfer('j' || i, 'bank', 'alice', 100 * i, 'JPY') FROM generate_series(1, 5) i \g /dev/null
SELECT clock_timestamp() AS between_batches \gset
SELECT pg_sleep(0.01);
-- batch 2: alice pays bob 12 times
SELECT ledger.transfer('p' || i, 'alice', 'bob', 10, 'USD') FROM generate_series(1, 12) i \g /dev/null

-- snapshots appear every 10 postings per account and currency, written by
-- the posting itself
SELECT account, currency, postings, balance, debits_posted, credits_posted,
       position = (SELECT max(position) FROM ledger.account_entries e
                    WHERE e.account = s.account AND e.currency = s.currency
                      AND e.position <= s.position) AS at_a_posting
  FROM ledger.balance_snapshots s ORDER BY account, currency, postings;
-- each snapshot holds the balance after its posting
SELECT bool_and(s.balance = e.balance_after) AS snapshots_match_entries
  FROM ledger.balance_snapshots s
  JOIN ledger.account_entries e USING (account, currency, position);

-- balance_at at every posting's position equals that entry's balance_after
SELECT bool_and(ledger.balance_at(account, currency, position) = balance_after) AS at_every_position
  FROM ledger.account_entries;
-- between postings too: the balance of the last posting at or before
SELECT bool_and(ledger.balance_at(e.account, e.currency, p.pos) =
                COALESCE((SELECT x.balance_after FROM ledger.account_entries x
                           WHERE x.account = e.account AND x.currency = e.currency AND x.position <= p.pos
                           ORDER BY x.position DESC LIMIT 1), 0)) AS at_every_point
  FROM (SELECT DISTINCT account, currency FROM ledger.account_entries) e,
       generate_series(0, (SELECT max(position) FROM ledger.events) + 2) AS p(pos);

-- by time: across the two committed batches, before the first posting, and
-- for an unknown account
SELECT ledger.balance_at('alice', 'USD', :'between_batches'::timestamptz) AS alice_usd_between,
       ledger.balance_at('bob', 'USD', :'between_batches'::timestamptz) AS bob_usd_between,
       ledger.balance_at('alice', 'JPY', :'between_batches'::timestamptz) AS alice_jpy_between;
SELECT ledger.balance_at('alice', 'USD', now() + interval '1 day') AS alice_usd_now,
       (SELECT balance FROM ledger.balances WHERE account = 'alice' AND currency = 'USD') AS balance;
SELECT ledger.balance_at('alice', 'USD', '2000-01-01'::timestamptz) AS before_first,
       ledger.balance_at('nobody', 'USD', now()) AS unknown_account,
       ledger.balance_at('alice', 'GBP', now()) AS unknown_currency,
       ledger.balance_at('alice', 'USD', 0::bigint) AS at_position_0;
-- an untyped literal is a time (the text form); an integer, a position; a
-- text that is no time raises 22007
SELECT ledger.balance_at('alice', 'USD', :'between_batches') =
       ledger.balance_at('alice', 'USD', :'between_batches'::timestamptz) AS untyped_is_time,
       ledger.balance_at('alice', 'USD', '2000-01-01') AS untyped_before_first,
       ledger.balance_at('alice', 'USD', 5) = ledger.balance_at('alice', 'USD', 5::bigint) AS integer_is_position,
       ledger.balance_at('alice', 'USD', NULL) IS NULL AS untyped_null;
SELECT ledger.balance_at('alice', 'USD', 'yesterday-ish');
\echo :LAST_ERROR_SQLSTATE
-- at every posting's append time
SELECT bool_and(ledger.balance_at(account, currency, recorded_at) = balance_after) AS at_every_time
  FROM ledger.account_entries;
-- a NULL argument returns NULL
SELECT ledger.balance_at(NULL, 'USD', 5::bigint) IS NULL AS n1,
       ledger.balance_at('alice', NULL, now()) IS NULL AS n2,
       ledger.balance_at('alice', 'USD', NULL::timestamptz) IS NULL AS n3,
       ledger.balance_at('alice', 'USD', NULL::bigint) IS NULL AS n4;

-- changing the interval affects future snapshots only; 0 turns them off
SELECT count(*) AS snapshots_before FROM ledger.balance_snapshots \gset
SET ledger_cqrs.snapshot_interval = 0;
SELECT ledger.transfer('off' || i, 'bank', 'bob', 1, 'GBP') FROM generate_series(1, 15) i \g /dev/null
SELECT count(*) = :snapshots_before AS none_while_off FROM ledger.balance_snapshots;
SET ledger_cqrs.snapshot_interval = 4;
SELECT ledger.transfer('four' || i, 'bank', 'bob', 1, 'GBP') FROM generate_series(1, 5) i \g /dev/null
SELECT account, currency, postings FROM ledger.balance_snapshots WHERE currency = 'GBP' ORDER BY 1, 3;
SELECT count(*) AS old_snapshots_unchanged FROM ledger.balance_snapshots WHERE currency = 'USD';
SELECT bool_and(ledger.balance_at(account, currency, position) = balance_after) AS still_exact
  FROM ledger.account_entries;
SET ledger_cqrs.snapshot_interval = 10;

-- balance snapshots are written only by postings
DELETE FROM ledger.balance_snapshots;
\echo :LAST_ERROR_SQLSTATE

-- projection snapshots: stamped with the definition's hash
SET ledger_cqrs.projection_snapshot_interval = 0;
SELECT ledger.create_projection('per_account', $$
    SELECT l->>'account' AS account, l->>'currency' AS currency, count(*) AS legs,
           sum((l->>'amount')::numeric) AS moved, max(e.position) AS last_position
      FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') l
     WHERE e.type = 'TransferPosted' GROUP BY 1, 2 $$);
SELECT ledger.snapshot_projection('per_account') = (SELECT max(position) FROM ledger.events) AS at_head;
SELECT name, checkpoint_position = (SELECT max(position) FROM ledger.events) AS at_head,
       events_applied = (SELECT count(*) FROM ledger.events) AS applied, row_count,
       definition_hash = (SELECT definition_hash FROM ledger.projections WHERE name = 'per_account') AS stamped
  FROM ledger.projection_snapshots;
SELECT ledger.transfer('after-snap' || i, 'bob', 'alice', 1, 'USD') FROM generate_series(1, 7) i \g /dev/null

-- a rebuild from the snapshot replays only the events after it, and equals
-- a rebuild from scratch
SELECT ledger.rebuild_projection('per_account') AS replayed_from_snapshot;
SELECT ledger.verify_projection('per_account');
CREATE TEMP TABLE from_snapshot AS SELECT * FROM per_account;
-- (snapshots are only a cache of state: the owner may delete them)
DELETE FROM ledger.projection_snapshots;
SELECT ledger.rebuild_projection('per_account') = (SELECT count(*) FROM ledger.events) AS replayed_everything;
SELECT count(*) AS differences FROM (
    (SELECT * FROM per_account EXCEPT ALL SELECT * FROM from_snapshot)
    UNION ALL
    (SELECT * FROM from_snapshot EXCEPT ALL SELECT * FROM per_account)) d;

-- a snapshot whose stamp is not the definition's hash (the analyzed query
-- deparses differently, after a function it calls was replaced, say) is
-- ignored: the rebuild starts from scratch
SELECT ledger.snapshot_projection('per_account') > 0 AS snapshotted;
UPDATE ledger.projection_snapshots SET definition_hash = md5('another definition')
 WHERE name = 'per_account';
SELECT ledger.rebuild_projection('per_account') = (SELECT count(*) FROM ledger.events) AS replayed_everything;
SELECT ledger.verify_projection('per_account');
-- dropped, its snapshots go; re-created under the same name with another
-- query, it starts from scratch
SELECT ledger.drop_projection('per_account');
SELECT count(*) AS snapshots_left FROM ledger.projection_snapshots WHERE name = 'per_account';
SELECT ledger.create_projection('per_account', $$
    SELECT l->>'account' AS account, l->>'currency' AS currency, count(*) AS legs
      FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') l
     WHERE e.type = 'TransferPosted' GROUP BY 1, 2 $$);
SELECT ledger.rebuild_projection('per_account') = (SELECT count(*) FROM ledger.events) AS replayed_everything;
SELECT ledger.verify_projection('per_account');

-- snapshots of an async projection are at its checkpoint, and taken
-- automatically every projection_snapshot_interval events by catch-up
SET ledger_cqrs.projection_snapshot_interval = 20;
SELECT ledger.create_projection('types', 'SELECT type, count(*) AS n FROM ledger.events GROUP BY type', 'async');
SELECT ledger.append('s', 'Tick', '{}') FROM generate_series(1, 45) \g /dev/null
SELECT ledger.catch_up('types', 10), ledger.catch_up('types', 10), ledger.catch_up('types');
SELECT count(*) AS automatic_snapshots FROM ledger.projection_snapshots WHERE name = 'types';
SELECT ledger.append('s', 'Tick', '{}') \g /dev/null
SELECT ledger.snapshot_projection('types') = (SELECT checkpoint FROM ledger.projection_status WHERE name = 'types')
       AS at_checkpoint_not_head;
-- only the last few are kept
SELECT ledger.catch_up('types');
SELECT ledger.snapshot_projection('types') > 0, ledger.snapshot_projection('per_account') > 0;
SELECT name, count(*) <= 3 AS pruned FROM ledger.projection_snapshots GROUP BY name ORDER BY name;
SELECT ledger.snapshot_projection('ledger.balances');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.snapshot_projection('nope');
\echo :LAST_ERROR_SQLSTATE
RESET ledger_cqrs.projection_snapshot_interval;

-- stream snapshots for users' own aggregates
SELECT ledger.append_events('cart:7', '[{"type": "ItemAdded", "data": {"sku": "a"}},
                                        {"type": "ItemAdded", "data": {"sku": "b"}},
                                        {"type": "ItemRemoved", "data": {"sku": "a"}}]');
SELECT * FROM ledger.load_snapshot('cart:7');
SELECT ledger.save_snapshot('cart:7', 2, '{"items": ["a", "b"]}');
SELECT * FROM ledger.load_snapshot('cart:7');
SELECT ledger.save_snapshot('cart:7', 3, '{"items": ["b"]}');
SELECT * FROM ledger.load_snapshot('cart:7');
-- at or below the latest snapshot: a no-op
SELECT ledger.save_snapshot('cart:7', 3, '{"items": "changed"}');
SELECT ledger.save_snapshot('cart:7', 1, '{"items": ["a"]}');
SELECT * FROM ledger.load_snapshot('cart:7');
SELECT count(*) AS stored FROM ledger.stream_snapshots WHERE stream = 'cart:7';
-- beyond the stream's current version, or bad input: errors
SELECT ledger.save_snapshot('cart:7', 4, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.save_snapshot('cart:none', 1, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('cart:9', 'ItemAdded', '{}');
SELECT ledger.save_snapshot('cart:9', 0, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.save_snapshot('cart:9', -1, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored FROM ledger.stream_snapshots WHERE stream = 'cart:9';
-- ... but at or below the latest snapshot, any version is a no-op
SELECT ledger.save_snapshot('cart:7', 0, '{}');
SELECT ledger.save_snapshot('cart:7', -1, '{}');
SELECT ledger.save_snapshot(NULL, 1, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.save_snapshot('cart:7', NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.save_snapshot('cart:7', 3, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.save_snapshot('', 1, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.load_snapshot('cart:7');
SELECT * FROM ledger.load_snapshot('nobody');
SELECT * FROM ledger.load_snapshot(NULL);
-- the newest few are kept
SELECT ledger.append('cart:8', 'ItemAdded', '{}') FROM generate_series(1, 6) \g /dev/null
SELECT ledger.save_snapshot('cart:8', v, jsonb_build_object('v', v)) FROM generate_series(1, 6) v \g /dev/null
SELECT array_agg(version ORDER BY version) AS kept FROM ledger.stream_snapshots WHERE stream = 'cart:8';

SELECT bool_and(ledger.verify_projection(name)) AS all_verify FROM ledger.projection_status;

-- a projection snapshot reads back exactly what the table held:
-- a JSON null group key (data->'x' of {"x": null}) stays JSON null, not SQL
-- NULL, so a rebuild from the snapshot works ...
SELECT ledger.append('thing:1', 'Thing', '{"x": null}') AS v \g /dev/null
SELECT ledger.append('thing:2', 'Thing', '{"x": 1}') AS v \g /dev/null
SELECT ledger.create_projection('public.by_x',
  $$SELECT e.data->'x' AS x, count(*) AS n FROM ledger.events e
     WHERE e.type = 'Thing' GROUP BY e.data->'x'$$);
SELECT ledger.snapshot_projection('public.by_x') > 0 AS snapshotted;
SELECT ledger.append('thing:3', 'Thing', '{"x": 2}') AS v \g /dev/null
SELECT ledger.rebuild_projection('public.by_x') AS replayed;
SELECT x, x IS NULL AS sql_null, n FROM public.by_x ORDER BY x;
SELECT ledger.verify_projection('public.by_x') AS verified;
SELECT ledger.drop_projection('public.by_x');
-- ... and a float is written in full whatever the session's
-- extra_float_digits, so the rebuilt maximum is the exact one
SELECT ledger.append('meas:1', 'Meas', '{"k": "a", "v": 0.1}') AS v \g /dev/null
SELECT ledger.append('meas:1', 'Meas', '{"k": "a", "v": 0.05}') AS v \g /dev/null
SELECT ledger.create_projection('public.fsum',
  $$SELECT e.data->>'k' AS k, max((e.data->>'v')::float8 + 0.2::float8) AS total FROM ledger.events e
     WHERE e.type = 'Meas' GROUP BY 1$$);
SET extra_float_digits = 0;
SELECT ledger.snapshot_projection('public.fsum') > 0 AS snapshotted;
SELECT ledger.append('meas:2', 'Other', '{}') AS v \g /dev/null
SELECT ledger.rebuild_projection('public.fsum') AS replayed;
RESET extra_float_digits;
SELECT k, total = 0.30000000000000004::float8 AS exact FROM public.fsum;
SELECT ledger.verify_projection('public.fsum') AS verified;
-- the definition's stamp does not depend on quote_all_identifiers: the
-- snapshot still serves (one event replayed, not the whole log)
SET quote_all_identifiers = on;
SELECT ledger.append('meas:3', 'Other', '{}') AS v \g /dev/null
SELECT ledger.rebuild_projection('public.fsum') AS replayed;
RESET quote_all_identifiers;
SELECT ledger.drop_projection('public.fsum');

-- the stamp covers the user-defined functions the definition calls,
-- directly or through a body stored parsed (RETURN, BEGIN ATOMIC)
CREATE SCHEMA regress_snapfn;
CREATE FUNCTION regress_snapfn.threshold() RETURNS numeric IMMUTABLE LANGUAGE sql RETURN 10;
CREATE FUNCTION regress_snapfn.size(v numeric) RETURNS text IMMUTABLE LANGUAGE sql
    RETURN CASE WHEN v < regress_snapfn.threshold() THEN 'small' ELSE 'large' END;
CREATE FUNCTION regress_snapfn.unrelated(v numeric) RETURNS numeric IMMUTABLE LANGUAGE sql RETURN v;
SELECT $$SELECT regress_snapfn.size((l->>'amount')::numeric) AS size, count(*) AS legs
      FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') l
     WHERE e.type = 'TransferPosted' GROUP BY 1$$ AS size_query \gset
CREATE TEMP VIEW by_size_query AS :size_query;
SELECT ledger.create_projection('public.by_size', :'size_query');
SELECT ledger.create_projection('public.by_size_async', :'size_query', 'async');
SELECT ledger.snapshot_projection('public.by_size') > 0 AS snapshotted;
SELECT ledger.transfer('size' || i, 'bank', 'bob', i, 'USD') FROM generate_series(1, 3) i \g /dev/null
-- a function it does not call changes: the snapshot still serves (three
-- events replayed, not the whole log), whatever the session's
-- quote_all_identifiers, by which the functions' definitions deparse
CREATE OR REPLACE FUNCTION regress_snapfn.unrelated(v numeric) RETURNS numeric IMMUTABLE LANGUAGE sql
    RETURN v + 1;
SET quote_all_identifiers = on;
SELECT ledger.rebuild_projection('public.by_size') AS replayed;
RESET quote_all_identifiers;
-- the function it calls changes its results: the table is stale ...
CREATE OR REPLACE FUNCTION regress_snapfn.size(v numeric) RETURNS text IMMUTABLE LANGUAGE sql
    RETURN CASE WHEN v < regress_snapfn.threshold() / 2 THEN 'small' ELSE 'large' END;
SELECT ledger.verify_projection('public.by_size') AS verified;
-- ... a snapshot of it would mix the two versions: refused, nothing stored,
-- and the automatic ones (an inline projection's, an async one's as it
-- folds an event with the new version) pass it over quietly
SELECT count(*) AS snapshots_before FROM ledger.projection_snapshots
 WHERE name IN ('public.by_size', 'public.by_size_async') \gset
SELECT ledger.snapshot_projection('public.by_size');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.snapshot_projection('public.by_size_async');
\echo :LAST_ERROR_SQLSTATE
SET ledger_cqrs.projection_snapshot_interval = 1;
SELECT ledger.transfer('size-new', 'bank', 'bob', 4, 'USD') \g /dev/null
SELECT ledger.catch_up() >= 1 AS caught_up;
RESET ledger_cqrs.projection_snapshot_interval;
SELECT count(*) = :snapshots_before AS none_stored,
       bool_and(s.definition_hash = p.definition_hash) AS all_of_the_old_version
  FROM ledger.projection_snapshots s JOIN ledger.projections p USING (name)
 WHERE name IN ('public.by_size', 'public.by_size_async');
-- ... and the rebuild ignores the snapshot made with the old version: it
-- replays the whole log, and the table is the query over it
SELECT ledger.rebuild_projection('public.by_size') = (SELECT count(*) FROM ledger.events) AS replayed_everything;
SELECT ledger.verify_projection('public.by_size') AS verified;
SELECT count(*) AS differences FROM (
    (SELECT * FROM public.by_size EXCEPT ALL SELECT * FROM by_size_query)
    UNION ALL
    (SELECT * FROM by_size_query EXCEPT ALL SELECT * FROM public.by_size)) d;
SELECT size, legs FROM public.by_size ORDER BY size;
-- a snapshot of the new version serves the next rebuild
SELECT ledger.snapshot_projection('public.by_size') > 0 AS snapshotted;
SELECT ledger.append('size:1', 'Other', '{}') AS v \g /dev/null
SELECT ledger.rebuild_projection('public.by_size') AS replayed;
-- a function reached through the body of the one it calls changes: the
-- snapshot no longer matches either
CREATE OR REPLACE FUNCTION regress_snapfn.threshold() RETURNS numeric IMMUTABLE LANGUAGE sql RETURN 100;
SELECT ledger.rebuild_projection('public.by_size') = (SELECT count(*) FROM ledger.events) AS replayed_everything;
SELECT ledger.verify_projection('public.by_size') AS verified;
SELECT size, legs FROM public.by_size ORDER BY size;
-- a body given as a string (here PL/pgSQL) is stamped by its text
CREATE OR REPLACE FUNCTION regress_snapfn.size(v numeric) RETURNS text IMMUTABLE LANGUAGE plpgsql
    AS $$BEGIN RETURN CASE WHEN v < 3 THEN 'small' ELSE 'large' END; END$$;
SELECT ledger.rebuild_projection('public.by_size') = (SELECT count(*) FROM ledger.events) AS replayed_everything;
SELECT ledger.snapshot_projection('public.by_size') > 0 AS snapshotted;
CREATE OR REPLACE FUNCTION regress_snapfn.size(v numeric) RETURNS text IMMUTABLE LANGUAGE plpgsql
    AS $$BEGIN RETURN CASE WHEN v < 20 THEN 'small' ELSE 'large' END; END$$;
SELECT ledger.rebuild_projection('public.by_size') = (SELECT count(*) FROM ledger.events) AS replayed_everything;
SELECT ledger.verify_projection('public.by_size') AS verified;
SELECT size, legs FROM public.by_size ORDER BY size;
SELECT ledger.drop_projection('public.by_size'), ledger.drop_projection('public.by_size_async');
-- the stamp does not depend on the caller's TimeZone or DateStyle, by
-- which a timestamptz literal deparses: a rebuild in other settings starts
-- from the snapshot (one event replayed), and the stamp it leaves in the
-- registry lets the next snapshot be taken
CREATE FUNCTION regress_snapfn.kind(t text) RETURNS text IMMUTABLE LANGUAGE sql RETURN lower(t);
SELECT ledger.create_projection('public.by_kind',
  $$SELECT regress_snapfn.kind(e.type) AS kind, count(*) AS n FROM ledger.events e
     WHERE e.recorded_at > '2000-01-01 00:00:00+00'::timestamptz GROUP BY 1$$);
SELECT ledger.snapshot_projection('public.by_kind') > 0 AS snapshotted;
SELECT ledger.append('kind:1', 'Kind', '{}') AS v \g /dev/null
SET TimeZone = 'Asia/Tokyo';
SET DateStyle = 'SQL, DMY';
SELECT ledger.rebuild_projection('public.by_kind') AS replayed;
SELECT ledger.snapshot_projection('public.by_kind') > 0 AS snapshotted;
RESET TimeZone;
RESET DateStyle;
SELECT ledger.verify_projection('public.by_kind') AS verified;
SELECT ledger.drop_projection('public.by_kind');
DROP VIEW by_size_query;
DROP SCHEMA regress_snapfn CASCADE;
