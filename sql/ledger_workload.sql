-- A random workload: thousands of transfers and exchanges across 40
-- accounts and three currencies (one with scale 0, one with scale 3), some
-- accounts flagged.  The read models are checked against totals the test
-- computes on its own from what it was told succeeded.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS ledger_cqrs CASCADE;
CREATE EXTENSION ledger_cqrs;
RESET client_min_messages;

SELECT setseed(0.4242);
SELECT ledger.open_account('acct' || lpad(i::text, 2, '0'),
                           CASE WHEN i % 8 = 0 THEN '{debits_must_not_exceed_credits}'::text[] ELSE '{}' END)
  FROM generate_series(1, 40) i;

CREATE TEMP TABLE attempts (
    n int, transfer_id text, legs jsonb, ok bool, sqlstate text);

-- 3,000 two-leg transfers, 200 four-leg exchanges; each in a subtransaction
-- so a refusal (a flag) is recorded and the run goes on
DO $$
DECLARE
    cur text[] := ARRAY['USD', 'JPY', 'BHD'];
    scl int[] := ARRAY[2, 0, 3];
    i int;
    a int;
    b int;
    c int;
    amt numeric;
    amt2 numeric;
    legs jsonb;
    id text;
BEGIN
    FOR i IN 1..3200 LOOP
        a := 1 + floor(random() * 40)::int;
        b := 1 + (a + floor(random() * 39)::int) % 40;
        c := 1 + floor(random() * 3)::int;
        amt := round((1 + random() * 500)::numeric, scl[c]);
        id := 'w-' || i;
        IF i <= 3000 THEN
            legs := jsonb_build_array(
                jsonb_build_object('account', 'acct' || lpad(a::text, 2, '0'), 'side', 'debit',
                                   'amount', amt, 'currency', cur[c]),
                jsonb_build_object('account', 'acct' || lpad(b::text, 2, '0'), 'side', 'credit',
                                   'amount', amt, 'currency', cur[c]));
        ELSE
            amt2 := round((1 + random() * 500)::numeric, scl[1 + c % 3]);
            legs := jsonb_build_array(
                jsonb_build_object('account', 'acct' || lpad(a::text, 2, '0'), 'side', 'debit',
                                   'amount', amt, 'currency', cur[c]),
                jsonb_build_object('account', 'acct' || lpad(b::text, 2, '0'), 'side', 'credit',
                                   'amount', amt, 'currency', cur[c]),
                jsonb_build_object('account', 'acct' || lpad(b::text, 2, '0'), 'side', 'debit',
                                   'amount', amt2, 'currency', cur[1 + c % 3]),
                jsonb_build_object('account', 'acct' || lpad(a::text, 2, '0'), 'side', 'credit',
                                   'amount', amt2, 'currency', cur[1 + c % 3]));
        END IF;
        BEGIN
            IF i <= 3000 THEN
                PERFORM ledger.transfer(id, legs->0->>'account', legs->1->>'account', amt, cur[c]);
            ELSE
                PERFORM ledger.post_entry(id, legs);
            END IF;
            INSERT INTO attempts VALUES (i, id, legs, true, NULL);
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO attempts VALUES (i, id, legs, false, SQLSTATE);
        END;
    END LOOP;
END $$;

-- most succeed; the only refusals are flag violations on flagged accounts
SELECT count(*) FILTER (WHERE ok) > 2500 AS mostly_posted,
       count(*) FILTER (WHERE NOT ok) > 0 AS some_refused,
       bool_and(ok OR sqlstate = '23514') AS only_flag_refusals
  FROM attempts;

-- the legs that were posted, as the test knows them
CREATE TEMP VIEW posted_legs AS
SELECT a.n, a.transfer_id, l->>'account' AS account, l->>'currency' AS currency,
       l->>'side' AS side, (l->>'amount')::numeric AS amount
  FROM attempts a, jsonb_array_elements(a.legs) l WHERE a.ok;

-- one TransferPosted event per success, none for a refusal
SELECT (SELECT count(*) FROM ledger.events WHERE type = 'TransferPosted')
     = (SELECT count(*) FROM attempts WHERE ok) AS one_event_per_success,
       NOT EXISTS (SELECT 1 FROM attempts a JOIN ledger.events e ON e.stream = 'transfer:' || a.transfer_id
                    WHERE NOT a.ok) AS refusals_left_no_event;

-- balances equal the test's own totals
CREATE TEMP VIEW expected_balances AS
SELECT account, currency,
       coalesce(sum(amount) FILTER (WHERE side = 'debit'), 0) AS debits,
       coalesce(sum(amount) FILTER (WHERE side = 'credit'), 0) AS credits,
       count(*) AS postings
  FROM posted_legs GROUP BY account, currency;
SELECT count(*) AS balance_rows_differing FROM (
    (SELECT account, currency, debits, credits, credits - debits, postings FROM expected_balances
     EXCEPT ALL
     SELECT account, currency, debits_posted, credits_posted, balance, postings FROM ledger.balances)
    UNION ALL
    (SELECT account, currency, debits_posted, credits_posted, balance, postings FROM ledger.balances
     EXCEPT ALL
     SELECT account, currency, debits, credits, credits - debits, postings FROM expected_balances)) d;

-- the trial balance: debits = credits in every currency, and equal to the
-- amounts the test posted
SELECT t.currency, t.debits = t.credits AS balanced,
       t.debits = (SELECT sum(amount) FROM posted_legs p WHERE p.currency = t.currency AND side = 'debit')
         AS matches_test
  FROM ledger.currency_totals t ORDER BY t.currency;

-- balance_after is the running sum in position order
SELECT count(*) AS balance_after_differing FROM (
    SELECT balance_after,
           sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
             OVER (PARTITION BY account, currency ORDER BY position) AS running
      FROM ledger.account_entries) s
 WHERE balance_after <> running;
-- and each account's last entry carries its balance
SELECT bool_and(b.balance = e.balance_after AND b.last_position = e.position) AS last_entry_is_balance
  FROM ledger.balances b
  JOIN LATERAL (SELECT balance_after, position FROM ledger.account_entries x
                 WHERE x.account = b.account AND x.currency = b.currency
                 ORDER BY position DESC LIMIT 1) e ON true;

-- the balances are reproduced by aggregating the legs of TransferPosted events
SELECT count(*) AS differing_from_log FROM (
    SELECT l->>'account' AS account, l->>'currency' AS currency,
           sum(CASE l->>'side' WHEN 'credit' THEN (l->>'amount')::numeric
                               ELSE -(l->>'amount')::numeric END) AS balance
      FROM ledger.events e, jsonb_array_elements(e.data->'legs') l
     WHERE e.type = 'TransferPosted' GROUP BY 1, 2) log
  FULL JOIN ledger.balances b USING (account, currency)
 WHERE log.balance IS DISTINCT FROM b.balance;

-- flagged accounts never went below zero, at any entry
SELECT coalesce(min(e.balance_after), 0) >= 0 AS flagged_never_negative
  FROM ledger.account_entries e JOIN ledger.accounts a USING (account)
 WHERE 'debits_must_not_exceed_credits' = ANY (a.flags);

-- amounts keep their currency's scale in the events and the read models
SELECT bool_and(scale(e.amount) = c.scale) AS entries_at_scale
  FROM ledger.account_entries e JOIN ledger.currencies c ON c.code = e.currency;
SELECT bool_and(ledger.verify_projection(name)) AS all_verify FROM ledger.projection_status;
