// CreditCore — the pure ledger of Aideon Credits.
//
// What lives here: money and identifier types, the command and outcome values, and the
// deterministic state machine `Ledger` that applies one command at a given timestamp and
// returns its ledger entry. Also the invariant checker the tests run after every step.
//
// What may not live here: file or network I/O, clock reads, randomness, threads, actors.
// Time enters only as the timestamp the caller stamps on each command, so replaying the
// same commands at the same timestamps gives the same state, bit for bit.
