-- ledger.events is append-only for every role: the superuser, an ordinary
-- role, and under session_replication_role = replica.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
DROP ROLE IF EXISTS regress_ledger_app;
DROP ROLE IF EXISTS regress_ledger_nobody;
DROP SCHEMA IF EXISTS regress_guard, regress_guard_away CASCADE;
DROP ROLE IF EXISTS regress_ledger_owner;
RESET client_min_messages;

SELECT ledger.append('s', 'Created', '{"n": 1}');
SELECT ledger.append('s', 'Changed', '{"n": 2}');
CREATE TEMP TABLE before AS SELECT * FROM ledger.events;
GRANT SELECT ON before TO PUBLIC;
CREATE TEMP VIEW unchanged AS
SELECT (SELECT count(*) FROM ledger.events) = (SELECT count(*) FROM before)
   AND NOT EXISTS (SELECT * FROM ledger.events EXCEPT SELECT * FROM before) AS unchanged;

-- as superuser (the owner)
UPDATE ledger.events SET data = '{"n": 99}' WHERE position = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE ledger.events SET data = data WHERE false;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ledger.events WHERE position = 2;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ledger.events;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ledger.events;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ledger.events CASCADE;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ledger.events VALUES (100, 's', 3, 'Forged', '{}', '{}', now(), '1');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ledger.events SELECT * FROM ledger.events WHERE false;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ledger.events SELECT position + 100, stream, version + 2, type, data,
       metadata, recorded_at, tx_order FROM ledger.events;
\echo :LAST_ERROR_SQLSTATE
COPY ledger.events FROM stdin;
101	s	3	Forged	{}	{}	2026-01-01 00:00:00+00	1
\.
\echo :LAST_ERROR_SQLSTATE
MERGE INTO ledger.events e USING (SELECT 1 AS position) s ON e.position = s.position
  WHEN MATCHED THEN UPDATE SET type = 'Forged';
\echo :LAST_ERROR_SQLSTATE
MERGE INTO ledger.events e USING (SELECT 1 AS position) s ON e.position = s.position
  WHEN MATCHED THEN DELETE;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- the restore switch is for superusers only, and never allows UPDATE/DELETE
SET ledger_cqrs.restoring = on;
UPDATE ledger.events SET type = 'Forged';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ledger.events;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ledger.events;
\echo :LAST_ERROR_SQLSTATE
-- it does let a superuser load rows, as pg_restore does; they get this
-- database's tx_order, not the one in the dump
BEGIN;
COPY ledger.events FROM stdin;
101	restored	1	Restored	{}	{}	2026-01-01 00:00:00+00	1
\.
SELECT stream, tx_order = pg_current_xact_id() AS restamped FROM ledger.events WHERE position = 101;
ROLLBACK;
RESET ledger_cqrs.restoring;
SELECT * FROM unchanged;

-- under the replica role, where ordinary triggers do not fire
SET session_replication_role = replica;
UPDATE ledger.events SET data = '{}';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ledger.events;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ledger.events;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ledger.events VALUES (100, 's', 3, 'Forged', '{}', '{}', now(), '1');
\echo :LAST_ERROR_SQLSTATE
COPY ledger.events FROM stdin;
101	s	3	Forged	{}	{}	2026-01-01 00:00:00+00	1
\.
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
SELECT * FROM unchanged;

-- the guard triggers are ENABLE ALWAYS
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'ledger.events'::regclass AND NOT tgisinternal ORDER BY tgname;

