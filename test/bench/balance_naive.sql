-- ledger_cqrs benchmark (snapshots): the naive balance as of a position,
-- summing every entry of the account up to it (same points as
-- balance_at_pos.sql).
\set p random(:lo, :hi)
SELECT sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
  FROM ledger.account_entries
 WHERE account = :acct AND currency = 'USD' AND position <= (:p)::bigint;
