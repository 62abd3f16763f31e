-- ledger_cqrs benchmark: the same writes as plpgsql.sql (transfer_setup.sql),
-- written as a client would without a function: one statement per write in
-- an explicit transaction, each a round trip.  Balance rows are upserted in
-- the accounts' numeric order, so crossing transfers cannot deadlock.
-- Reported for context: this is the "hand-written SQL transfer" whose 0.23x
-- of the bare INSERT the issue quotes; the target is measured against the
-- PL/pgSQL function.
\set n :n + 1
\set a random(1, 1000)
\set b 1 + (:a + random(0, 998)) % 1000
\set lo least(:a, :b)
\set hi greatest(:a, :b)
BEGIN;
SELECT nextval('bench.pl_events_position_seq') AS pos \gset
INSERT INTO bench.pl_events (position, stream, version, type, data, metadata, recorded_at, tx_order)
VALUES (:pos::bigint, 'transfer:' || 's' || :run::text || '-' || :client_id::text || '-' || :n::text, 1, 'TransferPosted',
        jsonb_build_object(
            'transfer_id', 's' || :run::text || '-' || :client_id::text || '-' || :n::text,
            'legs', jsonb_build_array(
                jsonb_build_object('account', 'a' || :a::int, 'side', 'debit',
                                   'amount', 1.00, 'currency', 'USD'),
                jsonb_build_object('account', 'a' || :b::int, 'side', 'credit',
                                   'amount', 1.00, 'currency', 'USD')),
            'metadata', '{}'::jsonb),
        '{}', clock_timestamp(), pg_current_xact_id());
INSERT INTO bench.pl_balances AS b (account, currency, debits_posted, credits_posted, balance, postings, last_position)
VALUES ('a' || :lo::int, 'USD', CASE WHEN :lo::int = :a::int THEN 1.00 ELSE 0 END, CASE WHEN :lo::int = :a::int THEN 0 ELSE 1.00 END,
        CASE WHEN :lo::int = :a::int THEN -1.00 ELSE 1.00 END, 1, :pos::bigint)
ON CONFLICT (account, currency) DO UPDATE
    SET debits_posted = b.debits_posted + excluded.debits_posted,
        credits_posted = b.credits_posted + excluded.credits_posted,
        balance = b.balance + excluded.balance, postings = b.postings + 1,
        last_position = excluded.last_position
RETURNING b.balance AS bal_lo \gset
INSERT INTO bench.pl_entries (account, currency, position, transfer_id, side, amount, balance_after, recorded_at, leg)
VALUES ('a' || :lo::int, 'USD', :pos::bigint, 's' || :run::text || '-' || :client_id::text || '-' || :n::text,
        CASE WHEN :lo::int = :a::int THEN 'debit' ELSE 'credit' END, 1.00, :bal_lo::numeric, clock_timestamp(),
        CASE WHEN :lo::int = :a::int THEN 0 ELSE 1 END);
INSERT INTO bench.pl_balances AS b (account, currency, debits_posted, credits_posted, balance, postings, last_position)
VALUES ('a' || :hi::int, 'USD', CASE WHEN :hi::int = :a::int THEN 1.00 ELSE 0 END, CASE WHEN :hi::int = :a::int THEN 0 ELSE 1.00 END,
        CASE WHEN :hi::int = :a::int THEN -1.00 ELSE 1.00 END, 1, :pos::bigint)
ON CONFLICT (account, currency) DO UPDATE
    SET debits_posted = b.debits_posted + excluded.debits_posted,
        credits_posted = b.credits_posted + excluded.credits_posted,
        balance = b.balance + excluded.balance, postings = b.postings + 1,
        last_position = excluded.last_position
RETURNING b.balance AS bal_hi \gset
INSERT INTO bench.pl_entries (account, currency, position, transfer_id, side, amount, balance_after, recorded_at, leg)
VALUES ('a' || :hi::int, 'USD', :pos::bigint, 's' || :run::text || '-' || :client_id::text || '-' || :n::text,
        CASE WHEN :hi::int = :a::int THEN 'debit' ELSE 'credit' END, 1.00, :bal_hi::numeric, clock_timestamp(),
        CASE WHEN :hi::int = :a::int THEN 0 ELSE 1 END);
COMMIT;
