import ArgumentParser
import CreditEngine

/// `credits statement`: the statement of an account, a department or an organisation from
/// a data directory's log, streamed as JSON or CSV (docs/statements.md).
struct StatementCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "statement",
        abstract: "Print the statement of an account, a department or an organisation (read-only).",
        discussion: """
            Replays the subject's shard from its first log record (archived segments included), \
            so the statement is complete whatever snapshots exist, and streams every entry at \
            --from...--to (both inclusive; RFC 3339 such as 2026-12-01T00:00:00Z, a date \
            2026-12-01, or milliseconds since 1970) with who asked, between an opening and a \
            closing balance that reconcile with them. JSON: one document {"statement": ..., \
            "opening": ..., "entries": [...], "closing": ..., "totals": ...}. CSV: a header row, \
            then rows whose "record" column is opening, entry, closing, others or cost_centre. \
            A pruned archive (the log no longer starts at LSN 1) is an error \
            (statement_incomplete), not a partial statement. Nothing in the directory changes.
            """
    )

    @Option(help: "Data directory.") var data: String
    @OptionGroup var keys: DataKeyOptions
    @Option(help: "Account: t<tenant>/a<number> (a member's statement reconciles its organisation's pool).") var account: String?
    @Option(help: "Department of an organisation (cost centre): t<tenant>/d<id>.") var department: String?
    @Option(help: "Whole organisation: t<tenant>.") var organisation: String?
    @Option(help: "First time included: RFC 3339, a date, or ms since 1970 (default: the log's start).") var from: String?
    @Option(help: "Last time included: RFC 3339, a date, or ms since 1970 (default: the log's end).") var to: String?
    @Option(help: "json or csv.") var format = "json"

    func validate() throws {
        try checkPath("--data", data)
        _ = try request()
        guard format == "json" || format == "csv" else { throw ValidationError("--format must be json or csv, not \(format)") }
    }

    /// The subject and interval the options name; a bad one is a `ValidationError` (exit 64)
    /// naming the option, before anything is opened.
    func request() throws -> (subject: Statement.Subject, from: Timestamp?, to: Timestamp?) {
        let named = [account, department, organisation].compactMap { $0 }
        guard named.count == 1 else { throw ValidationError("name exactly one of --account, --department, --organisation") }
        let subject: Statement.Subject
        if let account {
            let parts = account.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let tenant = Self.number(parts[0], "t"), let number = Self.number(parts[1], "a"),
                  let accountNumber = UInt32(exactly: number) else {
                throw ValidationError("--account must be t<tenant>/a<number> (e.g. t5/a0), not \(account.prefix(64).debugDescription)")
            }
            subject = .account(AccountID(tenant: TenantID(tenant), number: accountNumber))
        } else if let department {
            let parts = department.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let tenant = Self.number(parts[0], "t"), let id = Self.number(parts[1], "d"),
                  let departmentID = UInt16(exactly: id) else {
                throw ValidationError("--department must be t<tenant>/d<id> (e.g. t7/d2), not \(department.prefix(64).debugDescription)")
            }
            subject = .department(TenantID(tenant), DepartmentID(departmentID))
        } else {
            guard let tenant = Self.number(Substring(organisation!), "t") else {
                throw ValidationError("--organisation must be t<tenant> (e.g. t7), not \(organisation!.prefix(64).debugDescription)")
            }
            subject = .organisation(TenantID(tenant))
        }
        do {
            let start = try from.map(Statement.parseTime)
            let end = try to.map(Statement.parseTime)
            if let start, let end, start > end { throw StatementError.emptyInterval(from: start, to: end) }
            return (subject, start, end)
        } catch let error as StatementError {
            throw ValidationError("--from/--to: \(error) [\(error.code)]")
        }
    }

    /// A decimal number with an optional one-letter prefix ("t5" or "5").
    static func number(_ text: Substring, _ prefix: Character) -> UInt64? {
        let digits = text.first == prefix ? text.dropFirst() : text
        guard !digits.isEmpty, digits.count <= 20, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }

    func run() async throws {
        let (subject, from, to) = try request()
        var storage = StorageConfiguration(directory: data)
        storage.encryption = try keys.ring(dataDirectory: data)
        let output = BufferedOutput()
        do {
            let shardCount: Int
            do { shardCount = try LogReplay.shardCount(of: storage) } catch { throw StatementError.recovery(error) }
            let statement = try Statement(subject, from: from, to: to,
                                          configuration: EngineConfiguration(shardCount: shardCount, storage: storage))
            var writer: any StatementWriter = format == "csv" ? CSVStatementWriter(output) : JSONStatementWriter(output)
            for try await line in statement { writer.write(line) }
            output.flush()
        } catch let error as StatementError {
            output.flush()
            printError("statement: \(error) [\(error.code)]")
            throw ExitCode(1)
        }
    }
}

