-- ledger_cqrs benchmark: objects of the `projections` section (run by
-- test/bench/run.sh after setup.sql, in a fresh database).
\set ON_ERROR_STOP on

-- Bulk load: p_calls calls of ledger.append_events, each appending p_per
-- 'Purchased' events (~100-byte jsonb body: a user in 1..1000, an amount
-- with 2 decimals, a fixed memo) to a new stream 'buyer:<tag>-<i>';
-- commits every 100 calls.  run.sh runs a few of these in parallel.
CREATE PROCEDURE bench.load_purchases(p_tag text, p_calls int, p_per int DEFAULT 100)
    LANGUAGE plpgsql
AS $$
BEGIN
    FOR i IN 1..p_calls LOOP
        PERFORM ledger.append_events('buyer:' || p_tag || '-' || i,
            (SELECT jsonb_agg(jsonb_build_object('type', 'Purchased', 'data',
                        jsonb_build_object('user', 1 + floor(random() * 1000)::int,
                                           'amount', round((random() * 100)::numeric, 2),
                                           'memo', 'benchmark purchase, fixed-length filler')))
               FROM generate_series(1, p_per)));
        IF i % 100 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END
$$;

-- Wait (polling every 10 ms) until projection p_name has applied at least
-- p_target events in total; returns the time it was seen there.
CREATE FUNCTION bench.wait_applied(p_name text, p_target bigint,
                                   p_timeout interval DEFAULT '30 minutes')
    RETURNS timestamptz
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + p_timeout;
BEGIN
    LOOP
        IF (SELECT events_applied FROM ledger.projections WHERE name = p_name) >= p_target THEN
            RETURN clock_timestamp();
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'projection % did not reach % applied events within %',
                p_name, p_target, p_timeout;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
