-- ledger_cqrs benchmark: objects of the `transfer` section (run by
-- test/bench/run.sh after setup.sql, in the same fresh database).
--
--  * accounts a1..a1000 and 'hot', opened without flags;
--  * bench.transfer_plpgsql: the same posting written by hand in PL/pgSQL
--    against plain tables shaped like ledger.events / ledger.balances /
--    ledger.account_entries (same columns, defaults, constraints, indexes;
--    no triggers);
--  * one seed transfer per account through both paths, so every balance row
--    exists before the first measured run and every cell measures the
--    steady state (update of an existing balance), not balance creation.
\set ON_ERROR_STOP on

SELECT ledger.open_account('a' || i) FROM generate_series(1, 1000) AS i;
SELECT ledger.open_account('hot');

-- The hand-written version's tables.
CREATE TABLE bench.pl_events (LIKE ledger.events INCLUDING ALL);
CREATE SEQUENCE bench.pl_events_position_seq AS bigint
    OWNED BY bench.pl_events.position;
CREATE TABLE bench.pl_balances (LIKE ledger.balances INCLUDING ALL)
    WITH (fillfactor = 70);     -- as ledger.balances (LIKE does not copy it)
CREATE TABLE bench.pl_entries (LIKE ledger.account_entries INCLUDING ALL);

-- ledger.transfer written the obvious way: one event row, two balance
-- upserts, two entry rows.  Deliberately leaner than ledger.transfer: no
-- idempotency probe (a reused id simply fails on the (stream, version)
-- key), no account existence/status or flag checks, no amount/scale
-- validation, no SECURITY DEFINER / SET search_path.  Balance rows are
-- upserted in account order, so crossing transfers lock in the same order
-- and cannot deadlock.
CREATE FUNCTION bench.transfer_plpgsql(p_id text, p_debit text, p_credit text,
                                       p_amount numeric, p_currency text)
    RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    v_pos     bigint := nextval('bench.pl_events_position_seq');
    v_account text;
    v_debit   boolean;
    v_balance numeric;
BEGIN
    INSERT INTO bench.pl_events (position, stream, version, type, data, metadata,
                                 recorded_at, tx_order)
    VALUES (v_pos, 'transfer:' || p_id, 1, 'TransferPosted',
            jsonb_build_object(
                'transfer_id', p_id,
                'legs', jsonb_build_array(
                    jsonb_build_object('account', p_debit, 'side', 'debit',
                                       'amount', p_amount, 'currency', p_currency),
                    jsonb_build_object('account', p_credit, 'side', 'credit',
                                       'amount', p_amount, 'currency', p_currency)),
                'metadata', '{}'::jsonb),
            '{}', clock_timestamp(), pg_current_xact_id());

    FOREACH v_account IN ARRAY
        CASE WHEN p_debit < p_credit THEN ARRAY[p_debit, p_credit]
             ELSE ARRAY[p_credit, p_debit] END
    LOOP
        v_debit := v_account = p_debit;
        INSERT INTO bench.pl_balances AS b (account, currency, debits_posted,
                                            credits_posted, balance, postings,
                                            last_position)
        VALUES (v_account, p_currency,
                CASE WHEN v_debit THEN p_amount ELSE 0 END,
                CASE WHEN v_debit THEN 0 ELSE p_amount END,
                CASE WHEN v_debit THEN -p_amount ELSE p_amount END,
                1, v_pos)
        ON CONFLICT (account, currency) DO UPDATE
            SET debits_posted  = b.debits_posted + excluded.debits_posted,
                credits_posted = b.credits_posted + excluded.credits_posted,
                balance        = b.balance + excluded.balance,
                postings       = b.postings + 1,
                last_position  = excluded.last_position
        RETURNING b.balance INTO v_balance;

        INSERT INTO bench.pl_entries (account, currency, position, transfer_id,
                                      side, amount, balance_after, recorded_at)
        VALUES (v_account, p_currency, v_pos, p_id,
                CASE WHEN v_debit THEN 'debit' ELSE 'credit' END,
                p_amount, v_balance, clock_timestamp());
    END LOOP;
    RETURN v_pos;
END
$$;

-- Seed: a balance row for every account in both implementations.
SELECT count(ledger.transfer('seed-' || i, 'a' || i, 'a' || (i % 1000 + 1), 1.00, 'USD'))
  FROM generate_series(1, 1000) AS i;
SELECT ledger.transfer('seed-hot', 'a1', 'hot', 1.00, 'USD');
SELECT count(bench.transfer_plpgsql('seed-' || i, 'a' || i, 'a' || (i % 1000 + 1), 1.00, 'USD'))
  FROM generate_series(1, 1000) AS i;

ANALYZE ledger.events;
ANALYZE ledger.balances;
ANALYZE ledger.account_entries;
ANALYZE bench.pl_events;
ANALYZE bench.pl_balances;
ANALYZE bench.pl_entries;
