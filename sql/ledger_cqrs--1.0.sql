/* ledger_cqrs 1.0 -- install script */

\echo Use "CREATE EXTENSION ledger_cqrs" to load this file. \quit

-- Every object is schema-qualified and every function that runs with the
-- owner's rights pins search_path, so nothing a caller puts in front of
-- pg_catalog can be called by the extension.  Identifiers (streams, types,
-- accounts, currencies) are compared byte by byte: COLLATE "C" keys are
-- exact and cheap, whatever the database's locale.

-- The schema must be the installer's.  CREATE EXTENSION adopts an existing
-- schema named ledger; its owner could then drop the log with the schema, or
-- put functions in it that shadow ours.
DO $$
BEGIN
    IF (SELECT n.nspowner FROM pg_catalog.pg_namespace n
         WHERE n.nspname OPERATOR(pg_catalog.=) 'ledger')
       OPERATOR(pg_catalog.<>) (SELECT r.oid FROM pg_catalog.pg_roles r
                                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'schema "ledger" belongs to another role',
            DETAIL = 'ledger_cqrs installs into schema ledger, which its owner could drop or fill with look-alike functions.',
            HINT = 'Drop that schema, or have its owner hand it over (ALTER SCHEMA ledger OWNER TO ...), then create the extension.';
    END IF;
END
$$;

------------------------------------------------------------------------------
-- 1. The event log
------------------------------------------------------------------------------

CREATE SEQUENCE ledger.events_position_seq AS bigint;

CREATE TABLE ledger.events (
    position    bigint      NOT NULL,
    stream      text        COLLATE "C" NOT NULL,
    version     bigint      NOT NULL,
    type        text        COLLATE "C" NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL,
    -- Commit-safe ordering key (see README, "read_all and the after cursor"):
    -- the appending transaction's id, raised to the previous key of the
    -- same stream.  read_all delivers in (tx_order, position) order and only
    -- below the oldest running transaction, so a late commit is never skipped.
    tx_order    xid8        NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT events_stream_check CHECK (octet_length(stream) BETWEEN 1 AND 255),
    CONSTRAINT events_type_check CHECK (octet_length(type) BETWEEN 1 AND 255),
    CONSTRAINT events_version_check CHECK (version > 0)
);
ALTER SEQUENCE ledger.events_position_seq OWNED BY ledger.events.position;
CREATE INDEX events_tx_order_idx ON ledger.events (tx_order, position);

COMMENT ON TABLE ledger.events IS
    'ledger_cqrs: the append-only event log; write through ledger.append / ledger.append_events';

REVOKE ALL ON ledger.events FROM PUBLIC;
REVOKE ALL ON SEQUENCE ledger.events_position_seq FROM PUBLIC;

-- Append-only, for every role.  The append functions write the heap and its
-- indexes directly, so these triggers never fire for them; they fire for
-- every other way in.  ENABLE ALWAYS keeps them firing under
-- session_replication_role = replica.
CREATE FUNCTION ledger.events_guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ledger_events_guard';
REVOKE ALL ON FUNCTION ledger.events_guard() FROM PUBLIC;

CREATE TRIGGER events_append_only_stmt
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ledger.events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.events_guard();
CREATE TRIGGER events_append_only_row
    BEFORE INSERT OR UPDATE OR DELETE ON ledger.events
    FOR EACH ROW EXECUTE FUNCTION ledger.events_guard();
ALTER TABLE ledger.events ENABLE ALWAYS TRIGGER events_append_only_stmt;
ALTER TABLE ledger.events ENABLE ALWAYS TRIGGER events_append_only_row;

-- On a logical replication subscriber: fold replicated events into the
-- subscriber's own projections.  Does nothing anywhere else.
CREATE FUNCTION ledger.events_replicated() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ledger_events_replicated';
REVOKE ALL ON FUNCTION ledger.events_replicated() FROM PUBLIC;
CREATE TRIGGER events_replicated AFTER INSERT ON ledger.events
    FOR EACH ROW EXECUTE FUNCTION ledger.events_replicated();
ALTER TABLE ledger.events ENABLE ALWAYS TRIGGER events_replicated;

CREATE FUNCTION ledger.append(stream text, type text, data jsonb,
                              expected_version bigint DEFAULT NULL,
                              metadata jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_append';

CREATE FUNCTION ledger.append_events(stream text, events jsonb,
                                     expected_version bigint DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_append_events';

CREATE FUNCTION ledger.stream_version(stream text)
    RETURNS bigint
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_stream_version';

CREATE FUNCTION ledger.read_stream(stream text, from_version bigint DEFAULT 1,
                                   max_count integer DEFAULT NULL)
    RETURNS SETOF ledger.events
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_read_stream';

CREATE FUNCTION ledger.read_all(after bigint DEFAULT 0,
                                max_count integer DEFAULT 1000)
    RETURNS SETOF ledger.events
    LANGUAGE c STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_read_all';

REVOKE ALL ON FUNCTION ledger.append(text, text, jsonb, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.append_events(text, jsonb, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.stream_version(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.read_stream(text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.read_all(bigint, integer) FROM PUBLIC;

-- What a dump carries.  CREATE EXTENSION itself appends positions 1-9 (the
-- currency registrations below) in any database, so a dump leaves them out.
SELECT pg_catalog.pg_extension_config_dump('ledger.events', 'WHERE position > 9');
SELECT pg_catalog.pg_extension_config_dump('ledger.events_position_seq', '');

------------------------------------------------------------------------------
-- 2. The ledger domain: read models kept by the commands, in C
------------------------------------------------------------------------------

-- Registered currencies, from CurrencyRegistered events.
CREATE TABLE ledger.currencies (
    code          text        COLLATE "C" NOT NULL PRIMARY KEY,
    scale         integer     NOT NULL,
    registered_at timestamptz NOT NULL,
    position      bigint      NOT NULL
);

-- From AccountOpened / AccountClosed events.
CREATE TABLE ledger.accounts (
    account   text        COLLATE "C" NOT NULL PRIMARY KEY,
    flags     text[]      NOT NULL,
    status    text        NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    metadata  jsonb       NOT NULL
);

-- One row per account and currency with postings; updated in place (HOT:
-- no indexed column changes) under the (account, currency) balance lock.
CREATE TABLE ledger.balances (
    account        text    COLLATE "C" NOT NULL,
    currency       text    COLLATE "C" NOT NULL,
    debits_posted  numeric NOT NULL,
    credits_posted numeric NOT NULL,
    balance        numeric NOT NULL,
    postings       bigint  NOT NULL,
    last_position  bigint  NOT NULL,
    PRIMARY KEY (account, currency)
) WITH (fillfactor = 70);

-- One row per leg, with the account's running balance in that currency
-- (after the whole posting, when a posting names the balance more than once).
CREATE TABLE ledger.account_entries (
    account       text    COLLATE "C" NOT NULL,
    currency      text    COLLATE "C" NOT NULL,
    position      bigint  NOT NULL,
    transfer_id   text    COLLATE "C" NOT NULL,
    side          text    NOT NULL,
    amount        numeric NOT NULL,
    balance_after numeric NOT NULL,
    recorded_at   timestamptz NOT NULL,     -- the posting's append time, for balance_at
    leg           integer NOT NULL,         -- index in the event's legs array (0-based)
    PRIMARY KEY (account, currency, position, leg)
);

-- Balance checkpoints: every ledger_cqrs.snapshot_interval postings of an
-- account in a currency, written by the posting itself, so that balance_at
-- folds at most one interval of entries.
CREATE TABLE ledger.balance_snapshots (
    account        text        COLLATE "C" NOT NULL,
    currency       text        COLLATE "C" NOT NULL,
    position       bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL,
    postings       bigint      NOT NULL,
    debits_posted  numeric     NOT NULL,
    credits_posted numeric     NOT NULL,
    balance        numeric     NOT NULL,
    PRIMARY KEY (account, currency, position)
);
CREATE INDEX balance_snapshots_time_idx ON ledger.balance_snapshots (account, currency, recorded_at, position);

-- The trial balance, derived from the balances rather than kept as one row
-- per currency that every transfer would have to update.
CREATE VIEW ledger.currency_totals AS
SELECT b.currency,
       pg_catalog.sum(b.debits_posted)  AS debits,
       pg_catalog.sum(b.credits_posted) AS credits
  FROM ledger.balances b
 GROUP BY b.currency;

REVOKE ALL ON ledger.currencies, ledger.accounts, ledger.balances,
              ledger.account_entries, ledger.currency_totals,
              ledger.balance_snapshots FROM PUBLIC;

-- Read models refuse every write that is not the extension's own.
CREATE FUNCTION ledger.read_model_guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ledger_read_model_guard';
REVOKE ALL ON FUNCTION ledger.read_model_guard() FROM PUBLIC;

DO $guard$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['currencies', 'accounts', 'balances', 'account_entries',
                             'balance_snapshots'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ledger.%I
               FOR EACH STATEMENT EXECUTE FUNCTION ledger.read_model_guard()',
            t || '_read_only', t);
        EXECUTE pg_catalog.format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER %I',
                                  t, t || '_read_only');
    END LOOP;
END
$guard$;

------------------------------------------------------------------------------
-- Commands
------------------------------------------------------------------------------

CREATE FUNCTION ledger.register_currency(code text, scale integer)
    RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_register_currency';

CREATE FUNCTION ledger.open_account(account text, flags text[] DEFAULT '{}',
                                    metadata jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_open_account';

CREATE FUNCTION ledger.close_account(account text)
    RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_close_account';

CREATE FUNCTION ledger.transfer(transfer_id text, debit_account text,
                                credit_account text, amount numeric,
                                currency text, metadata jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_transfer';

CREATE FUNCTION ledger.post_entry(transfer_id text, legs jsonb,
                                  metadata jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_post_entry';

REVOKE ALL ON FUNCTION ledger.register_currency(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.open_account(text, text[], jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.close_account(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.transfer(text, text, text, numeric, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.post_entry(text, jsonb, jsonb) FROM PUBLIC;

------------------------------------------------------------------------------
-- 3. Projections: the registry and the built-in read models
------------------------------------------------------------------------------

CREATE TABLE ledger.projections (
    name                text        NOT NULL PRIMARY KEY,   -- as created
    kind                text        NOT NULL CHECK (kind IN ('builtin', 'user')),
    mode                text        NOT NULL CHECK (mode IN ('inline', 'async')),
    state               text        NOT NULL
                        CHECK (state IN ('catching_up', 'live', 'rebuilding', 'failed')),
    definition          text,                   -- the query, verbatim
    -- the stamp (md5 of the normalized form and of the user functions it
    -- calls) under which the table was filled or last rebuilt
    definition_hash     text,
    target_schema       text,
    target_table        text,
    columns             text[],                 -- output columns, in order
    column_kinds        text[],                 -- key | count | sum | min | max
    -- every event at or before this (tx_order, position) cursor is applied;
    -- committed in the same transaction as the rows it covers
    checkpoint_order    xid8,
    checkpoint_position bigint      NOT NULL DEFAULT 0,
    events_applied      bigint      NOT NULL DEFAULT 0,
    fill_total          bigint,                 -- events to fill, while catching up
    needs_reset         boolean     NOT NULL DEFAULT false,  -- restored: refill from the log
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at          timestamptz,
    last_error          text
);
REVOKE ALL ON ledger.projections FROM PUBLIC;

INSERT INTO ledger.projections (name, kind, mode, state) VALUES
    ('ledger.currencies',      'builtin', 'inline', 'live'),
    ('ledger.accounts',        'builtin', 'inline', 'live'),
    ('ledger.balances',        'builtin', 'inline', 'live'),
    ('ledger.account_entries', 'builtin', 'inline', 'live'),
    ('ledger.currency_totals', 'builtin', 'inline', 'live');

-- The async projector's whereabouts, so that appenders can wake it.
CREATE TABLE ledger.projector (
    database   oid         NOT NULL PRIMARY KEY,
    pid        integer     NOT NULL,
    started_at timestamptz NOT NULL
);
REVOKE ALL ON ledger.projector FROM PUBLIC;
-- A projector started by shared_preload_libraries may already be waiting
-- in this database: record it now, so the first appends can wake it.
INSERT INTO ledger.projector (database, pid, started_at)
SELECT a.datid, a.pid, a.backend_start FROM pg_catalog.pg_stat_activity a
 WHERE a.backend_type OPERATOR(pg_catalog.=) 'ledger_cqrs projector'
   AND a.datid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                        WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
 LIMIT 1;

-- Built-in read models and live inline projections are maintained in the
-- appending transaction, so they are at the head of the log and never lag.
CREATE VIEW ledger.projection_status AS
SELECT p.name, p.kind, p.mode,
       -- a rebuild writes its state in its own transaction; what others
       -- see is the lock it holds until it commits (LEDGER_LOCK_REBUILD,
       -- keyed by the 64-bit hash of the name, as the C code takes it)
       CASE WHEN EXISTS (
                SELECT FROM pg_catalog.pg_locks l
                 WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted
                   AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                         WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                   AND l.objsubid OPERATOR(pg_catalog.=) 19461
                   AND l.classid OPERATOR(pg_catalog.=) ((pg_catalog.hashtextextended(p.name, 0) OPERATOR(pg_catalog.>>) 32)
                                        OPERATOR(pg_catalog.&) 4294967295)::pg_catalog.oid
                   AND l.objid OPERATOR(pg_catalog.=) (pg_catalog.hashtextextended(p.name, 0)
                                        OPERATOR(pg_catalog.&) 4294967295)::pg_catalog.oid)
            THEN 'rebuilding' ELSE p.state END AS state,
       CASE WHEN p.kind = 'builtin' OR (p.mode = 'inline' AND p.state = 'live')
            THEN (SELECT pg_catalog.max(e.position) FROM ledger.events e)
            ELSE p.checkpoint_position END AS checkpoint,
       CASE WHEN p.kind = 'builtin' OR (p.mode = 'inline' AND p.state = 'live')
            THEN 0::bigint
            -- counted here rather than in a function: a view reads its
            -- tables with its owner's rights, so readers need only SELECT
            -- on the view
            ELSE (SELECT pg_catalog.count(*) FROM ledger.events e
                   WHERE ROW(e.tx_order, e.position) OPERATOR(pg_catalog.>)
                         ROW(COALESCE(p.checkpoint_order, '0'::pg_catalog.xid8), p.checkpoint_position))
            END AS lag_events,
       p.last_error,
       p.events_applied,
       p.fill_total,
       p.target_schema OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) p.target_table AS target,
       p.updated_at
  FROM ledger.projections p;
REVOKE ALL ON ledger.projection_status FROM PUBLIC;

CREATE FUNCTION ledger.create_projection(name text, query text, mode text DEFAULT 'inline')
    RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'ledger_create_projection';
COMMENT ON FUNCTION ledger.create_projection(text, text, text) IS
    'Runs with the caller''s rights to create the table (in the caller''s search_path); the query is analyzed with search_path = pg_catalog, pg_temp';

-- drop_projection, verify_projection and rebuild_projection run with the
-- caller's rights: the C code checks that the caller owns the projection's
-- table (drop, rebuild) or may read it (verify), then acts as the
-- extension's owner.
CREATE FUNCTION ledger.drop_projection(name text)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_drop_projection';

CREATE FUNCTION ledger.catch_up(name text DEFAULT NULL, max_events bigint DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_catch_up';

CREATE FUNCTION ledger.verify_projection(name text)
    RETURNS boolean
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_verify_projection';

CREATE FUNCTION ledger.rebuild_projection(name text)
    RETURNS bigint
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_rebuild_projection';

CREATE FUNCTION ledger.start_projector()
    RETURNS integer
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_start_projector';

CREATE FUNCTION ledger.stop_projector()
    RETURNS boolean
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_stop_projector';

-- Drive a fill or catch-up to the end from a session, committing after each
-- batch (a procedure, so that progress is committed).  It runs with the
-- caller's rights and cannot pin search_path (a procedure with SET cannot
-- COMMIT), so every name in it is schema-qualified.
CREATE PROCEDURE ledger.wait_for_projection(name text, timeout interval DEFAULT '10 minutes')
    LANGUAGE plpgsql
    AS $$
DECLARE
    deadline pg_catalog.timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) timeout;
    st pg_catalog.text;
    lag pg_catalog.int8;
    err pg_catalog.text;
    applied pg_catalog.int8;
BEGIN
    LOOP
        applied := ledger.catch_up(name);
        SELECT s.state, s.lag_events, s.last_error INTO st, lag, err
          FROM ledger.projection_status s
         WHERE s.name OPERATOR(pg_catalog.=) wait_for_projection.name
            OR s.target OPERATOR(pg_catalog.=) wait_for_projection.name;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_object',
                MESSAGE = pg_catalog.format('projection "%s" does not exist', name);
        END IF;
        EXIT WHEN st OPERATOR(pg_catalog.=) 'failed'
               OR (st OPERATOR(pg_catalog.=) 'live' AND lag OPERATOR(pg_catalog.=) 0);
        IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline THEN
            RAISE EXCEPTION USING ERRCODE = 'query_canceled',
                MESSAGE = pg_catalog.format('projection "%s" did not catch up within %s', name, timeout);
        END IF;
        COMMIT;
        -- the hand-over to inline happens only in READ COMMITTED, whatever
        -- default_transaction_isolation says
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        -- no progress (a late-committing transaction holds the horizon):
        -- wait a little rather than spin
        IF applied OPERATOR(pg_catalog.=) 0 THEN
            PERFORM pg_catalog.pg_sleep(0.05);
        END IF;
    END LOOP;
    IF st OPERATOR(pg_catalog.=) 'failed' THEN
        -- keep the failure our own round may just have recorded
        COMMIT;
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = pg_catalog.format('projection "%s" failed', name),
            DETAIL = COALESCE(err, '');
    END IF;
END
$$;

-- A projection that follows the log with a cursor cannot keep it across
-- pg_restore: restored events get new tx_order values.  Rows loaded with
-- ledger_cqrs.restoring = on are reset, and the projector refills them.
CREATE FUNCTION ledger.projections_restore() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ledger_projections_restore';
REVOKE ALL ON FUNCTION ledger.projections_restore() FROM PUBLIC;
CREATE TRIGGER projections_restore BEFORE INSERT ON ledger.projections
    FOR EACH ROW EXECUTE FUNCTION ledger.projections_restore();
ALTER TABLE ledger.projections ENABLE ALWAYS TRIGGER projections_restore;

-- Written only by the extension, for every role.
CREATE FUNCTION ledger.projection_guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ledger_read_model_guard';

-- A projection's table goes only with its projection: DROP TABLE, or DROP
-- SCHEMA ... CASCADE, of it outside ledger.drop_projection is refused.
CREATE FUNCTION ledger.guard_projection_tables() RETURNS event_trigger
    LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_guard_projection_tables';
CREATE EVENT TRIGGER ledger_projection_tables ON sql_drop
    EXECUTE FUNCTION ledger.guard_projection_tables();
ALTER EVENT TRIGGER ledger_projection_tables ENABLE ALWAYS;

-- The triggers above, on the log, the read models and projection tables,
-- are not switched off, made to skip replica sessions, or dropped; the
-- log's columns are not rewritten, the extension's relations not renamed
-- or moved, and no guarded table inherited, made unlogged or given a rule:
-- not by their owner, not by a superuser (who can still disable this event
-- trigger first).
CREATE FUNCTION ledger.guard_triggers() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ledger_guard_ddl';
CREATE EVENT TRIGGER ledger_guard_triggers ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'ALTER FOREIGN TABLE', 'ALTER INDEX', 'ALTER SEQUENCE',
                 'ALTER VIEW', 'CREATE TABLE', 'CREATE FOREIGN TABLE', 'CREATE TRIGGER',
                 'DROP TRIGGER', 'CREATE RULE')
    EXECUTE FUNCTION ledger.guard_triggers();
ALTER EVENT TRIGGER ledger_guard_triggers ENABLE ALWAYS;

REVOKE ALL ON FUNCTION ledger.create_projection(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.drop_projection(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.catch_up(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.verify_projection(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.rebuild_projection(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.start_projector() FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.stop_projector() FROM PUBLIC;
REVOKE ALL ON PROCEDURE ledger.wait_for_projection(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.projection_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.guard_projection_tables() FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.guard_triggers() FROM PUBLIC;

------------------------------------------------------------------------------
-- 5. Snapshots and time travel
------------------------------------------------------------------------------

-- The balance including every posting at or before a position: the nearest
-- balance snapshot at or before it, plus at most snapshot_interval entries.
CREATE FUNCTION ledger.balance_at(account text, currency text, as_of_position bigint)
    RETURNS numeric
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT COALESCE(s.balance, 0) OPERATOR(pg_catalog.+) COALESCE((
             SELECT pg_catalog.sum(CASE WHEN e.side OPERATOR(pg_catalog.=) 'credit'
                                        THEN e.amount ELSE OPERATOR(pg_catalog.-) e.amount END)
               FROM ledger.account_entries e
              WHERE e.account OPERATOR(pg_catalog.=) $1 AND e.currency OPERATOR(pg_catalog.=) $2
                AND e.position OPERATOR(pg_catalog.>) COALESCE(s.position, 0)
                AND e.position OPERATOR(pg_catalog.<=) $3), 0)
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (
             SELECT b.position, b.balance FROM ledger.balance_snapshots b
              WHERE b.account OPERATOR(pg_catalog.=) $1 AND b.currency OPERATOR(pg_catalog.=) $2
                AND b.position OPERATOR(pg_catalog.<=) $3
              ORDER BY b.position DESC LIMIT 1) AS s ON true
$$;

-- The same as of a time: every posting whose append time (recorded_at) is
-- at or before as_of.  Within one account and currency append times follow
-- positions, so the entries to fold lie between the snapshot at or before
-- as_of and the first one after it.
CREATE FUNCTION ledger.balance_at(account text, currency text, as_of timestamptz)
    RETURNS numeric
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT COALESCE(s.balance, 0) OPERATOR(pg_catalog.+) COALESCE((
             SELECT pg_catalog.sum(CASE WHEN e.side OPERATOR(pg_catalog.=) 'credit'
                                        THEN e.amount ELSE OPERATOR(pg_catalog.-) e.amount END)
               FROM ledger.account_entries e
              WHERE e.account OPERATOR(pg_catalog.=) $1 AND e.currency OPERATOR(pg_catalog.=) $2
                AND e.position OPERATOR(pg_catalog.>) COALESCE(s.position, 0)
                AND e.position OPERATOR(pg_catalog.<) COALESCE(n.position, 9223372036854775807)
                AND e.recorded_at OPERATOR(pg_catalog.<=) $3), 0)
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (
             SELECT b.position, b.balance FROM ledger.balance_snapshots b
              WHERE b.account OPERATOR(pg_catalog.=) $1 AND b.currency OPERATOR(pg_catalog.=) $2
                AND b.recorded_at OPERATOR(pg_catalog.<=) $3
              ORDER BY b.recorded_at DESC, b.position DESC LIMIT 1) AS s ON true
      LEFT JOIN LATERAL (
             SELECT b.position FROM ledger.balance_snapshots b
              WHERE b.account OPERATOR(pg_catalog.=) $1 AND b.currency OPERATOR(pg_catalog.=) $2
                AND b.recorded_at OPERATOR(pg_catalog.>) $3
              ORDER BY b.recorded_at, b.position LIMIT 1) AS n ON true
$$;

REVOKE ALL ON FUNCTION ledger.balance_at(text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.balance_at(text, text, timestamptz) FROM PUBLIC;

-- An untyped literal, balance_at('alice', 'USD', '2026-01-31'), would be
-- ambiguous between the two forms above (42725); this form takes it, as a
-- time.  It runs with the caller's rights and calls the timestamptz form,
-- whose EXECUTE privilege it therefore needs: granting it adds no right.
-- (Not STRICT, so that a NULL goes through that check too.)
CREATE FUNCTION ledger.balance_at(account text, currency text, as_of text)
    RETURNS numeric
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT ledger.balance_at($1, $2, $3::pg_catalog.timestamptz) $$;

-- Stream snapshots, for users' own aggregates.
CREATE TABLE ledger.stream_snapshots (
    stream   text        COLLATE "C" NOT NULL,
    version  bigint      NOT NULL,
    state    jsonb       NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (stream, version)
);
REVOKE ALL ON ledger.stream_snapshots FROM PUBLIC;

CREATE FUNCTION ledger.save_snapshot(stream text, version bigint, state jsonb)
    RETURNS void
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_save_snapshot';

CREATE FUNCTION ledger.load_snapshot(stream text)
    RETURNS TABLE (version bigint, state jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT s.version, s.state FROM ledger.stream_snapshots s
     WHERE s.stream OPERATOR(pg_catalog.=) $1
     ORDER BY s.version DESC LIMIT 1
$$;

REVOKE ALL ON FUNCTION ledger.save_snapshot(text, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger.load_snapshot(text) FROM PUBLIC;

-- Projection snapshots: a projection's rows at its checkpoint, stamped with
-- the hash of its normalized definition and of the user functions it calls.
-- Rebuilds and refills start from the newest one whose stamp still matches.
CREATE TABLE ledger.projection_snapshots (
    name                text        NOT NULL,
    definition_hash     text        NOT NULL,
    checkpoint_order    xid8        NOT NULL,
    checkpoint_position bigint      NOT NULL,
    events_applied      bigint      NOT NULL,
    taken_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    row_count           bigint      NOT NULL,
    rows                jsonb       NOT NULL,
    -- true: the rows are exactly the events at positions <= checkpoint_position
    -- (an inline projection's, taken with appends held still); false: exactly
    -- those at or before the cursor (checkpoint_order, checkpoint_position)
    position_cut        boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (name, checkpoint_order, checkpoint_position)
);
REVOKE ALL ON ledger.projection_snapshots FROM PUBLIC;

CREATE FUNCTION ledger.snapshot_projection(name text)
    RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'ledger_snapshot_projection';
REVOKE ALL ON FUNCTION ledger.snapshot_projection(text) FROM PUBLIC;

-- Common ISO 4217 currencies, registered through the command so that the
-- log holds their CurrencyRegistered events.
SELECT ledger.register_currency(c.code, c.scale)
  FROM (VALUES ('USD', 2), ('EUR', 2), ('GBP', 2), ('JPY', 0), ('CHF', 2),
               ('CNY', 2), ('INR', 2), ('BHD', 3), ('KWD', 3)) AS c(code, scale);

SELECT pg_catalog.pg_extension_config_dump('ledger.currencies', 'WHERE position > 9');
SELECT pg_catalog.pg_extension_config_dump('ledger.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('ledger.balances', '');
SELECT pg_catalog.pg_extension_config_dump('ledger.account_entries', '');
SELECT pg_catalog.pg_extension_config_dump('ledger.balance_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('ledger.stream_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('ledger.projections', 'WHERE kind <> ''builtin''');
