-- Bad input to the event log functions: each gets a class 22 (or 40001)
-- error, and the log is left exactly as it was.
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

SELECT ledger.append('s', 'Created', '{"n": 1}');
SELECT ledger.append('s', 'Changed', '{"n": 2}');
CREATE TEMP TABLE before AS SELECT * FROM ledger.events;
SELECT last_value AS seq_before FROM ledger.events_position_seq \gset

-- a view that says whether the log is unchanged
CREATE TEMP VIEW unchanged AS
SELECT (SELECT count(*) FROM ledger.events) = (SELECT count(*) FROM before)
   AND NOT EXISTS (SELECT * FROM ledger.events EXCEPT SELECT * FROM before) AS unchanged;

-- NULL or empty stream or type
SELECT ledger.append(NULL, 'T', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('', 'T', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('s', NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('s', '', '{}');
\echo :LAST_ERROR_SQLSTATE
-- a stream over 255 bytes (256 ASCII, and 64 four-byte characters)
SELECT ledger.append(repeat('x', 256), 'T', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append(repeat(E'\U0001F600', 64), 'T', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('s', repeat('t', 256), '{}');
\echo :LAST_ERROR_SQLSTATE
-- NULL data
SELECT ledger.append('s', 'T', NULL);
\echo :LAST_ERROR_SQLSTATE
-- data that is not JSON
SELECT ledger.append('s', 'T', '{"unterminated": ');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('s', 'T', 'not json');
\echo :LAST_ERROR_SQLSTATE
-- negative expected_version
SELECT ledger.append('s', 'T', '{}', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- optimistic concurrency: a wrong expected version is 40001, naming the
-- stream, the expected and the actual version
SELECT ledger.append('s', 'T', '{}', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('s', 'T', '{}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('s', 'T', '{}', 3);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append('new-stream', 'T', '{}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": "A"}]', 5);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM unchanged;

-- append_events: events must be a non-empty array of objects with a
-- string type
SELECT ledger.append_events(NULL, '[{"type": "A"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('', '[{"type": "A"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '{"type": "A"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '"A"');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": "A"}, 42]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": "A"}, [{"type": "B"}]]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": "A"}, {"data": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": 7}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": null}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": ""}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.append_events('s', '[{"type": "A"}]', -2);
\echo :LAST_ERROR_SQLSTATE
-- the good first element is not appended when a later one is bad
SELECT * FROM unchanged;

-- readers
SELECT ledger.stream_version(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ledger.stream_version('');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_stream(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_stream('s', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_stream('s', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_stream('s', 1, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_all(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_all(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ledger.read_all(0, -1);
\echo :LAST_ERROR_SQLSTATE
-- a cursor that is not the position of an event
SELECT * FROM ledger.read_all(1000);
\echo :LAST_ERROR_SQLSTATE

-- an error inside a transaction leaves nothing behind either
BEGIN;
SELECT ledger.append('s', 'T', '{}', 2);
SELECT ledger.append('s', 'T', '{}', 2);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

SELECT * FROM unchanged;
SELECT last_value = :seq_before AS sequence_untouched FROM ledger.events_position_seq;