-- ... and stay so: the superuser cannot switch them off, make them skip
-- replica (or origin) sessions, or drop them, nor rewrite the log's columns
-- (42501), not even in one statement with an allowed change
ALTER TABLE ledger.events DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events DISABLE TRIGGER USER;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events DISABLE TRIGGER events_append_only_row;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events ENABLE TRIGGER events_append_only_stmt;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events ENABLE REPLICA TRIGGER events_append_only_row;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events ENABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events ALTER COLUMN data SET STATISTICS 200, DISABLE TRIGGER events_replicated;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER events_append_only_row ON ledger.events;
\echo :LAST_ERROR_SQLSTATE
SET search_path = ledger, public;
DROP TRIGGER IF EXISTS events_append_only_stmt ON events;
\echo :LAST_ERROR_SQLSTATE
RESET search_path;
ALTER TABLE ledger.events ALTER COLUMN data TYPE jsonb USING '{}'::jsonb;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events DROP COLUMN metadata;
\echo :LAST_ERROR_SQLSTATE
-- nor may the columns of the extension's other tables change: its C code
-- writes their rows column by column (42501)
ALTER TABLE ledger.events ADD COLUMN note text;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.balances ADD COLUMN note text DEFAULT 'x';
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.account_entries DROP COLUMN side;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.accounts ALTER COLUMN metadata TYPE json;
\echo :LAST_ERROR_SQLSTATE
SELECT c.relname, count(*) AS columns FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'ledger'::regnamespace AND c.relname IN ('events', 'balances', 'account_entries', 'accounts')
   AND a.attnum > 0 AND NOT a.attisdropped GROUP BY 1 ORDER BY 1;
-- nor replaced, by a trigger of the same name (42501)
CREATE FUNCTION pg_temp.noop_guard() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE OR REPLACE TRIGGER events_append_only_row BEFORE UPDATE ON ledger.events
    FOR EACH ROW EXECUTE FUNCTION pg_temp.noop_guard();
\echo :LAST_ERROR_SQLSTATE
-- nor may a guarded table join an inheritance tree or a partitioned table,
-- whose statements would pass its statement-level guards, or get children
-- whose rows a scan of it would show (42501)
CREATE TABLE pg_temp.fake_events () INHERITS (ledger.events);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE pg_temp.balance_parent (LIKE ledger.balances);
ALTER TABLE ledger.balances INHERIT pg_temp.balance_parent;
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE pg_temp.parted (code text, scale int, registered_at timestamptz, position bigint) PARTITION BY LIST (code);
ALTER TABLE pg_temp.parted ATTACH PARTITION ledger.currencies DEFAULT;
\echo :LAST_ERROR_SQLSTATE
SELECT tgname, tgenabled, tgfoid::regproc FROM pg_trigger
 WHERE tgrelid = 'ledger.events'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT count(*) AS children FROM pg_inherits
 WHERE inhparent IN ('ledger.events'::regclass, 'ledger.balances'::regclass, 'ledger.currencies'::regclass)
    OR inhrelid IN ('ledger.events'::regclass, 'ledger.balances'::regclass, 'ledger.currencies'::regclass);
-- nor may another table, foreign or not, inherit from a guarded one: its
-- rows would show in the log, unguarded (42501); the guard checks the
-- parent a child names, not only the table altered
CREATE TABLE pg_temp.orphan_events (LIKE ledger.events INCLUDING CONSTRAINTS);
ALTER TABLE pg_temp.orphan_events INHERIT ledger.events;
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE pg_temp.orphan_balances (LIKE ledger.balances);
ALTER TABLE pg_temp.orphan_balances INHERIT ledger.balances;
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN DATA WRAPPER regress_ledger_dummy;
CREATE SERVER regress_ledger_server FOREIGN DATA WRAPPER regress_ledger_dummy;
CREATE FOREIGN TABLE public.fake_events_ft () INHERITS (ledger.events) SERVER regress_ledger_server;
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE public.events_ft (
    position bigint NOT NULL, stream text COLLATE "C" NOT NULL, version bigint NOT NULL,
    type text COLLATE "C" NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL, tx_order xid8 NOT NULL,
    CONSTRAINT events_stream_check CHECK (octet_length(stream) BETWEEN 1 AND 255),
    CONSTRAINT events_type_check CHECK (octet_length(type) BETWEEN 1 AND 255),
    CONSTRAINT events_version_check CHECK (version > 0)) SERVER regress_ledger_server;
ALTER FOREIGN TABLE public.events_ft INHERIT ledger.events;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.events_ft INHERIT ledger.events;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS children FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
 WHERE c.relnamespace = 'ledger'::regnamespace;
