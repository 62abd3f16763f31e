-- ledger_cqrs benchmark (snapshots): ledger.balance_at by position, at a
-- random position between :lo and :hi (the middle half of :acct's history).
\set p random(:lo, :hi)
SELECT ledger.balance_at(:acct, 'USD', (:p)::bigint);
