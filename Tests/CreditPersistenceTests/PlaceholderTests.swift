import Testing
@testable import CreditPersistence