SELECT to_regclass('public.fake_events_ft') IS NULL AS no_fake_table;
DROP FOREIGN TABLE public.events_ft;
DROP SERVER regress_ledger_server;
DROP FOREIGN DATA WRAPPER regress_ledger_dummy;
-- nor turn unlogged, which a crash would empty (42501), even in one
-- statement with an allowed change; SET LOGGED is allowed
ALTER TABLE ledger.events SET UNLOGGED;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events ALTER COLUMN data SET STATISTICS 300, SET UNLOGGED;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.balances SET UNLOGGED;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.projections SET UNLOGGED;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events SET LOGGED;
SELECT count(*) AS unlogged FROM pg_class
 WHERE relnamespace = 'ledger'::regnamespace AND relpersistence <> 'p';
-- nor get a rule, which could turn a refused write into a silent no-op
-- (42501)
CREATE RULE forget_updates AS ON UPDATE TO ledger.events DO INSTEAD NOTHING;
\echo :LAST_ERROR_SQLSTATE
CREATE OR REPLACE RULE forget_deletes AS ON DELETE TO ledger.events DO INSTEAD NOTHING;
\echo :LAST_ERROR_SQLSTATE
CREATE RULE keep_balances AS ON DELETE TO ledger.balances DO INSTEAD NOTHING;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rules FROM pg_rules WHERE schemaname = 'ledger';
UPDATE ledger.events SET type = 'Forged';
\echo :LAST_ERROR_SQLSTATE
-- nor be renamed or moved, nor have its columns or indexes renamed: the C
-- code finds the extension's relations by name in schema ledger (42501)
ALTER TABLE ledger.events RENAME TO events_moved;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events SET SCHEMA public;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events RENAME COLUMN data TO payload;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events RENAME CONSTRAINT events_pkey TO events_key;
\echo :LAST_ERROR_SQLSTATE
ALTER INDEX ledger.events_pkey RENAME TO events_key;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events_tx_order_idx RENAME TO events_order;
\echo :LAST_ERROR_SQLSTATE
ALTER SEQUENCE ledger.events_position_seq RENAME TO events_seq;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.balances RENAME COLUMN balance TO amount;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.projections SET SCHEMA public;
\echo :LAST_ERROR_SQLSTATE
ALTER VIEW ledger.currency_totals RENAME TO totals;
\echo :LAST_ERROR_SQLSTATE
SELECT c.relname, c.relkind FROM pg_class c
 WHERE c.relnamespace = 'ledger'::regnamespace AND c.relkind <> 't'
   AND (c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'ledger.events'::regclass)
        OR c.relname IN ('events', 'events_position_seq', 'balances', 'projections', 'currency_totals'))
 ORDER BY 1;
SELECT string_agg(attname, ', ' ORDER BY attnum) AS events_columns FROM pg_attribute
 WHERE attrelid = 'ledger.events'::regclass AND attnum > 0;
