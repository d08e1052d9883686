-- The peer workload for PostgreSQL (Benchmarks/compare.sh, run by pgbench -M prepared):
-- an atomic debit only if the balance suffices, plus a ledger entry. One statement, so one
-- round trip and one transaction (autocommit): the UPDATE debits only when the balance
-- suffices, and the INSERT writes the entry only for a row the UPDATE debited.
\set aid random(1, :accounts)
WITH d AS (UPDATE accounts SET balance = balance - 1 WHERE id = :aid AND balance >= 1 RETURNING id) INSERT INTO ledger (account, amount) SELECT id, 1 FROM d;
