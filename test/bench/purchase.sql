-- ledger_cqrs benchmark (projections): one ledger.append of a ~100-byte
-- 'Purchased' event, the type the section's projections fold, to one of
-- 1,000 streams; user in 1..1000, amount 0.01..100.00.
\set sid random(1, 1000)
\set u random(1, 1000)
\set c random(1, 10000)
SELECT ledger.append('shop:' || :sid, 'Purchased',
                     jsonb_build_object('user', (:u)::int, 'amount', (:c)::numeric / 100,
                                        'memo', 'benchmark purchase, fixed-length filler'));