SELECT attname FROM pg_attribute WHERE attrelid = 'ledger.balances'::regclass AND attname = 'balance';
-- (ordinary tables are unaffected)
CREATE TABLE pg_temp.ordinary_parent (x int);
CREATE TABLE pg_temp.ordinary_child () INHERITS (pg_temp.ordinary_parent);
CREATE OR REPLACE TRIGGER mine BEFORE INSERT ON pg_temp.ordinary_child FOR EACH ROW EXECUTE FUNCTION pg_temp.noop_guard();
CREATE RULE mine AS ON UPDATE TO pg_temp.ordinary_child DO INSTEAD NOTHING;
ALTER TABLE pg_temp.ordinary_parent RENAME COLUMN x TO y;
ALTER TABLE pg_temp.ordinary_child RENAME TO ordinary_renamed;
CREATE TABLE pg_temp.ordinary_orphan (y int);
ALTER TABLE pg_temp.ordinary_orphan INHERIT pg_temp.ordinary_renamed;
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'ledger.events'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT attstattarget FROM pg_attribute WHERE attrelid = 'ledger.events'::regclass AND attname = 'data';
SELECT * FROM unchanged;
-- ENABLE ALWAYS, and the rest of ALTER TABLE, are allowed
ALTER TABLE ledger.events ENABLE ALWAYS TRIGGER events_append_only_row;
ALTER TABLE ledger.events ALTER COLUMN data SET STATISTICS 200;
ALTER TABLE ledger.events ALTER COLUMN data SET STATISTICS -1;
-- so are triggers of one's own on the log, and dropping them
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER mine AFTER INSERT ON ledger.events FOR EACH ROW EXECUTE FUNCTION pg_temp.noop();
ALTER TABLE ledger.events DISABLE TRIGGER mine;
DROP TRIGGER mine ON ledger.events;
-- a superuser can still take the guard itself away first: it stops
-- mistakes, not a determined superuser
ALTER EVENT TRIGGER ledger_guard_triggers DISABLE;
ALTER TABLE ledger.events DISABLE TRIGGER events_append_only_row;
ALTER TABLE ledger.events ENABLE ALWAYS TRIGGER events_append_only_row;
ALTER EVENT TRIGGER ledger_guard_triggers ENABLE ALWAYS;
SELECT evtname, evtevent, evtenabled, evttags FROM pg_event_trigger ORDER BY evtname;

-- nobody but the owner holds INSERT, UPDATE, DELETE or TRUNCATE on the log
SELECT grantee, privilege_type FROM information_schema.role_table_grants
 WHERE table_schema = 'ledger' AND table_name = 'events'
   AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
   AND grantee <> (SELECT rolname FROM pg_roles r JOIN pg_class c ON c.relowner = r.oid
                    WHERE c.oid = 'ledger.events'::regclass);
-- EXECUTE on the functions is not granted to PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
       p.prosecdef AS security_definer, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'ledger'::regnamespace
   AND p.proname IN ('append', 'append_events', 'stream_version', 'read_stream', 'read_all')
 ORDER BY p.proname;

-- an ordinary role that may append and read through the functions only
CREATE ROLE regress_ledger_app LOGIN;
CREATE ROLE regress_ledger_nobody LOGIN;
GRANT USAGE ON SCHEMA ledger TO regress_ledger_app, regress_ledger_nobody;
GRANT SELECT ON ledger.events TO regress_ledger_app;
GRANT EXECUTE ON FUNCTION ledger.append(text, text, jsonb, bigint, jsonb),
                          ledger.append_events(text, jsonb, bigint),
                          ledger.stream_version(text),
                          ledger.read_stream(text, bigint, integer),
                          ledger.read_all(bigint, integer) TO regress_ledger_app;

