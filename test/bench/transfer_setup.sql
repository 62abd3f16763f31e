-- ledger_cqrs benchmark: objects of the `transfer` section (run by
-- test/bench/run.sh after setup.sql, in the same fresh database).
--
--  * accounts a1..a1000 and 'hot', opened without flags;
--  * bench.transfer_plpgsql: the same posting written by hand in PL/pgSQL
--    against plain tables shaped like ledger.events / ledger.balances /
--    ledger.account_entries (same columns, defaults, constraints, indexes;
--    no triggers), writes only;
--  * bench.transfer_plpgsql_checked: the same, with ledger.transfer's rules
--    (checks, idempotency, open accounts, flags) written by hand too;
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
                                      side, amount, balance_after, recorded_at, leg)
        VALUES (v_account, p_currency, v_pos, p_id,
                CASE WHEN v_debit THEN 'debit' ELSE 'credit' END,
                p_amount, v_balance, clock_timestamp(),
                CASE WHEN v_debit THEN 0 ELSE 1 END);
    END LOOP;
    RETURN v_pos;
END
$$;

-- The same transfer by hand with the same rules as ledger.transfer (section
-- 2 of the contract): argument checks, a registered currency and its scale,
-- idempotency on the id under a lock (a retry returns the original
-- position, other legs raise 23505), accounts that exist and are open,
-- balance rows locked in account order and the accounts' flags checked
-- against the new totals.  Reported beside the writes-only version above,
-- which the issue's target is measured against.
CREATE TABLE bench.pl_currencies (LIKE ledger.currencies INCLUDING ALL);
INSERT INTO bench.pl_currencies SELECT * FROM ledger.currencies;
CREATE TABLE bench.pl_accounts (LIKE ledger.accounts INCLUDING ALL);
INSERT INTO bench.pl_accounts SELECT * FROM ledger.accounts;

CREATE FUNCTION bench.transfer_plpgsql_checked(p_id text, p_debit text, p_credit text,
                                               p_amount numeric, p_currency text)
    RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    v_stream  text := 'transfer:' || p_id;
    v_scale   integer;
    v_data    jsonb;
    v_pos     bigint;
    v_old     jsonb;
    v_found   integer := 0;
    v_flags   text[];
    v_dflags  text[];
    v_cflags  text[];
    v_account text;
    v_debit   boolean;
    b         record;
    r         record;
BEGIN
    IF p_id IS NULL OR p_debit IS NULL OR p_credit IS NULL
       OR p_amount IS NULL OR p_currency IS NULL THEN
        RAISE EXCEPTION 'arguments must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p_id = '' OR p_debit = p_credit OR p_amount <= 0 OR p_amount = 'NaN' THEN
        RAISE EXCEPTION 'invalid transfer %', p_id USING ERRCODE = '22023';
    END IF;
    SELECT scale INTO v_scale FROM bench.pl_currencies WHERE code = p_currency;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'currency % is not registered', p_currency USING ERRCODE = '22023';
    END IF;
    IF scale(p_amount) > v_scale THEN
        RAISE EXCEPTION 'amount % has too many decimals', p_amount USING ERRCODE = '22023';
    END IF;
    v_data := jsonb_build_object(
        'transfer_id', p_id,
        'legs', jsonb_build_array(
            jsonb_build_object('account', p_debit, 'side', 'debit',
                               'amount', p_amount, 'currency', p_currency),
            jsonb_build_object('account', p_credit, 'side', 'credit',
                               'amount', p_amount, 'currency', p_currency)),
        'metadata', '{}'::jsonb);

    -- idempotency: one posting per id, even when twins race
    PERFORM pg_advisory_xact_lock(hashtextextended(v_stream, 0));
    SELECT position, data INTO v_pos, v_old
      FROM bench.pl_events WHERE stream = v_stream AND version = 1;
    IF FOUND THEN
        IF v_old->'legs' = v_data->'legs' THEN
            RETURN v_pos;
        END IF;
        RAISE EXCEPTION 'transfer % already exists with different legs', p_id
            USING ERRCODE = '23505';
    END IF;

    -- the accounts exist and are open
    FOR r IN SELECT account, status, flags FROM bench.pl_accounts
              WHERE account IN (p_debit, p_credit)
    LOOP
        IF r.status <> 'open' THEN
            RAISE EXCEPTION 'account % is closed', r.account USING ERRCODE = '55000';
        END IF;
        IF r.account = p_debit THEN v_dflags := r.flags; ELSE v_cflags := r.flags; END IF;
        v_found := v_found + 1;
    END LOOP;
    IF v_found <> 2 THEN
        RAISE EXCEPTION 'account does not exist' USING ERRCODE = '23503';
    END IF;

    -- the balance rows, locked in account order: crossing transfers wait
    -- for each other instead of deadlocking
    PERFORM 1 FROM bench.pl_balances
      WHERE account IN (p_debit, p_credit) AND currency = p_currency
      ORDER BY account FOR UPDATE;

    v_pos := nextval('bench.pl_events_position_seq');
    INSERT INTO bench.pl_events (position, stream, version, type, data, metadata,
                                 recorded_at, tx_order)
    VALUES (v_pos, v_stream, 1, 'TransferPosted', v_data, '{}', clock_timestamp(),
            pg_current_xact_id());

    FOREACH v_account IN ARRAY
        CASE WHEN p_debit < p_credit THEN ARRAY[p_debit, p_credit]
             ELSE ARRAY[p_credit, p_debit] END
    LOOP
        v_debit := v_account = p_debit;
        v_flags := CASE WHEN v_debit THEN v_dflags ELSE v_cflags END;
        INSERT INTO bench.pl_balances AS bal (account, currency, debits_posted,
                                              credits_posted, balance, postings,
                                              last_position)
        VALUES (v_account, p_currency,
                CASE WHEN v_debit THEN p_amount ELSE 0 END,
                CASE WHEN v_debit THEN 0 ELSE p_amount END,
                CASE WHEN v_debit THEN -p_amount ELSE p_amount END,
                1, v_pos)
        ON CONFLICT (account, currency) DO UPDATE
            SET debits_posted  = bal.debits_posted + excluded.debits_posted,
                credits_posted = bal.credits_posted + excluded.credits_posted,
                balance        = bal.balance + excluded.balance,
                postings       = bal.postings + 1,
                last_position  = excluded.last_position
        RETURNING bal.debits_posted, bal.credits_posted, bal.balance INTO b;

        IF 'debits_must_not_exceed_credits' = ANY (v_flags)
           AND b.debits_posted > b.credits_posted THEN
            RAISE EXCEPTION 'transfer % would overdraw account %', p_id, v_account
                USING ERRCODE = '23514';
        END IF;
        IF 'credits_must_not_exceed_debits' = ANY (v_flags)
           AND b.credits_posted > b.debits_posted THEN
            RAISE EXCEPTION 'transfer % would make credits exceed debits on account %',
                p_id, v_account USING ERRCODE = '23514';
        END IF;

        INSERT INTO bench.pl_entries (account, currency, position, transfer_id,
                                      side, amount, balance_after, recorded_at, leg)
        VALUES (v_account, p_currency, v_pos, p_id,
                CASE WHEN v_debit THEN 'debit' ELSE 'credit' END,
                p_amount, b.balance, clock_timestamp(),
                CASE WHEN v_debit THEN 0 ELSE 1 END);
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
