// CreditPricing — what an AI call costs in credits, which plans and packages exist, and
// which model serves a request: the business rules of the seed document as data and pure
// functions (docs/pricing.md). Also the protocol a payment gateway implements, and an
// in-memory one for tests.
//
// What may not live here: ledger rules (CreditCore), file or network I/O, clocks.
@_exported import CreditCore
