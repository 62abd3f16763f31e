-- Privileges.  An application role with exactly the grants README's
-- "Using it" section recommends can post and read, and can do nothing else:
-- no direct write to any ledger table or projection table, no trigger
-- switching, no restore or replica switches, no projections, no internal
-- functions.  A role granted create_projection still never runs code as the
-- extension's owner.  And objects planted in public (or pg_temp) to shadow
-- what the extension calls are never called by it.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
DROP ROLE IF EXISTS regress_ledger_squatter;
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['regress_ledger_app', 'regress_ledger_projector', 'regress_ledger_evil', 'regress_ledger_other'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('DROP OWNED BY %I CASCADE', r);
            EXECUTE format('DROP ROLE %I', r);
        END IF;
    END LOOP;
END
$$;
DROP SCHEMA IF EXISTS regress_priv CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

-- the SQLSTATE of a statement, or 'ok'
CREATE FUNCTION pg_temp.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- a ledger with a little of everything, set up by the owner
SELECT ledger.open_account('bank');
SELECT ledger.open_account('alice', '{debits_must_not_exceed_credits}');
SELECT ledger.transfer('seed-1', 'bank', 'alice', 100, 'USD');
SELECT ledger.transfer('seed-2', 'alice', 'bank', 25, 'USD');
SELECT ledger.append('order:1', 'OrderPlaced', '{"total": 5}');
SELECT ledger.save_snapshot('order:1', 1, '{"total": 5}');
SELECT ledger.create_projection('regress_priv_counts', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT ledger.create_projection('regress_priv_async', 'SELECT stream, max(version) AS v FROM ledger.events e GROUP BY stream', 'async');
SELECT ledger.snapshot_projection('regress_priv_counts') > 0 AS snapshotted;

------------------------------------------------------------------------------
-- 1. The application role, with README's grants, copied verbatim.
------------------------------------------------------------------------------
CREATE ROLE regress_ledger_app LOGIN;
GRANT USAGE ON SCHEMA ledger TO regress_ledger_app;
GRANT EXECUTE ON FUNCTION
    ledger.append(text, text, jsonb, bigint, jsonb),
    ledger.append_events(text, jsonb, bigint),
    ledger.stream_version(text),
    ledger.read_stream(text, bigint, integer),
    ledger.read_all(bigint, integer),
    ledger.register_currency(text, integer),
    ledger.open_account(text, text[], jsonb),
    ledger.close_account(text),
    ledger.transfer(text, text, text, numeric, text, jsonb),
    ledger.post_entry(text, jsonb, jsonb)
  TO regress_ledger_app;
GRANT SELECT ON ledger.events, ledger.balances, ledger.account_entries,
                ledger.currency_totals, ledger.accounts, ledger.currencies,
                ledger.projection_status TO regress_ledger_app;

-- it can post and read
SET ROLE regress_ledger_app;
SELECT ledger.register_currency('APP', 2);
SELECT ledger.open_account('app-a');
SELECT ledger.open_account('app-b', '{credits_must_not_exceed_debits}');
SELECT ledger.open_account('app-c');
SELECT ledger.transfer('app-t1', 'bank', 'app-a', 50, 'USD') > 0 AS posted;
SELECT ledger.post_entry('app-t2', '[{"account": "app-b", "side": "debit", "amount": 7.25, "currency": "APP"},
                                     {"account": "app-a", "side": "credit", "amount": 7.25, "currency": "APP"},
                                     {"account": "app-a", "side": "debit", "amount": 20, "currency": "USD"},
                                     {"account": "alice", "side": "credit", "amount": 20, "currency": "USD"}]') > 0 AS posted;
SELECT ledger.transfer('app-t1', 'bank', 'app-a', 50, 'USD') = (SELECT position FROM ledger.events WHERE stream = 'transfer:app-t1') AS idempotent;
SELECT ledger.close_account('app-c');
SELECT ledger.append('app-stream', 'Hello', '{"n": 1}');
SELECT ledger.append_events('app-stream', '[{"type": "Again", "data": {"n": 2}}]', 1);
SELECT ledger.stream_version('app-stream');
SELECT version, type, data FROM ledger.read_stream('app-stream');
SELECT position, stream, type FROM ledger.read_all(0, 3);
SELECT account, currency, debits_posted, credits_posted, balance FROM ledger.balances ORDER BY account, currency;
SELECT account, currency, side, amount, balance_after FROM ledger.account_entries
 WHERE account = 'app-a' ORDER BY position;
SELECT currency, debits, credits FROM ledger.currency_totals ORDER BY currency;
SELECT account, flags, status FROM ledger.accounts ORDER BY account;
SELECT code, scale FROM ledger.currencies WHERE code = 'APP';
RESET ROLE;
-- with an async projection registered, too
SELECT ledger.catch_up('regress_priv_async') > 0 AS caught_up;
SET ROLE regress_ledger_app;
SELECT name, kind, mode, state, lag_events FROM ledger.projection_status ORDER BY name;
RESET ROLE;

-- it cannot write, lock, switch off triggers or drop any ledger table, nor a
-- projection table; it reads only what it was granted
CREATE TEMP TABLE targets (t regclass);
INSERT INTO targets VALUES ('ledger.events'), ('ledger.balances'), ('ledger.account_entries'),
    ('ledger.accounts'), ('ledger.currencies'), ('ledger.balance_snapshots'),
    ('ledger.projections'), ('ledger.projection_snapshots'), ('ledger.stream_snapshots'),
    ('ledger.projector'), ('public.regress_priv_counts'), ('public.regress_priv_async');
GRANT SELECT ON targets TO PUBLIC;
SET ROLE regress_ledger_app;
SELECT t AS "table",
       pg_temp.sqlstate_of(format('SELECT * FROM %s LIMIT 1', t)) AS "select",
       pg_temp.sqlstate_of(format('INSERT INTO %s SELECT * FROM %s LIMIT 1', t, t)) AS "insert",
       pg_temp.sqlstate_of(format('UPDATE %s SET %I = %I', t, a.attname, a.attname)) AS "update",
       pg_temp.sqlstate_of(format('DELETE FROM %s', t)) AS "delete",
       pg_temp.sqlstate_of(format('TRUNCATE %s', t)) AS "truncate",
       pg_temp.sqlstate_of(format('LOCK TABLE %s IN EXCLUSIVE MODE', t)) AS "lock",
       pg_temp.sqlstate_of(format('ALTER TABLE %s DISABLE TRIGGER ALL', t)) AS "no triggers",
       pg_temp.sqlstate_of(format('DROP TABLE %s', t)) AS "drop"
  FROM targets JOIN pg_attribute a ON a.attrelid = t AND a.attnum = 1
 ORDER BY t::text;
-- the same, by hand, for the log
INSERT INTO ledger.events VALUES (1000, 'forged', 1, 'Forged', '{}', '{}', now(), '1');
\echo :LAST_ERROR_SQLSTATE
UPDATE ledger.events SET data = '{}';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ledger.events;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ledger.events;
\echo :LAST_ERROR_SQLSTATE
\copy ledger.events from '/dev/null'
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events DISABLE TRIGGER events_append_only_row;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.balances DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER ledger_projection_guard ON public.regress_priv_counts;
\echo :LAST_ERROR_SQLSTATE
-- nor flip the switches that let rows in
SET session_replication_role = replica;
\echo :LAST_ERROR_SQLSTATE
SET ledger_cqrs.restoring = on;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('ledger_cqrs.restoring', 'on', false);
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_ledger_app SET ledger_cqrs.restoring = on;
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION pg_temp.restoring() RETURNS int LANGUAGE sql SET ledger_cqrs.restoring = on AS 'SELECT 1';
\echo :LAST_ERROR_SQLSTATE
SHOW ledger_cqrs.restoring;
SHOW session_replication_role;
-- nor create or replace anything in the ledger schema
CREATE TABLE ledger.regress_mine (i int);
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION ledger.append(stream text) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint';
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION ledger.append(text, text, jsonb, bigint, jsonb) SECURITY INVOKER;
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION ledger.append(text, text, jsonb, bigint, jsonb) SET search_path = public;
\echo :LAST_ERROR_SQLSTATE
-- nor create a projection (create_projection is not among the grants), nor
-- call any function that was not granted, the internal ones included
SELECT ledger.create_projection('regress_app_p', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
SELECT call, pg_temp.sqlstate_of(call) AS sqlstate FROM (VALUES
    ('SELECT ledger.create_projection(''regress_app_p'', ''SELECT type, count(*) AS n FROM ledger.events e GROUP BY type'', ''async'')'),
    ('SELECT ledger.drop_projection(''regress_priv_counts'')'),
    ('SELECT ledger.verify_projection(''ledger.balances'')'),
    ('SELECT ledger.rebuild_projection(''ledger.balances'')'),
    ('SELECT ledger.catch_up()'),
    ('SELECT ledger.snapshot_projection(''regress_priv_counts'')'),
    ('SELECT ledger.save_snapshot(''order:1'', 1, ''{}'')'),
    ('SELECT * FROM ledger.load_snapshot(''order:1'')'),
    ('SELECT ledger.balance_at(''alice'', ''USD'', 100::bigint)'),
    ('SELECT ledger.balance_at(''alice'', ''USD'', now())'),
    ('SELECT ledger.balance_at(''alice'', ''USD'', ''2026-01-31'')'),
    ('SELECT ledger.balance_at(''alice'', ''USD'', NULL)'),
    ('SELECT ledger.start_projector()'),
    ('SELECT ledger.stop_projector()'),
    ('CALL ledger.wait_for_projection(''regress_priv_async'')'),
    ('SELECT ledger.events_guard()'),
    ('SELECT ledger.read_model_guard()'),
    ('SELECT ledger.projection_guard()'),
    ('SELECT ledger.projections_restore()'),
    ('SELECT ledger.events_replicated()'),
    ('SELECT nextval(''ledger.events_position_seq'')'),
    ('SELECT setval(''ledger.events_position_seq'', 1)')
  ) v(call);
RESET ROLE;
SELECT ledger.verify_projection('ledger.balances') AND ledger.verify_projection('regress_priv_counts') AS consistent;

------------------------------------------------------------------------------
-- 2. create_projection: usable once granted, and still never a way to run
--    code as the extension's owner.
------------------------------------------------------------------------------
CREATE ROLE regress_ledger_projector LOGIN;
CREATE SCHEMA regress_priv AUTHORIZATION regress_ledger_projector;
GRANT USAGE ON SCHEMA ledger TO regress_ledger_projector;
GRANT EXECUTE ON FUNCTION
    ledger.append(text, text, jsonb, bigint, jsonb),
    ledger.create_projection(text, text, text),
    ledger.drop_projection(text),
    ledger.verify_projection(text)
  TO regress_ledger_projector;
GRANT SELECT ON ledger.events, ledger.projection_status TO regress_ledger_projector;
-- EXECUTE, SELECT on the log and CREATE on a schema are what it needs
SET ROLE regress_ledger_projector;
SELECT ledger.create_projection('regress_priv.counts', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
SELECT ledger.verify_projection('regress_priv.counts');
SELECT ledger.drop_projection('regress_priv.counts');
-- no CREATE on the schema: the caller's rights decide (42501)
SELECT ledger.create_projection('public.regress_projector_p', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- (today create_projection also needs SELECT on ledger.projections; grant
-- it so that the attempts below are real attempts)
GRANT SELECT ON ledger.projections TO regress_ledger_projector;

-- a function declared IMMUTABLE that calls a volatile one, used in a
-- projection: it must never run as the extension's owner (who would then
-- make its author a superuser)
SET ROLE regress_ledger_projector;
CREATE TABLE regress_priv.seen (usr text);
GRANT INSERT ON regress_priv.seen TO PUBLIC;
CREATE FUNCTION regress_priv.grab() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO regress_priv.seen VALUES (current_user);
    IF current_user <> 'regress_ledger_projector' THEN
        EXECUTE 'ALTER ROLE regress_ledger_projector SUPERUSER';
    END IF;
END
$$;
CREATE FUNCTION regress_priv.pure(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM regress_priv.grab();
    RETURN t;
END
$$;
SELECT pg_temp.sqlstate_of($$SELECT ledger.create_projection('regress_priv.by_pure',
    'SELECT regress_priv.pure(type) AS k, count(*) AS n FROM ledger.events e GROUP BY 1')$$)
    IN ('ok', '0A000', '42501') AS created_or_refused;
RESET ROLE;
-- an append by someone else folds every inline projection
SET ROLE regress_ledger_app;
SELECT ledger.append('app-stream', 'AfterPure', '{}');
RESET ROLE;
SELECT rolsuper AS projector_is_superuser FROM pg_roles WHERE rolname = 'regress_ledger_projector';
SELECT count(*) FILTER (WHERE usr <> 'regress_ledger_projector') AS calls_as_another_role FROM regress_priv.seen;
SELECT count(*) >= 0 AS cleaned_up FROM (SELECT ledger.drop_projection(name) FROM ledger.projections WHERE name = 'regress_priv.by_pure') d;
ALTER ROLE regress_ledger_projector NOSUPERUSER;

-- a definition that lexes differently under standard_conforming_strings =
-- off: folded in a session with that setting, the text after the first
-- quote would become statements of their own, run as the owner
SET ROLE regress_ledger_projector;
CREATE TABLE regress_priv.sink (type int PRIMARY KEY, n int);
SELECT pg_temp.sqlstate_of($q$SELECT ledger.create_projection('regress_priv.relex', $p$SELECT type, count(*) AS n FROM ledger.events e WHERE type <> '\' AND type <> 'GROUP BY type) AS d (type, n) ON CONFLICT DO NOTHING; ALTER ROLE regress_ledger_projector SUPERUSER; INSERT INTO regress_priv.sink AS t SELECT DISTINCT 1, 2 FROM pg_catalog.ts_debug(' GROUP BY type --'
$p$)$q$) IN ('ok', '0A000', '42601') AS created_or_refused;
SELECT ledger.append('projector-stream', 'Load', '{}');
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SET client_min_messages = warning;
ALTER TABLE IF EXISTS regress_priv.relex SET (fillfactor = 90);
RESET client_min_messages;
SELECT ledger.append('projector-stream', 'Load', '{}');
RESET escape_string_warning;
RESET standard_conforming_strings;
RESET ROLE;
SELECT rolsuper AS projector_is_superuser FROM pg_roles WHERE rolname = 'regress_ledger_projector';
SELECT count(*) AS sink_rows FROM regress_priv.sink;
ALTER ROLE regress_ledger_projector NOSUPERUSER;
SELECT count(*) >= 0 AS cleaned_up FROM (SELECT ledger.drop_projection(name) FROM ledger.projections WHERE name LIKE 'regress_priv.%') d;

-- a trigger the owner puts on its projection table: whoever rebuilds,
-- refills or snapshots the projection, it runs as the table's owner
SET ROLE regress_ledger_projector;
TRUNCATE regress_priv.seen;
SELECT ledger.create_projection('regress_priv.trapped', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
CREATE FUNCTION regress_priv.grab_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_priv.grab();
    RETURN NULL;
END
$$;
CREATE TRIGGER trap AFTER INSERT OR DELETE ON regress_priv.trapped
    FOR EACH STATEMENT EXECUTE FUNCTION regress_priv.grab_trigger();
-- the owner may switch its own triggers, not the extension's guard (42501)
ALTER TABLE regress_priv.trapped DISABLE TRIGGER trap;
ALTER TABLE regress_priv.trapped ENABLE TRIGGER trap;
ALTER TABLE regress_priv.trapped DISABLE TRIGGER ledger_projection_guard;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE regress_priv.trapped DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER ledger_projection_guard ON regress_priv.trapped;
\echo :LAST_ERROR_SQLSTATE
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'regress_priv.trapped'::regclass ORDER BY tgname;
RESET ROLE;
SELECT ledger.append('projector-stream', 'Trapped', '{}');
SELECT ledger.rebuild_projection('regress_priv.trapped') > 0 AS rebuilt;
SELECT ledger.snapshot_projection('regress_priv.trapped') > 0 AS snapshotted;
SELECT rolsuper AS projector_is_superuser FROM pg_roles WHERE rolname = 'regress_ledger_projector';
SELECT count(*) > 0 AS trigger_ran,
       count(*) FILTER (WHERE usr <> 'regress_ledger_projector') AS calls_as_another_role
  FROM regress_priv.seen;
ALTER ROLE regress_ledger_projector NOSUPERUSER;
SELECT ledger.verify_projection('regress_priv.trapped');
SELECT ledger.drop_projection('regress_priv.trapped');

-- another role granted the same functions may act only on what it owns:
-- not drop or rebuild regress_ledger_projector's projection (42501), not
-- verify it without SELECT on its table (42501); nothing changes
CREATE ROLE regress_ledger_other LOGIN;
GRANT USAGE ON SCHEMA ledger TO regress_ledger_other;
GRANT EXECUTE ON FUNCTION
    ledger.drop_projection(text),
    ledger.verify_projection(text),
    ledger.rebuild_projection(text)
  TO regress_ledger_other;
SET ROLE regress_ledger_projector;
SELECT ledger.create_projection('regress_priv.owned', 'SELECT type, count(*) AS n FROM ledger.events e GROUP BY type');
RESET ROLE;
SELECT count(*) AS owned_rows_before FROM regress_priv.owned;
SET ROLE regress_ledger_other;
SELECT ledger.drop_projection('regress_priv.owned');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.rebuild_projection('regress_priv.owned');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.verify_projection('regress_priv.owned');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT to_regclass('regress_priv.owned') IS NOT NULL AS table_kept,
       (SELECT count(*) FROM ledger.projections WHERE name = 'regress_priv.owned') AS registered,
       (SELECT count(*) FROM regress_priv.owned) AS owned_rows_after;
-- SELECT on the table is what verify needs; the owner's role, what drop needs
SET ROLE regress_ledger_projector;
GRANT USAGE ON SCHEMA regress_priv TO regress_ledger_other;
GRANT SELECT ON regress_priv.owned TO regress_ledger_other;
RESET ROLE;
SET ROLE regress_ledger_other;
SELECT ledger.verify_projection('regress_priv.owned');
SELECT ledger.drop_projection('regress_priv.owned');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT regress_ledger_projector TO regress_ledger_other;
SET ROLE regress_ledger_other;
SELECT ledger.rebuild_projection('regress_priv.owned') > 0 AS rebuilt_by_member;
SELECT ledger.drop_projection('regress_priv.owned');
RESET ROLE;
SELECT to_regclass('regress_priv.owned') IS NULL AS dropped_by_member;
REVOKE regress_ledger_projector FROM regress_ledger_other;

------------------------------------------------------------------------------
-- 3. Search-path attacks.  A role plants, in public, functions, operators
--    and aggregates with the names and signatures the extension uses, and
--    tables in pg_temp with the names of the ledger's, puts them first in
--    its search_path, then calls every command.  None of them is called,
--    and every result is right.
------------------------------------------------------------------------------
CREATE ROLE regress_ledger_evil LOGIN;
GRANT USAGE ON SCHEMA ledger TO regress_ledger_evil;
GRANT CREATE ON SCHEMA public TO regress_ledger_evil;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ledger TO regress_ledger_evil;
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA ledger TO regress_ledger_evil;
GRANT SELECT ON ALL TABLES IN SCHEMA ledger TO regress_ledger_evil;
-- (verify_projection needs SELECT on the projection's table)
GRANT SELECT ON public.regress_priv_counts TO regress_ledger_evil;
SET ROLE regress_ledger_evil;
CREATE TABLE public.regress_calls (fn text, usr text);
GRANT SELECT, INSERT ON public.regress_calls TO PUBLIC;
CREATE FUNCTION public.regress_note(fn text) RETURNS void LANGUAGE sql
    SET search_path = pg_catalog
    AS $$ INSERT INTO public.regress_calls VALUES (fn, current_user) $$;
-- functions: record the call, then do the real thing
CREATE FUNCTION public.jsonb_array_elements(j jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('jsonb_array_elements'); RETURN QUERY SELECT pg_catalog.jsonb_array_elements(j); END $$;
CREATE FUNCTION public.jsonb_array_elements_text(j jsonb) RETURNS SETOF text LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('jsonb_array_elements_text'); RETURN QUERY SELECT pg_catalog.jsonb_array_elements_text(j); END $$;
CREATE FUNCTION public.jsonb_populate_recordset(r anyelement, j jsonb) RETURNS SETOF anyelement LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('jsonb_populate_recordset'); RETURN QUERY SELECT * FROM pg_catalog.jsonb_populate_recordset(r, j); END $$;
CREATE FUNCTION public.to_jsonb(v anyelement) RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('to_jsonb'); RETURN pg_catalog.to_jsonb(v); END $$;
CREATE FUNCTION public.numeric_add(a numeric, b numeric) RETURNS numeric LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('numeric_add'); RETURN pg_catalog.numeric_add(a, b); END $$;
CREATE FUNCTION public.numeric_sub(a numeric, b numeric) RETURNS numeric LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('numeric_sub'); RETURN pg_catalog.numeric_sub(a, b); END $$;
CREATE FUNCTION public.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('texteq'); RETURN pg_catalog.texteq(a, b); END $$;
CREATE FUNCTION public.int8eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('int8eq'); RETURN pg_catalog.int8eq(a, b); END $$;
CREATE FUNCTION public.int8lt(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('int8lt'); RETURN pg_catalog.int8lt(a, b); END $$;
CREATE FUNCTION public.textcat(a text, b text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('textcat'); RETURN pg_catalog.textcat(a, b); END $$;
CREATE FUNCTION public.jsonb_object_field(j jsonb, k text) RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('jsonb_object_field'); RETURN pg_catalog.jsonb_object_field(j, k); END $$;
CREATE FUNCTION public.jsonb_object_field_text(j jsonb, k text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('jsonb_object_field_text'); RETURN pg_catalog.jsonb_object_field_text(j, k); END $$;
CREATE FUNCTION public.coalesce(a numeric, b numeric) RETURNS numeric LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('coalesce'); RETURN CASE WHEN a IS NULL THEN b ELSE a END; END $$;
CREATE FUNCTION public.lower(t text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('lower'); RETURN pg_catalog.lower(t); END $$;
CREATE FUNCTION public.md5(t text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('md5'); RETURN pg_catalog.md5(t); END $$;
CREATE FUNCTION public.format(f text, v text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('format'); RETURN pg_catalog.format(f, v); END $$;
CREATE FUNCTION public.quote_ident(t text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('quote_ident'); RETURN pg_catalog.quote_ident(t); END $$;
CREATE FUNCTION public.pg_advisory_xact_lock(k bigint) RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('pg_advisory_xact_lock'); PERFORM pg_catalog.pg_advisory_xact_lock(k); END $$;
-- functions that fail loudly
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'public.now() was called'; END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'public.clock_timestamp() was called'; END $$;
CREATE FUNCTION public.nextval(s regclass) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'public.nextval() was called'; END $$;
CREATE FUNCTION public.xid8cmp(a xid8, b xid8) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'public.xid8cmp() was called'; END $$;
-- operators with the exact signatures of pg_catalog's
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.texteq);
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.int8eq);
CREATE OPERATOR public.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.int8lt);
CREATE OPERATOR public.+ (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.numeric_add);
CREATE OPERATOR public.- (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.numeric_sub);
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.textcat);
CREATE OPERATOR public.-> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.jsonb_object_field);
CREATE OPERATOR public.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.jsonb_object_field_text);
-- aggregates
CREATE FUNCTION public.regress_sum(s numeric, v numeric) RETURNS numeric LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('sum'); RETURN CASE WHEN s IS NULL THEN v WHEN v IS NULL THEN s ELSE pg_catalog.numeric_add(s, v) END; END $$;
CREATE AGGREGATE public.sum(numeric) (SFUNC = public.regress_sum, STYPE = numeric);
CREATE FUNCTION public.regress_count(s bigint) RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('count'); RETURN pg_catalog.int8inc(s); END $$;
CREATE AGGREGATE public.count(*) (SFUNC = public.regress_count, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION public.regress_max(s bigint, v bigint) RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_note('max'); RETURN pg_catalog.int8larger(s, v); END $$;
CREATE AGGREGATE public.max(bigint) (SFUNC = public.regress_max, STYPE = bigint);
CREATE AGGREGATE public.min(bigint) (SFUNC = public.regress_max, STYPE = bigint);
-- tables named like the ledger's, in pg_temp (first in the search_path)
CREATE TEMP TABLE events (LIKE ledger.events);
CREATE TEMP TABLE balances (LIKE ledger.balances);
CREATE TEMP TABLE accounts (LIKE ledger.accounts);
CREATE TEMP TABLE projections (LIKE ledger.projections);
SET search_path = pg_temp, public, pg_catalog;

-- every command, with literal arguments only (no operator of its own)
SELECT ledger.register_currency('EVL', 2);
SELECT ledger.open_account('evil-a');
SELECT ledger.open_account('evil-b', '{debits_must_not_exceed_credits}', '{"k": "v"}');
SELECT ledger.open_account('evil-c');
SELECT ledger.transfer('evil-t1', 'evil-a', 'evil-b', 10.50, 'USD') IS NOT NULL AS posted;
SELECT ledger.transfer('evil-t1', 'evil-a', 'evil-b', 10.50, 'USD') IS NOT NULL AS retried;
SELECT ledger.post_entry('evil-t2', '[{"account": "evil-a", "side": "debit", "amount": 3, "currency": "EVL"},
                                      {"account": "evil-b", "side": "credit", "amount": 3, "currency": "EVL"},
                                      {"account": "evil-b", "side": "debit", "amount": 0.50, "currency": "USD"},
                                      {"account": "evil-a", "side": "credit", "amount": 0.50, "currency": "USD"}]') IS NOT NULL AS posted;
SELECT ledger.transfer('evil-t3', 'evil-b', 'evil-a', 100, 'USD');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT ledger.transfer('evil-t1', 'evil-a', 'evil-b', 11, 'USD');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT ledger.close_account('evil-c');
SELECT ledger.close_account('evil-b');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('evil-stream', 'Evil', '{"n": 1}');
SELECT ledger.append_events('evil-stream', '[{"type": "Evil", "data": {"n": 2}}, {"type": "Evil"}]', 1);
SELECT ledger.append('evil-stream', 'Evil', '{}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.stream_version('evil-stream');
SELECT version, type, data FROM ledger.read_stream('evil-stream', 2);
SELECT position, stream, type FROM ledger.read_all(0, 3);
SELECT ledger.balance_at('evil-b', 'USD', 9223372036854775807);
SELECT ledger.balance_at('evil-b', 'USD', 'infinity'::timestamptz);
SELECT ledger.balance_at('evil-b', 'USD', 0);
SELECT ledger.save_snapshot('evil-stream', 2, '{"total": 3}');
SELECT version, state FROM ledger.load_snapshot('evil-stream');
SELECT ledger.create_projection('public.regress_evil_totals',
    'SELECT l->>''currency'' AS currency, sum((l->>''amount'')::numeric) AS total, count(*) AS legs
       FROM ledger.events e, LATERAL jsonb_array_elements(e.data->''legs'') l
      WHERE e.type = ''TransferPosted'' GROUP BY 1');
SELECT ledger.create_projection('public.regress_evil_async',
    'SELECT stream, max(version) AS v, min(position) AS first FROM ledger.events e WHERE stream || '''' = stream GROUP BY stream', 'async');
SELECT ledger.append('evil-stream', 'Evil', '{"n": 4}');
SELECT ledger.catch_up('public.regress_evil_async');
SELECT ledger.catch_up();
CALL ledger.wait_for_projection('public.regress_evil_async');
SELECT ledger.snapshot_projection('public.regress_evil_totals') IS NOT NULL AS snapshotted;
SELECT ledger.rebuild_projection('public.regress_evil_totals');
SELECT ledger.rebuild_projection('public.regress_evil_async');
SELECT ledger.rebuild_projection('ledger.balances');
SELECT ledger.rebuild_projection('ledger.accounts');
SELECT ledger.verify_projection('ledger.currencies'), ledger.verify_projection('ledger.accounts'),
       ledger.verify_projection('ledger.balances'), ledger.verify_projection('ledger.account_entries'),
       ledger.verify_projection('ledger.currency_totals'), ledger.verify_projection('public.regress_evil_totals'),
       ledger.verify_projection('public.regress_evil_async'), ledger.verify_projection('regress_priv_counts');
SELECT currency, total, legs FROM public.regress_evil_totals ORDER BY currency;
SELECT ledger.drop_projection('public.regress_evil_async');
RESET search_path;
RESET ROLE;

-- nothing planted was called, by anyone
SELECT fn, usr, count(*) FROM public.regress_calls GROUP BY fn, usr ORDER BY fn, usr;
-- and the results are right
SELECT account, currency, debits_posted, credits_posted, balance FROM ledger.balances
 WHERE account LIKE 'evil-%' ORDER BY account, currency;
SELECT account, flags, status, metadata FROM ledger.accounts WHERE account LIKE 'evil-%' ORDER BY account;
SELECT stream, count(*) FROM ledger.events WHERE stream LIKE 'transfer:evil-%' GROUP BY stream ORDER BY stream;
SELECT currency, total, legs,
       total = (SELECT sum((l->>'amount')::numeric) FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
                 WHERE e.type = 'TransferPosted' AND l->>'currency' = t.currency) AS right_total
  FROM public.regress_evil_totals t ORDER BY currency;
SELECT currency, debits = credits AS balanced FROM ledger.currency_totals ORDER BY currency;
SELECT name, ledger.verify_projection(name) FROM ledger.projection_status ORDER BY name;

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
SELECT ledger.drop_projection(name) FROM ledger.projections WHERE kind = 'user' ORDER BY name;
SET client_min_messages = warning;
DROP OWNED BY regress_ledger_app, regress_ledger_projector, regress_ledger_evil CASCADE;
REVOKE CREATE ON SCHEMA public FROM regress_ledger_evil;
DROP SCHEMA IF EXISTS regress_priv CASCADE;
DROP ROLE regress_ledger_app;
DROP ROLE regress_ledger_projector;
DROP ROLE regress_ledger_evil;
RESET client_min_messages;

------------------------------------------------------------------------------
-- A ledger schema owned by another role is refused (42501): its owner could
-- drop the log with it, or plant functions that shadow the extension's
------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP EXTENSION ledger_cqrs CASCADE;
DROP SCHEMA ledger;     -- CREATE EXTENSION made it, DROP EXTENSION leaves it
DROP ROLE IF EXISTS regress_ledger_squatter;
RESET client_min_messages;
CREATE ROLE regress_ledger_squatter;
CREATE SCHEMA ledger AUTHORIZATION regress_ledger_squatter;
CREATE EXTENSION ledger_cqrs;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'ledger_cqrs';
SELECT count(*) AS objects_in_ledger FROM pg_class WHERE relnamespace = 'ledger'::regnamespace;
-- handed over, it is adopted
ALTER SCHEMA ledger OWNER TO CURRENT_USER;
CREATE EXTENSION ledger_cqrs;
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'ledger_cqrs';
DROP ROLE regress_ledger_squatter;
