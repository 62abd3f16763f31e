-- Projections at their edges: how names resolve, explicit JOIN LATERAL,
-- ties in min and max, a column named like the snapshot's row alias, and
-- appends nested in a fold.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
DROP SCHEMA IF EXISTS regress_edges CASCADE;
DROP TABLE IF EXISTS public.mixed, public."Mixed", public.snap_t, public.ties,
    public.jl_cross, public.jl_on, public.by_type, public.by_stream, public.no_alias, public.waited, public.wait_failed, public.pin_a, public.pin_b, public.slow, public.slow_inline, public.unq, public.edges_other, public.rc, public.rc_away, public.tl_ok, public.dom_ok, public.edges_allowed CASCADE;
DROP FUNCTION IF EXISTS public.edges_vol(text), public.edges_stable(text), public.edges_imm(text);
DROP FUNCTION IF EXISTS regress_ping() CASCADE;
DROP DOMAIN IF EXISTS public.edges_coin2, public.edges_coin, public.edges_allowed_text, public.edges_pos;
DROP FUNCTION IF EXISTS public.edges_is_allowed(text);
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

CREATE FUNCTION sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

-- names --------------------------------------------------------------------

-- a built-in model's name is taken: the functions would reach the built-in
-- (42P07, nothing created); schema-qualified, the name is free
SELECT sqlstate_of($$SELECT ledger.create_projection('accounts', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1')$$);
SELECT sqlstate_of($$SELECT ledger.create_projection('Balances', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1')$$);
SELECT to_regclass('public.accounts') IS NULL AS no_table,
       (SELECT count(*) FROM ledger.projections WHERE kind = 'user') AS user_projections;
CREATE SCHEMA regress_edges;
SELECT ledger.create_projection('regress_edges.accounts', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT ledger.append('n:1', 'Named', '{}') AS version;
SELECT * FROM regress_edges.accounts ORDER BY type;
-- 'accounts' is still the built-in; the user's needs its schema
SELECT ledger.verify_projection('accounts') AS builtin, ledger.verify_projection('regress_edges.accounts') AS users;
SELECT ledger.verify_projection('"ledger"."balances"') AS quoted, ledger.verify_projection('LEDGER.Balances') AS folded;
SELECT ledger.drop_projection('regress_edges.accounts');

-- a name is read as SQL reads it: unquoted parts fold to lower case
SELECT ledger.create_projection('Mixed', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT ledger.create_projection('"Mixed"', 'SELECT e.stream, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT name, target_schema, target_table FROM ledger.projections WHERE kind = 'user' ORDER BY name;
SELECT ledger.verify_projection('mixed') AS mixed, ledger.verify_projection('MIXED') AS upper,
       ledger.verify_projection('public.MIXED') AS qualified, ledger.verify_projection('public."Mixed"') AS quoted;
-- the same unqualified name in another schema is taken (42P07)
SET search_path = regress_edges, public;
SELECT sqlstate_of($$SELECT ledger.create_projection('MIXED', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1')$$);
SELECT to_regclass('regress_edges.mixed') IS NULL AS no_table;
RESET search_path;
-- created the other way round, the same: public.Mixed is public.mixed
SELECT ledger.drop_projection('"Mixed"'), ledger.drop_projection('Mixed');
SELECT ledger.create_projection('"Mixed"', 'SELECT e.stream, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT ledger.create_projection('Mixed', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1');
-- public.Mixed is public.mixed: that one goes, "Mixed" stays
SELECT ledger.drop_projection('public.Mixed');
SELECT name FROM ledger.projections WHERE kind = 'user' ORDER BY name;
SELECT to_regclass('public.mixed') IS NULL AS mixed_gone, to_regclass('public."Mixed"') IS NOT NULL AS quoted_kept;
-- unknown, and not a name at all: 42704
SELECT sqlstate_of($$SELECT ledger.verify_projection('public.nothing')$$), sqlstate_of($$SELECT ledger.drop_projection('a"b')$$);
SELECT ledger.drop_projection('"Mixed"');

-- explicit JOIN LATERAL ---------------------------------------------------

-- the same as ", LATERAL": accepted, folded and verified
SELECT ledger.append('basket:1', 'Picked', '{"skus": ["a", "b"]}') AS version;
SELECT ledger.create_projection('jl_cross', $$SELECT x.sku, count(*) AS n FROM ledger.events e
    CROSS JOIN LATERAL jsonb_array_elements_text(e.data->'skus') AS x(sku) GROUP BY 1$$);
SELECT ledger.create_projection('jl_on', $$SELECT x.sku, count(*) AS n FROM ledger.events e
    JOIN LATERAL jsonb_array_elements_text(e.data->'skus') AS x(sku) ON true GROUP BY 1$$, 'async');
SELECT ledger.append('basket:2', 'Picked', '{"skus": ["b", "c"]}') AS version;
SELECT ledger.catch_up('jl_on') AS applied;
SELECT c.sku, c.n, o.n AS n_async FROM jl_cross c FULL JOIN jl_on o USING (sku) ORDER BY 1;
SELECT ledger.verify_projection('jl_cross') AS cross_ok, ledger.verify_projection('jl_on') AS on_ok;
-- a join's columns are checked as the columns they stand for (0A000)
SELECT sqlstate_of($$SELECT ledger.create_projection('jl_bad', 'SELECT j.tx_order, count(*) AS n
    FROM (ledger.events e CROSS JOIN LATERAL jsonb_array_elements(e.data) x) j GROUP BY 1')$$);
SELECT sqlstate_of($$SELECT ledger.create_projection('jl_bad', 'SELECT j::text AS r, count(*) AS n
    FROM (ledger.events e CROSS JOIN LATERAL jsonb_array_elements(e.data) x) j GROUP BY 1')$$);
SELECT to_regclass('jl_bad') IS NULL AS no_table;
SELECT ledger.drop_projection('jl_cross'), ledger.drop_projection('jl_on');
-- ledger.events on the nullable side of an outer join (0A000): each batch
-- would add the unmatched rows of the other side again
SELECT sqlstate_of($$SELECT ledger.create_projection('oj_bad', 'SELECT g AS k, count(e.position) AS n
    FROM generate_series(1, 3) g LEFT JOIN ledger.events e ON e.stream = ''oj:'' || g::text GROUP BY 1')$$);
SELECT sqlstate_of($$SELECT ledger.create_projection('oj_bad', 'SELECT g AS k, count(*) AS n
    FROM ledger.events e RIGHT JOIN generate_series(1, 3) g ON e.stream = ''oj:'' || g::text GROUP BY 1')$$);
SELECT sqlstate_of($$SELECT ledger.create_projection('oj_bad', 'SELECT g AS k, count(*) AS n
    FROM ledger.events e FULL JOIN generate_series(1, 3) g ON e.stream = ''oj:'' || g::text GROUP BY 1')$$);
SELECT to_regclass('oj_bad') IS NULL AS no_table;
-- with the events on the preserved side, each event joins alone: accepted
SELECT ledger.create_projection('oj_ok', $$SELECT e.stream, count(x.sku) AS skus, count(*) AS n
    FROM ledger.events e LEFT JOIN LATERAL jsonb_array_elements_text(e.data->'skus') AS x(sku) ON true
   WHERE e.stream LIKE 'basket:%' GROUP BY 1$$);
SELECT ledger.append('basket:3', 'Picked', '{}') AS version;
SELECT * FROM oj_ok ORDER BY 1;
SELECT ledger.verify_projection('oj_ok') AS verified;
SELECT ledger.drop_projection('oj_ok');
-- sum of a float is refused (0A000): merged batch by batch it would differ
-- from the query's in the last digits; min and max of one are exact
SELECT sqlstate_of($$SELECT ledger.create_projection('fsum_bad', 'SELECT e.type, sum((e.data->>''v'')::float8) AS s
    FROM ledger.events e GROUP BY 1')$$);
SELECT sqlstate_of($$SELECT ledger.create_projection('fsum_bad', 'SELECT e.type, sum((e.data->>''v'')::real) AS s
    FROM ledger.events e GROUP BY 1')$$);
SELECT to_regclass('fsum_bad') IS NULL AS no_table;

-- min and max keep the later of equal values, as the aggregates do --------

SELECT ledger.create_projection('ties', $$SELECT e.stream, min((e.data->>'v')::numeric) AS lo,
    max((e.data->>'v')::numeric) AS hi FROM ledger.events e WHERE e.stream = 'tie:1' GROUP BY 1$$);
SELECT ledger.append('tie:1', 'V', jsonb_build_object('v', v::numeric))
  FROM unnest(ARRAY['5', '1.0', '1.00', '5.000']) v \g /dev/null
SELECT t.lo::text AS lo, t.hi::text AS hi,
       q.lo::text AS query_lo, q.hi::text AS query_hi
  FROM ties t,
       (SELECT min((e.data->>'v')::numeric) AS lo, max((e.data->>'v')::numeric) AS hi
          FROM ledger.events e WHERE e.stream = 'tie:1') q;
SELECT ledger.drop_projection('ties');

-- a column named t, like the snapshot's row alias --------------------------

-- the snapshot holds whole rows, and the rebuild from it restores them
SELECT ledger.append('sx:1', 'E', '{"t": "x", "n": 999}') AS version;
SELECT ledger.create_projection('snap_t', $$SELECT e.data AS t, count(*) AS n
    FROM ledger.events e WHERE e.stream LIKE 'sx:%' GROUP BY 1$$);
SELECT ledger.snapshot_projection('snap_t') > 0 AS snapshotted;
SELECT jsonb_typeof(rows->0) AS row_kind, rows->0 ? 't' AND rows->0 ? 'n' AS whole_row
  FROM ledger.projection_snapshots WHERE name = 'snap_t';
SELECT ledger.append('sx:2', 'E', '{}') AS version;
SELECT ledger.rebuild_projection('snap_t') AS replayed;
SELECT * FROM snap_t ORDER BY n;
SELECT ledger.verify_projection('snap_t') AS verified;
SELECT ledger.drop_projection('snap_t');
-- its snapshots went with it
SELECT count(*) AS snapshots_left FROM ledger.projection_snapshots WHERE name = 'snap_t';

-- the stored definition is the statement, without its ; or a comment after
SELECT ledger.create_projection('cut', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1 ; -- trailing');
SELECT definition FROM ledger.projections WHERE name = 'cut';
SELECT ledger.drop_projection('cut');

-- an append nested in a fold -----------------------------------------------

-- A projection is a pure transformation of events: a trigger on its table
-- (or a function its query calls) that appends -- here after a GRANT that
-- invalidates the cached projections -- fails the append that folds into
-- it (0A000, naming the projection), and nothing is appended by either.
-- Run by catch-up of an async projection, it turns the projection failed.
-- A ledger command nested so could otherwise run halfway through another,
-- under its locks and before it wrote its read models (close an account
-- whose incoming posting was not yet in ledger.balances).
SELECT ledger.create_projection('by_type', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT ledger.create_projection('by_stream', 'SELECT e.stream, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT ledger.create_projection('async_types', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1', 'async');
CREATE FUNCTION regress_ping() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF new.type = 'Ping' THEN
        EXECUTE format('GRANT SELECT ON %s TO PUBLIC', TG_RELID::regclass);
        EXECUTE 'GRANT SELECT ON public.by_stream TO PUBLIC';
        PERFORM ledger.append('nested:' || TG_TABLE_NAME, 'Pong', '{}');
    END IF;
    IF new.type = 'TransferPosted' THEN
        PERFORM ledger.close_account('nested_victim');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ping AFTER INSERT OR UPDATE ON by_type FOR EACH ROW EXECUTE FUNCTION regress_ping();
SELECT max(position) AS before_ping FROM ledger.events \gset
SELECT ledger.append('outer', 'Ping', '{}') AS version;
\echo :LAST_ERROR_SQLSTATE
-- a ledger command nested so: the transfer that fed the fold fails too
SELECT ledger.open_account('nested_src'), ledger.open_account('nested_victim');
SELECT max(position) AS before_ping FROM ledger.events \gset
SELECT ledger.transfer('nested-evil', 'nested_src', 'nested_victim', 10, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS appended FROM ledger.events WHERE position > :before_ping;
SELECT status FROM ledger.accounts WHERE account = 'nested_victim';
SELECT count(*) AS balances FROM ledger.balances WHERE account LIKE 'nested%';
SELECT * FROM by_type WHERE type IN ('Ping', 'Pong') ORDER BY type;
DROP TRIGGER ping ON by_type;
SELECT ledger.catch_up('async_types') > 0 AS caught_up;
CREATE TRIGGER ping AFTER INSERT OR UPDATE ON async_types FOR EACH ROW EXECUTE FUNCTION regress_ping();
SELECT ledger.append('outer', 'Ping', '{}') AS version;
SELECT ledger.catch_up('async_types') AS applied;
SELECT state, last_error FROM ledger.projection_status WHERE name = 'async_types';
SELECT count(*) AS nested_appends FROM ledger.events WHERE stream LIKE 'nested:%';
DROP TRIGGER ping ON async_types;
SELECT ledger.rebuild_projection('async_types');
SELECT name, state, ledger.verify_projection(name) FROM ledger.projection_status
 WHERE name IN ('by_type', 'by_stream', 'async_types') ORDER BY name;

-- without an alias, columns are named by the table alone; through the
-- schema they are refused (0A000), since batches stand in for the table
SELECT ledger.create_projection('no_alias', 'SELECT events.type, count(*) AS n FROM ledger.events GROUP BY 1');
SELECT ledger.verify_projection('no_alias') AS verified;
SELECT ledger.drop_projection('no_alias');
SELECT sqlstate_of($$SELECT ledger.create_projection('no_alias', 'SELECT ledger.events.type, count(*) AS n FROM ledger.events GROUP BY 1')$$);
SELECT to_regclass('no_alias') IS NULL AS no_table;

-- wait_for_projection finishes a batched fill even when the session's
-- default isolation is REPEATABLE READ: its rounds after the first run
-- READ COMMITTED, which the hand-over to inline needs
SELECT ledger.append('wait:' || i, 'Wait', '{}') FROM generate_series(1, 300) i \g /dev/null
SET default_transaction_isolation = 'repeatable read';
SET ledger_cqrs.fill_sync_limit = 0;
SET ledger_cqrs.fill_batch_size = 100;
SELECT ledger.create_projection('waited', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT ledger.stop_projector() IS NOT NULL AS projector_stopped;
CALL ledger.wait_for_projection('waited', '60 seconds');
SELECT state, lag_events FROM ledger.projection_status WHERE name = 'waited';
SELECT n FROM waited WHERE type = 'Wait';
RESET default_transaction_isolation;
RESET ledger_cqrs.fill_sync_limit;
RESET ledger_cqrs.fill_batch_size;
SELECT ledger.verify_projection('waited') AS verified;
SELECT ledger.drop_projection('waited');

-- wait_for_projection that drives a fill into failure commits the failure
-- its own round recorded before raising 55000, whose detail is the cause
SELECT ledger.append('wf:1', 'WF', '{"d": 1}'), ledger.append('wf:1', 'WF', '{"d": 0}');
-- (the projector that create_projection starts is stopped before it can
-- see the new projection: only wait_for_projection's round runs the fill)
SET ledger_cqrs.fill_sync_limit = 0;
BEGIN;
SELECT ledger.create_projection('wait_failed', $$SELECT e.stream, sum(10 / (e.data->>'d')::int) AS s FROM ledger.events e WHERE e.type = 'WF' GROUP BY 1$$);
SELECT ledger.stop_projector() IS NOT NULL AS projector_stopped;
COMMIT;
RESET ledger_cqrs.fill_sync_limit;
CALL ledger.wait_for_projection('wait_failed');
\echo :LAST_ERROR_SQLSTATE
SELECT state, last_error FROM ledger.projection_status WHERE name = 'wait_failed';
SELECT count(*) AS rows FROM wait_failed;
SELECT count(*) AS events FROM ledger.events WHERE type = 'WF';
SELECT ledger.drop_projection('wait_failed');

-- a fold that fails inside a savepoint leaves nothing pinned: a projection
-- created later in the same transaction is folded into
SELECT ledger.create_projection('pin_a', $$SELECT e.type, sum((e.data->>'x')::int) AS x FROM ledger.events e WHERE e.type = 'Pin' GROUP BY 1$$);
BEGIN;
DO $$
BEGIN
    PERFORM ledger.append('pin', 'Pin', '{"x": "bad"}');
EXCEPTION WHEN invalid_text_representation THEN
    RAISE NOTICE 'append refused: %', SQLSTATE;
END $$;
SELECT ledger.create_projection('pin_b', 'SELECT e.type, count(*) AS n FROM ledger.events e WHERE e.type = ''PinB'' GROUP BY 1');
SELECT ledger.append('pin', 'PinB', '{}') AS version;
COMMIT;
SELECT * FROM pin_b;
SELECT ledger.verify_projection('pin_b') AS verified;
SELECT ledger.drop_projection('pin_a'), ledger.drop_projection('pin_b');

-- a cancel or a timeout is not the events' fault: catch-up raises it as
-- it is (57014), and the projection stays live with its lag instead of
-- turning failed; the next catch-up applies everything.  An inline fold
-- cut short raises it unwrapped too, and nothing is appended.
CREATE FUNCTION regress_edges.slow_id(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM pg_sleep(0.05);
    RETURN t;
END $$;
SELECT ledger.stop_projector() IS NOT NULL AS projector_stopped;
SELECT ledger.create_projection('public.slow',
    $$SELECT regress_edges.slow_id(e.stream) AS k, count(*) AS n FROM ledger.events e WHERE e.type = 'Slow' GROUP BY 1$$, 'async');
SELECT count(*) AS appended FROM (SELECT ledger.append('slow:' || i, 'Slow', '{}') FROM generate_series(1, 40) i) a;
\set VERBOSITY terse
SET statement_timeout = '200ms';
SELECT ledger.catch_up('public.slow');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
SELECT state, lag_events, last_error FROM ledger.projection_status WHERE name = 'public.slow';
SELECT ledger.catch_up('public.slow') AS applied;
SELECT state, lag_events, last_error FROM ledger.projection_status WHERE name = 'public.slow';
SELECT ledger.verify_projection('public.slow') AS verified;
SELECT ledger.drop_projection('public.slow');
SELECT ledger.create_projection('public.slow_inline',
    $$SELECT regress_edges.slow_id(e.stream) AS k, count(*) AS n FROM ledger.events e WHERE e.type = 'SlowInline' GROUP BY 1$$);
SELECT count(*) AS events_before FROM ledger.events \gset
SET statement_timeout = '200ms';
SELECT ledger.append_events('slow-inline', (SELECT jsonb_agg(jsonb_build_object('type', 'SlowInline', 'data', jsonb_build_object('i', i))) FROM generate_series(1, 40) i));
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
\set VERBOSITY default
SELECT count(*) = :events_before AS nothing_appended FROM ledger.events;
SELECT state FROM ledger.projection_status WHERE name = 'public.slow_inline';
SELECT ledger.drop_projection('public.slow_inline');

-- names the query gives without a schema are looked up in pg_catalog only,
-- where it runs; one that exists in the caller's search_path is refused
-- with 0A000 (another table, a volatile or stable function, or an
-- immutable one that must be qualified), and nothing is created.  A name
-- that exists nowhere keeps its own error (42P01, 42883).
CREATE TABLE public.edges_other (x int);
CREATE FUNCTION public.edges_vol(t text) RETURNS text LANGUAGE sql VOLATILE AS 'SELECT t';
CREATE FUNCTION public.edges_stable(t text) RETURNS text LANGUAGE sql STABLE AS 'SELECT t';
CREATE FUNCTION public.edges_imm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT t';
SELECT q, sqlstate_of(format('SELECT ledger.create_projection(%L, %L)', 'public.unq', q)) AS sqlstate
  FROM (VALUES
    ('SELECT e.type, count(*) AS n FROM ledger.events e JOIN edges_other o ON true GROUP BY 1'),
    ('SELECT e.type, count(*) AS n FROM ledger.events e WHERE e.stream IN (SELECT ''x'' FROM edges_other) GROUP BY 1'),
    ('SELECT edges_vol(e.type) AS t, count(*) AS n FROM ledger.events e GROUP BY 1'),
    ('SELECT edges_stable(e.type) AS t, count(*) AS n FROM ledger.events e GROUP BY 1'),
    ('SELECT edges_imm(e.type) AS t, count(*) AS n FROM ledger.events e GROUP BY 1'),
    ('SELECT e.type, count(*) AS n FROM ledger.events e JOIN edges_nowhere o ON true GROUP BY 1'),
    ('SELECT edges_nowhere(e.type) AS t, count(*) AS n FROM ledger.events e GROUP BY 1')) v (q);
SELECT to_regclass('public.unq') IS NULL AS no_table,
       (SELECT count(*) FROM ledger.projections WHERE name = 'public.unq') AS registered;
SELECT ledger.create_projection('public.unq', 'SELECT e.type, count(*) AS n FROM ledger.events e JOIN edges_other o ON true GROUP BY 1');
SELECT ledger.create_projection('public.unq', 'SELECT edges_imm(e.type) AS t, count(*) AS n FROM ledger.events e GROUP BY 1');
-- qualified, the immutable function is accepted
SELECT ledger.create_projection('public.unq', 'SELECT public.edges_imm(e.type) AS t, count(*) AS n FROM ledger.events e GROUP BY 1');
SELECT ledger.verify_projection('public.unq') AS verified;
SELECT ledger.drop_projection('public.unq');

-- time-dependent literals: the parser folds 'now', 'today', 'tomorrow' and
-- 'yesterday' of a date/time type into a constant, which every fold would
-- read anew; they are refused (0A000, naming the literal), in any spelling
-- of the literal, and nothing is created.  Fixed values are accepted.
SELECT q, sqlstate_of(format('SELECT ledger.create_projection(%L, %L)', 'public.tl', q)) AS sqlstate
  FROM (VALUES
    ($q$SELECT e.stream, max('now'::timestamptz) AS seen FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, count(*) FILTER (WHERE e.recorded_at <= 'now'::timestamptz) AS n FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT 'today'::date AS day, count(*) AS n FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, count(*) FILTER (WHERE e.recorded_at <= 'Now') AS n FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, max(timestamptz 'tomorrow') AS m FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, max(CAST(E'yesterday' AS timestamp)) AS m FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, max(U&'n\006Fw'::time) AS m FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, count(*) FILTER (WHERE e.recorded_at = ANY ('{epoch,now}'::timestamptz[])) AS n FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, count(*) FILTER (WHERE e.recorded_at <@ '[epoch,now)'::tstzrange) AS n FROM ledger.events e GROUP BY 1$q$)) v (q);
SELECT to_regclass('public.tl') IS NULL AS no_table,
       (SELECT count(*) FROM ledger.projections WHERE name = 'public.tl') AS registered;
SELECT ledger.create_projection('public.tl', $q$SELECT e.stream, count(*) FILTER (WHERE e.recorded_at <= 'now') AS n FROM ledger.events e GROUP BY 1$q$);
SELECT ledger.create_projection('public.tl_ok', $q$SELECT e.stream, max('2024-06-01'::timestamptz) AS fixed,
       count(*) FILTER (WHERE e.recorded_at > 'epoch') AS since_epoch,
       count(*) FILTER (WHERE e.recorded_at < timestamptz 'infinity') AS finite,
       max('now'::text) AS word
  FROM ledger.events e WHERE e.stream LIKE 'tl:%' GROUP BY 1$q$);
SELECT ledger.append('tl:1', 'T', '{}') AS version;
SELECT ledger.append('tl:1', 'T', '{}') AS version;
SELECT * FROM public.tl_ok;
SELECT ledger.verify_projection('public.tl_ok') AS verified;
SELECT ledger.drop_projection('public.tl_ok');

-- a cast to a domain runs its CHECK constraints, its base domains' too: one
-- that calls a volatile function, or reads another table through a stable
-- one, is refused (0A000, naming the domain), and nothing is created.  A
-- domain that checks with immutable functions is accepted.
CREATE TABLE public.edges_allowed (v text PRIMARY KEY);
INSERT INTO public.edges_allowed VALUES ('a');
CREATE FUNCTION public.edges_is_allowed(x text) RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT EXISTS (SELECT 1 FROM public.edges_allowed WHERE v = x) $$;
CREATE DOMAIN public.edges_allowed_text AS text CHECK (public.edges_is_allowed(VALUE));
CREATE DOMAIN public.edges_coin AS int CHECK (random() < 0.5);
CREATE DOMAIN public.edges_coin2 AS public.edges_coin CHECK (VALUE > 0);
CREATE DOMAIN public.edges_pos AS int CHECK (VALUE > 0) NOT NULL;
SELECT q, sqlstate_of(format('SELECT ledger.create_projection(%L, %L)', 'public.dom', q)) AS sqlstate
  FROM (VALUES
    ($q$SELECT (e.data->>'k')::public.edges_allowed_text AS k, count(*) AS n FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, sum(e.version::int::public.edges_coin) AS s FROM ledger.events e GROUP BY 1$q$),
    ($q$SELECT e.stream, sum(e.version::int::public.edges_coin2) AS s FROM ledger.events e GROUP BY 1$q$)) v (q);
SELECT to_regclass('public.dom') IS NULL AS no_table,
       (SELECT count(*) FROM ledger.projections WHERE name = 'public.dom') AS registered;
SELECT ledger.create_projection('public.dom', $q$SELECT e.stream, sum(e.version::int::public.edges_coin2) AS s FROM ledger.events e GROUP BY 1$q$);
SELECT ledger.create_projection('public.dom_ok', $q$SELECT e.stream, sum(e.version::int::public.edges_pos) AS s FROM ledger.events e WHERE e.stream LIKE 'dom:%' GROUP BY 1$q$);
SELECT ledger.append('dom:1', 'D', '{}') AS version;
SELECT ledger.append('dom:1', 'D', '{}') AS version;
SELECT * FROM public.dom_ok;
SELECT ledger.verify_projection('public.dom_ok') AS verified;
SELECT ledger.drop_projection('public.dom_ok');

-- a projection's table renamed away fails appends (42P01); renamed back,
-- appends in the same session work again (the cached list is dropped on
-- any relation change while a table is missing)
SELECT ledger.create_projection('public.rc', 'SELECT e.type, count(*) AS n FROM ledger.events e WHERE e.type = ''Rc'' GROUP BY 1');
SELECT ledger.append('rc', 'Rc', '{}') AS version;
ALTER TABLE public.rc RENAME TO rc_away;
SELECT sqlstate_of($$SELECT ledger.append('rc', 'Rc', '{}')$$);
ALTER TABLE public.rc_away RENAME TO rc;
SELECT ledger.append('rc', 'Rc', '{}') AS version;
SELECT n FROM public.rc;
SELECT ledger.verify_projection('public.rc') AS verified;
SELECT ledger.drop_projection('public.rc');
