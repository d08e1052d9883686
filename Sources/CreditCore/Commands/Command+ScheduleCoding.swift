/// The binary form of the scheduling commands (tags 23–34; docs/formats.md, "Command
/// encoding"). Their fingerprint hashes the same bytes, so the two cannot disagree.
extension Action {
    /// Writes the tag and fields of a scheduling command. Precondition: it is one.
    func encodeScheduling(into writer: inout ByteWriter) {
        switch self {
        case .subscribe(let account, let terms):
            writer.write(UInt8(23)); writer.write(account); terms.encode(into: &writer)
        case .changePlan(let account, let request) where request.isDeferred:
            writer.write(UInt8(24)); writer.write(account); request.terms.encode(into: &writer)
        case .cancelSubscription(let account):
            writer.write(UInt8(25)); writer.write(account)
        case .resumeSubscription(let account):
            writer.write(UInt8(26)); writer.write(account)
        case .renewSubscription(let account, let cycle, let grace):
            writer.write(UInt8(27)); writer.write(account); writer.write(cycle); writer.write(grace)
        case .lapseSubscription(let account, let cycle, let reason, let grace):
            writer.write(UInt8(28)); writer.write(account); writer.write(cycle); writer.write(reason.rawValue)
            writer.write(grace)
        case .expireGrants(let account, let grace):
            writer.write(UInt8(29)); writer.write(account); writer.write(grace)
        case .forfeitGrants(let account):
            writer.write(UInt8(30)); writer.write(account)
        case .setAutoRefill(let account, let terms):
            writer.write(UInt8(31)); writer.write(account); writer.write(terms != nil)
            if let terms {
                writer.write(terms.threshold); writer.write(terms.refillCredits); writer.write(terms.refillsPerMonthMax)
                writer.write(terms.cooldownMillis); writer.write(terms.attemptsMax)
            }
        case .completeRefill(let account, let refill, let payment):
            writer.write(UInt8(32)); writer.write(account); writer.write(refill)
            writer.write(payment.amount); writer.write(payment.expiresAt); writer.write(payment.costBasisNanoUSDPerCredit)
            writer.write(payment.reference)
        case .failRefill(let account, let refill, let failure):
            writer.write(UInt8(33)); writer.write(account); writer.write(refill)
            writer.write(failure.declined); writer.write(failure.reason); writer.write(failure.retryAt != nil)
            if let retryAt = failure.retryAt { writer.write(retryAt) }
        case .changePlan(let account, let request):
            writer.write(UInt8(34)); writer.write(account); writer.write(request.replacing != nil)
            if let replacing = request.replacing { writer.write(replacing.text) }
            request.terms.encode(into: &writer); writer.write(request.paidCents); writer.write(request.reference)
        default:
            preconditionFailure("not a scheduling command")
        }
    }

