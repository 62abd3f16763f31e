-- ledger_cqrs benchmark (snapshots): ledger.balance_at by time, at a random
-- instant between :tlo and :thi (microseconds since the epoch: the append
-- times of the entries that bound the middle half of :acct's history).
\set t random(:tlo, :thi)
SELECT ledger.balance_at(:acct, 'USD', to_timestamp((:t)::bigint / 1000000.0));
