-- ledger_cqrs benchmark: one ledger.append per transaction.
-- Keep the data expression identical to bare_insert.sql.
\set sid random(1, 1000)
SELECT ledger.append('s' || :sid, 'Deposited',
                     jsonb_build_object('account', 's' || :sid, 'amount', 100, 'currency', 'EUR',
                                        'memo', 'benchmark deposit, fixed-length filler'),
                     NULL);
