/// Encodings of the core's value types, shared by the command codec and the snapshot.
/// Fixed width, little-endian; see docs/formats.md.
extension ByteWriter {
    package mutating func write(_ id: TenantID) { write(id.rawValue) }
    package mutating func write(_ id: AccountID) { write(id.tenant.rawValue); write(id.number) }
    package mutating func write(_ id: HoldID) { write(id.tenant.rawValue); write(id.number) }
    package mutating func write(_ id: DepartmentID) { write(id.rawValue) }
    package mutating func write(_ key: IdempotencyKey) { write(key.high); write(key.low) }
    package mutating func write(_ amount: Millicredits) { write(amount.rawValue) }
    package mutating func write(_ time: Timestamp) { write(time.millisSinceEpoch) }
    package mutating func write(_ scope: ChargeScope) { write(scope.provider); write(scope.model) }

    /// A 0/1 presence byte, then the value when present.
    package mutating func write(_ amount: Millicredits?) {
        write(amount != nil)
        if let amount { write(amount) }
    }
}

extension ByteReader {
    package mutating func readTenant() throws(BinaryDecodingError) -> TenantID { TenantID(try read(UInt64.self)) }
    package mutating func readAccount() throws(BinaryDecodingError) -> AccountID {
        AccountID(tenant: try readTenant(), number: try read(UInt32.self))
    }
    package mutating func readHold() throws(BinaryDecodingError) -> HoldID {
        HoldID(tenant: try readTenant(), number: try read(UInt64.self))
    }
    package mutating func readDepartment() throws(BinaryDecodingError) -> DepartmentID { DepartmentID(try read(UInt16.self)) }
    package mutating func readKey() throws(BinaryDecodingError) -> IdempotencyKey {
        IdempotencyKey(high: try read(UInt64.self), low: try read(UInt64.self))
    }
    package mutating func readAmount() throws(BinaryDecodingError) -> Millicredits { Millicredits(try read(Int64.self)) }
    package mutating func readTimestamp() throws(BinaryDecodingError) -> Timestamp {
        Timestamp(millisSinceEpoch: try read(Int64.self))
    }
    package mutating func readScope() throws(BinaryDecodingError) -> ChargeScope {
        ChargeScope(provider: try read(UInt32.self), model: try read(UInt32.self))
    }
    package mutating func readOptionalAmount(_ field: String) throws(BinaryDecodingError) -> Millicredits? {
        try readBool(field) ? try readAmount() : nil
    }
}