    /// Reads the fields of scheduling command `tag` (23–34); nil for another tag.
    static func decodeScheduling(tag: UInt8, from reader: inout ByteReader) throws(BinaryDecodingError) -> Action? {
        switch tag {
        case 23: return .subscribe(try reader.readAccount(), try SubscriptionTerms(decoding: &reader))
        case 24:
            let account = try reader.readAccount()
            return .changePlan(account, PlanChangeRequest(deferring: try SubscriptionTerms(decoding: &reader)))
        case 25: return .cancelSubscription(try reader.readAccount())
        case 26: return .resumeSubscription(try reader.readAccount())
        case 27:
            let account = try reader.readAccount()
            let cycle = try reader.read(UInt32.self)
            return .renewSubscription(account, cycle: cycle, graceMillis: try reader.read(Int64.self))
        case 28:
            let account = try reader.readAccount()
            let cycle = try reader.read(UInt32.self)
            let reasonOffset = reader.offset
            guard let reason = LapseReason(rawValue: try reader.read(UInt8.self)) else {
                throw .invalid(offset: reasonOffset, field: "lapse reason")
            }
            return .lapseSubscription(account, cycle: cycle, reason: reason, graceMillis: try reader.read(Int64.self))
        case 29:
            let account = try reader.readAccount()
            return .expireGrants(account, graceMillis: try reader.read(Int64.self))
        case 30: return .forfeitGrants(try reader.readAccount())
        case 31:
            let account = try reader.readAccount()
            guard try reader.readBool("auto-refill terms presence") else { return .setAutoRefill(account, nil) }
            let threshold = try reader.readAmount()
            let credits = try reader.read(Int64.self)
            let perMonth = try reader.read(UInt16.self)
            let cooldown = try reader.read(Int64.self)
            let attempts = try reader.read(UInt8.self)
            return .setAutoRefill(account, AutoRefillTerms(threshold: threshold, refillCredits: credits, refillsPerMonthMax: perMonth,
                                                           cooldownMillis: cooldown, attemptsMax: attempts))
        case 32:
            let account = try reader.readAccount()
            let refill = try reader.read(UInt64.self)
            let amount = try reader.readAmount()
            let expiresAt = try reader.readTimestamp()
            let costBasis = try reader.read(UInt32.self)
            let reference = try reader.readString(maxBytes: Command.decodedTextBytesMax, "payment reference")
            return .completeRefill(account, refill: refill, RefillPayment(amount: amount, expiresAt: expiresAt,
                                                                          costBasisNanoUSDPerCredit: costBasis, reference: reference))
        case 33:
            let account = try reader.readAccount()
            let refill = try reader.read(UInt64.self)
            let declined = try reader.readBool("refill failure kind")
            let reason = try reader.readString(maxBytes: Command.decodedTextBytesMax, "refill failure reason")
            let retryAt = try reader.readBool("retry time presence") ? try reader.readTimestamp() : nil
            return .failRefill(account, refill: refill, RefillFailure(declined: declined, reason: reason, retryAt: retryAt))
        case 34:
            let account = try reader.readAccount()
            let replacing = try reader.readBool("replaced plan presence")
                ? try reader.readString(maxBytes: Command.decodedTextBytesMax, "replaced plan") : nil
            let terms = try SubscriptionTerms(decoding: &reader)
            let paidCents = try reader.read(Int64.self)
            let reference = try reader.readString(maxBytes: Command.decodedTextBytesMax, "plan change payment reference")
            var request = PlanChangeRequest(deferring: terms)
            request.replacing = replacing.map { InternedName($0) }
            request.paidCents = paidCents
            request.reference = reference
            return .changePlan(account, request)
        default:
            return nil
        }
    }

    /// The fingerprint input of a scheduling command: its fields (the scheduler's own
    /// commands, a million at a month end), or its encoded bytes (the ones with text).
    func feedScheduling(into hasher: inout StableHasher) {
        switch self {
        case .renewSubscription(let account, let cycle, let grace):
            hasher.combine(UInt8(27)); account.feed(into: &hasher); hasher.combine(cycle); hasher.combine(grace)
            return
        case .lapseSubscription(let account, let cycle, let reason, let grace):
            hasher.combine(UInt8(28)); account.feed(into: &hasher); hasher.combine(cycle); hasher.combine(reason.rawValue)
            hasher.combine(grace)
            return
        case .expireGrants(let account, let grace):
            hasher.combine(UInt8(29)); account.feed(into: &hasher); hasher.combine(grace)
            return
        case .forfeitGrants(let account):
            hasher.combine(UInt8(30)); account.feed(into: &hasher)
            return
        default:
            break
        }
        var writer = ByteWriter(capacity: 64)
        encodeScheduling(into: &writer)
        hasher.combine(UInt64(writer.count))
        for byte in writer.bytes { hasher.combine(byte) }
    }

    /// Text a scheduling command carries (for `Command.encodedSizeBound`).
    var schedulingTextBytes: Int {
        switch self {
        case .subscribe(_, let terms): terms.plan.utf8Count
        case .changePlan(_, let request):
            (request.replacing?.utf8Count ?? 0) + request.terms.plan.utf8Count + request.reference.utf8.count
        case .completeRefill(_, _, let payment): payment.reference.utf8.count
        case .failRefill(_, _, let failure): failure.reason.utf8.count
        default: 0
        }
    }
}

extension SubscriptionTerms {
    func encode(into writer: inout ByteWriter) {
        writer.write(plan.text); writer.write(allocation); writer.write(priceCents)
        writer.write(anchor != nil)
        if let anchor { writer.write(anchor) }
        writer.write(rollover); writer.write(rolloverMonths)
    }

    init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        let plan = try reader.readString(maxBytes: Command.decodedTextBytesMax, "plan")
        let allocation = try reader.readAmount()
        let price = try reader.read(Int64.self)
        let anchor = try reader.readBool("anchor presence") ? try reader.readTimestamp() : nil
        let rollover = try reader.readBool("rollover")
        self.init(plan: plan, allocation: allocation, priceCents: price, anchor: anchor, rollover: rollover,
                  rolloverMonths: try reader.read(UInt8.self))
    }
}