/// Standard output through a 64 KiB buffer: a statement of millions of entries is written
/// in large writes (by `writeLine`, which retries short writes), never held whole.
final class BufferedOutput {
    private var text = ""
    private var holdsLines = false
    static let flushBytes = 64 * 1024

    init() { text.reserveCapacity(Self.flushBytes + 4_096) }

    func line(_ line: String) {
        if holdsLines { text += "\n" }
        text += line
        holdsLines = true
        if text.utf8.count >= Self.flushBytes { flush() }
    }

    func flush() {
        guard holdsLines else { return }
        writeLine(text)
        text.removeAll(keepingCapacity: true)
        holdsLines = false
    }
}

protocol StatementWriter {
    mutating func write(_ line: Statement.Line)
}

/// One JSON document, written as the lines come: the header's fields and `"entries": [`
/// first, one entry per line, then the closing and the totals.
struct JSONStatementWriter: StatementWriter {
    let output: BufferedOutput
    var first = true

    init(_ output: BufferedOutput) { self.output = output }

    static func standing(_ standing: Statement.Standing) -> String {
        "{\"balance_mc\": \(standing.balance.rawValue), \"held_mc\": \(standing.held.rawValue), \"debt_mc\": \(standing.debt.rawValue)}"
    }

    static func time(_ time: Timestamp?) -> String { time.map { jsonString(Statement.formatTime($0)) } ?? "null" }

    mutating func write(_ line: Statement.Line) {
        switch line {
        case .header(let header):
            var subject: String
            switch header.subject {
            case .account(let account): subject = "\"kind\": \"account\", \"account\": \"\(account)\""
            case .department(let tenant, let department):
                subject = "\"kind\": \"department\", \"tenant\": \"\(tenant)\", \"department\": \"\(department)\""
            case .organisation(let tenant): subject = "\"kind\": \"organisation\", \"tenant\": \"\(tenant)\""
            }
            subject += ", \"from\": \(Self.time(header.from)), \"to\": \(Self.time(header.to))"
            subject += ", \"from_ms\": \(header.from.map { String($0.millisSinceEpoch) } ?? "null")"
            subject += ", \"to_ms\": \(header.to.map { String($0.millisSinceEpoch) } ?? "null")"
            output.line("{\"statement\": {\(subject), \"shard\": \(header.shard), \"balance_account\": \"\(header.balanceAccount)\"},")
            output.line(" \"opening\": \(Self.standing(header.opening)),")
            output.line(" \"entries\": [")
        case .entry(let row):
            var text = first ? "  " : "  ,"
            first = false
            text += "{" + entryJSONFields(row.entry, lsn: row.lsn) + ", \"time\": " + jsonString(Statement.formatTime(row.entry.time))
            text += ", \"change_mc\": \(row.change.rawValue), \"balance_after_mc\": \(row.balanceAfter.rawValue)"
            text += ", \"department\": " + (row.department.map { "\"\($0)\"" } ?? "null")
            text += ", \"cost_centre\": " + (row.costCentre.map(jsonString) ?? "null") + "}"
            output.line(text)
        case .summary(let summary):
            output.line(" ],")
            output.line(" \"closing\": \(Self.standing(summary.closing)),")
            let centres = summary.costCentres.map { total in
                "{\"department\": " + (total.department.map { "\"\($0)\"" } ?? "null")
                    + ", \"cost_centre\": " + (total.costCentre.map(jsonString) ?? "null")
                    + ", \"entries\": \(total.entries), \"change_mc\": \(total.change.rawValue)}"
            }
            output.line(" \"totals\": {\"entries\": \(summary.entries), \"change_mc\": \(summary.change.rawValue), "
                + "\"others_change_mc\": \(summary.othersChange.rawValue), \"cost_centres\": [\(centres.joined(separator: ", "))]},")
            output.line(" \"records_replayed\": \(summary.recordsReplayed)}")
        }
    }
}