SET ROLE regress_ledger_app;
SELECT ledger.append('s', 'ByApp', '{}', 2);
SELECT count(*) FROM ledger.events;
UPDATE ledger.events SET data = '{}';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ledger.events;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE ledger.events;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ledger.events VALUES (100, 's', 4, 'Forged', '{}', '{}', now(), '1');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE ledger.events DISABLE TRIGGER events_append_only_row;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
\echo :LAST_ERROR_SQLSTATE
SET ledger_cqrs.restoring = on;
\echo :LAST_ERROR_SQLSTATE
SELECT nextval('ledger.events_position_seq');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- a role without grants can neither append nor read
SET ROLE regress_ledger_nobody;
SELECT ledger.append('s', 'ByNobody', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ledger.events;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_all();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SELECT position, stream, version, type FROM ledger.events ORDER BY position;

REVOKE ALL ON SCHEMA ledger FROM regress_ledger_app, regress_ledger_nobody;
REVOKE ALL ON ledger.events FROM regress_ledger_app;
REVOKE ALL ON FUNCTION ledger.append(text, text, jsonb, bigint, jsonb),
                       ledger.append_events(text, jsonb, bigint),
                       ledger.stream_version(text),
                       ledger.read_stream(text, bigint, integer),
                       ledger.read_all(bigint, integer) FROM regress_ledger_app;
DROP ROLE regress_ledger_app;
DROP ROLE regress_ledger_nobody;

-- A projection's table, owned by an ordinary role, is guarded so against
-- its owner too (42501).  It may be renamed or moved: its fold then fails,
-- naming the projection, until it is back (sql/projection_edges.sql).
CREATE ROLE regress_ledger_owner LOGIN;
CREATE SCHEMA regress_guard AUTHORIZATION regress_ledger_owner;
CREATE SCHEMA regress_guard_away AUTHORIZATION regress_ledger_owner;
GRANT USAGE ON SCHEMA ledger TO regress_ledger_owner;
GRANT EXECUTE ON FUNCTION ledger.create_projection(text, text, text) TO regress_ledger_owner;
GRANT SELECT ON ledger.events, ledger.projections TO regress_ledger_owner;
SET ROLE regress_ledger_owner;
SELECT ledger.create_projection('regress_guard.counts', 'SELECT e.type, count(*) AS n FROM ledger.events e GROUP BY 1');
ALTER TABLE regress_guard.counts SET UNLOGGED;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE regress_guard.counts RENAME COLUMN n TO how_many;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE regress_guard.counts DROP COLUMN n;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE regress_guard.counts ADD COLUMN note text NOT NULL DEFAULT '';
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE regress_guard.counts ALTER COLUMN n TYPE numeric;
\echo :LAST_ERROR_SQLSTATE
CREATE RULE keep_counts AS ON DELETE TO regress_guard.counts DO INSTEAD NOTHING;
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE regress_guard.more_counts () INHERITS (regress_guard.counts);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE regress_guard.orphan_counts (LIKE regress_guard.counts);
ALTER TABLE regress_guard.orphan_counts INHERIT regress_guard.counts;
\echo :LAST_ERROR_SQLSTATE
SELECT c.relpersistence,
       (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
          FROM pg_attribute
         WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped) AS columns,
       (SELECT count(*) FROM pg_rewrite WHERE ev_class = c.oid) AS rules,
       (SELECT count(*) FROM pg_inherits WHERE inhparent = c.oid) AS children
  FROM pg_class c WHERE c.oid = 'regress_guard.counts'::regclass;
-- renamed and moved away, and back: maintained again
ALTER TABLE regress_guard.counts RENAME TO counts_away;
ALTER TABLE regress_guard.counts_away SET SCHEMA regress_guard_away;
ALTER TABLE regress_guard_away.counts_away SET SCHEMA regress_guard;
ALTER TABLE regress_guard.counts_away RENAME TO counts;
RESET ROLE;
SELECT ledger.append('guarded', 'Guarded', '{}');
SELECT n FROM regress_guard.counts WHERE type = 'Guarded';
SELECT ledger.verify_projection('regress_guard.counts') AS verified;
SELECT ledger.drop_projection('regress_guard.counts');
DROP SCHEMA regress_guard, regress_guard_away CASCADE;
REVOKE ALL ON SCHEMA ledger FROM regress_ledger_owner;
REVOKE ALL ON ledger.events, ledger.projections FROM regress_ledger_owner;
REVOKE ALL ON FUNCTION ledger.create_projection(text, text, text) FROM regress_ledger_owner;
DROP ROLE regress_ledger_owner;

-- With the guard switched off, a column added by hand makes the writes
-- fail cleanly (55000), with nothing appended, instead of forming rows
-- past the C code's arrays.
ALTER EVENT TRIGGER ledger_guard_triggers DISABLE;
ALTER TABLE ledger.balances ADD COLUMN note text DEFAULT 'x';
SELECT ledger.open_account('shape_a'), ledger.open_account('shape_b');
SELECT count(*) AS events_before FROM ledger.events \gset
SELECT ledger.transfer('shape-1', 'shape_a', 'shape_b', 1, 'USD');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) - :events_before AS appended_since FROM ledger.events;
-- a retyped column likewise
ALTER TABLE ledger.balances DROP COLUMN note;
ALTER TABLE ledger.currencies ALTER COLUMN scale TYPE bigint;
SELECT ledger.register_currency('SHP', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) - :events_before AS appended_since FROM ledger.events;
ALTER EVENT TRIGGER ledger_guard_triggers ENABLE ALWAYS;
