-- ledger_cqrs benchmark (snapshots): load postings onto one account.
-- Run with -t: client c's k-th transaction (k = 1, 2, ...) is posting number
-- i = off + c * per + k - 1, a transfer of 1.00 USD from f<1 + i % 1000>
-- to 'hot' with transfer id 'L<i>'.  With per = postings / clients and two
-- phases (off = 0, then off = the first phase's -t), every i in
-- [0, postings) is posted exactly once and every f account gets exactly
-- postings / 1000 of them.
\set n :n + 1
\set i :off + :client_id * :per + :n - 1
\set f 1 + :i % 1000
SELECT ledger.transfer('L' || :i, 'f' || :f, 'hot', 1.00, 'USD');