/// CSV (RFC 4180): one header row, then every row with the same columns; the "record"
/// column says what a row is (opening, entry, closing, others, cost_centre).
struct CSVStatementWriter: StatementWriter {
    let output: BufferedOutput
    var header: Statement.Header?

    static let columns = ["record", "lsn", "sequence", "time", "time_ms", "kind", "account", "principal", "department",
                          "cost_centre", "amount_mc", "change_mc", "balance_after_mc", "held_mc", "debt_after_mc",
                          "available_after_mc", "ok", "error", "key", "reason", "model", "provider", "units", "entries"]

    init(_ output: BufferedOutput) {
        self.output = output
        output.line(Self.columns.joined(separator: ","))
    }

    /// A field, quoted when it holds a comma, a quote or a line break.
    static func field(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        var quoted = "\""
        for character in text { quoted += character == "\"" ? "\"\"" : String(character) }
        return quoted + "\""
    }

    func row(_ values: [String: String]) {
        output.line(Self.columns.map { values[$0].map(Self.field) ?? "" }.joined(separator: ","))
    }

    func standingRow(_ record: String, _ time: Timestamp?, _ standing: Statement.Standing, extra: [String: String] = [:]) {
        var values = ["record": record, "account": header.map { "\($0.balanceAccount)" } ?? "",
                      "balance_after_mc": String(standing.balance.rawValue), "held_mc": String(standing.held.rawValue),
                      "debt_after_mc": String(standing.debt.rawValue)]
        if let time { values["time"] = Statement.formatTime(time); values["time_ms"] = String(time.millisSinceEpoch) }
        values.merge(extra) { $1 }
        row(values)
    }

    mutating func write(_ line: Statement.Line) {
        switch line {
        case .header(let header):
            self.header = header
            standingRow("opening", header.from, header.opening)
        case .entry(let statementRow):
            let entry = statementRow.entry
            var values: [String: String] = ["record": "entry", "kind": "\(entry.kind)", "key": "\(entry.key)"]
            values["lsn"] = String(statementRow.lsn)
            values["sequence"] = String(entry.sequence)
            values["time"] = Statement.formatTime(entry.time)
            values["time_ms"] = String(entry.time.millisSinceEpoch)
            values["account"] = entry.account.map { "\($0)" } ?? ""
            values["principal"] = statementRow.principal
            values["department"] = statementRow.department.map { "\($0)" } ?? ""
            values["cost_centre"] = statementRow.costCentre ?? ""
            values["amount_mc"] = String(entry.amount.rawValue)
            values["change_mc"] = String(statementRow.change.rawValue)
            values["balance_after_mc"] = String(statementRow.balanceAfter.rawValue)
            values["debt_after_mc"] = String(entry.debtAfter.rawValue)
            values["available_after_mc"] = String(entry.availableAfter.rawValue)
            values["ok"] = entry.error == nil ? "true" : "false"
            values["error"] = entry.error.map { "\($0)" } ?? ""
            values["reason"] = entry.reason ?? ""
            if let usage = entry.usage {
                values["model"] = usage.model
                values["provider"] = usage.provider
                values["units"] = String(usage.units)
            }
            row(values)
        case .summary(let summary):
            standingRow("closing", header?.to, summary.closing,
                        extra: ["change_mc": String(summary.change.rawValue), "entries": String(summary.entries)])
            row(["record": "others", "account": header.map { "\($0.balanceAccount)" } ?? "",
                 "change_mc": String(summary.othersChange.rawValue)])
            for total in summary.costCentres {
                row(["record": "cost_centre", "department": total.department.map { "\($0)" } ?? "",
                     "cost_centre": total.costCentre ?? "", "change_mc": String(total.change.rawValue),
                     "entries": String(total.entries)])
            }
        }
    }
}
