-- ledger_cqrs benchmark: baseline objects (run by test/bench/run.sh in a
-- fresh database after CREATE EXTENSION ledger_cqrs).
--
-- bench.bare_events is a plain table with exactly ledger.events' columns,
-- defaults, NOT NULL/CHECK constraints and indexes (LIKE ... INCLUDING ALL
-- copies those, never triggers), so a plain INSERT into it is the cost of
-- "just write the row" that ledger.append is compared against.
\set ON_ERROR_STOP on

CREATE SCHEMA bench;

CREATE TABLE bench.bare_events (LIKE ledger.events INCLUDING ALL);

-- position: its own sequence, like ledger.events_position_seq.
CREATE SEQUENCE bench.bare_events_position_seq AS bigint
    OWNED BY bench.bare_events.position;
-- version: a second global sequence, so (stream, version) is always unique
-- without the per-stream head lookup ledger.append does.
CREATE SEQUENCE bench.bare_events_version_seq AS bigint
    OWNED BY bench.bare_events.version;

ANALYZE bench.bare_events;
ANALYZE ledger.events;
