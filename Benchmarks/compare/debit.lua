-- The peer workload for Redis (Benchmarks/compare.sh): an atomic debit only if the balance
-- suffices, plus a ledger entry. A Lua script runs atomically, so the check, the debit and
-- the entry are one step; the script's effects go to the AOF as one unit.
-- KEYS[1]: the account (a string holding the balance), KEYS[2]: the ledger (a stream),
-- ARGV[1]: the amount. Returns 1 when debited, 0 when the balance does not suffice.
local balance = tonumber(redis.call('GET', KEYS[1]))
local amount = tonumber(ARGV[1])
if balance == nil or balance < amount then
    return 0
end
redis.call('DECRBY', KEYS[1], amount)
redis.call('XADD', KEYS[2], '*', 'account', KEYS[1], 'amount', ARGV[1])
return 1
