/* ledger_cqrs 1.0 -- install script */

\echo Use "CREATE EXTENSION ledger_cqrs" to load this file. \quit

-- Every object is schema-qualified and every function that runs with the
-- owner's rights pins search_path, so nothing a caller puts in front of
-- pg_catalog can be called by the extension.

------------------------------------------------------------------------------
-- 1. The event log
------------------------------------------------------------------------------

CREATE SEQUENCE ledger.events_position_seq AS bigint;

CREATE TABLE ledger.events (
    position    bigint      NOT NULL,
    stream      text        NOT NULL,
    version     bigint      NOT NULL,
    type        text        NOT NULL,
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

-- The log is the one thing a dump must carry.
SELECT pg_catalog.pg_extension_config_dump('ledger.events', '');
SELECT pg_catalog.pg_extension_config_dump('ledger.events_position_seq', '');
