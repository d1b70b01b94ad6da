// The Swift bindings against a real Synapse: run through `ffi-test-runner`, which provides the
// homeserver, two users (A and B) and a shared room, and a second homeserver without delayed
// events with a user C and a room of C's own, in `RTC_TEST_*` variables. See
// scripts/bindings/test-swift.sh.
//
// The steps build on each other and run in the order of their names (test1…, test2…); a failed
// step fails every later one.
import Foundation
import MatrixSdkRtc
import XCTest

let env = ProcessInfo.processInfo.environment
let room = env["RTC_TEST_ROOM_ID"]!
let slot = env["RTC_TEST_SLOT_ID"]!
let call = roomCall(roomId: room)
let fast = JoinConfig(delayMs: 3_000, restartIntervalMs: 1_000)
let timeout: TimeInterval = 30

struct Timeout: Error, CustomStringConvertible {
    let description: String
}

/// Every value a listener received (on a library thread), for the test to wait on.
class Values<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    private var onOtherThreads = false

    func push(_ value: T) {
        lock.lock()
        defer { lock.unlock() }
        items.append(value)
        onOtherThreads = onOtherThreads || !Thread.isMainThread
    }

    var all: [T] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }

    var latest: T? { all.last }

    var sawLibraryThread: Bool {
        lock.lock()
        defer { lock.unlock() }
        return onOtherThreads
    }

    /// Waits until `predicate` holds for the values received, checking after each short pause.
    func waitFor(_ what: String, _ predicate: ([T]) -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !predicate(all) {
            if Date() > deadline {
                throw Timeout(description: "timed out waiting for \(what); saw \(all)")
            }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }
}

final class ActiveValues: Values<Bool>, CallActiveListener, @unchecked Sendable {
    func onUpdate(active: Bool) { push(active) }
}

final class StatusValues: Values<OwnStatus>, OwnStatusListener, @unchecked Sendable {
    func onUpdate(status: OwnStatus) { push(status) }
}

/// The diagnostics reported, and how many were missed if this listener fell behind.
final class DiagnosticValues: Values<Diagnostic>, DiagnosticsListener, @unchecked Sendable {
    let missed = Values<UInt64>()

    func onUpdate(event: DiagnosticEvent) {
        switch event {
        case .reported(let diagnostic): push(diagnostic)
        case .missed(let count): missed.push(count)
        }
    }
}

/// Calls started and ended, and the calls active at each resync if this listener fell behind.
final class CallEventValues: Values<CallEvent>, CallEventsListener, @unchecked Sendable {
    let resyncs = Values<[CallId]>()

    func onUpdate(event: CallEvent) {
        switch event {
        case .started, .ended: push(event)
        case .resync(_, let active): resyncs.push(active)
        }
    }
}

/// The membership changes, and each resync's calls with their participants if this listener
/// fell behind.
final class SessionChangeValues: Values<SessionChange>, SessionChangesListener, @unchecked Sendable {
    let resyncs = Values<[CallParticipants]>()

    func onUpdate(update: SessionUpdate) {
        switch update {
        case .change(let change): push(change)
        case .resync(_, let calls): resyncs.push(calls)
        }
    }
}

/// The participant list, kept up to date from the diffs as an app would.
final class ParticipantRows: Values<[Participant]>, ParticipantsListener, @unchecked Sendable {
    private let rowsLock = NSLock()
    private var rows: [Participant] = []
    private(set) var batches: [[ParticipantsDiff]] = []

    func onUpdate(diffs: [ParticipantsDiff]) {
        rowsLock.lock()
        for diff in diffs {
            switch diff {
            case .reset(let values): rows = values
            case .append(let values): rows.append(contentsOf: values)
            case .clear: rows.removeAll()
            case .pushFront(let value): rows.insert(value, at: 0)
            case .pushBack(let value): rows.append(value)
            case .popFront: rows.removeFirst()
            case .popBack: rows.removeLast()
            case .insert(let index, let value): rows.insert(value, at: Int(index))
            case .set(let index, let value): rows[Int(index)] = value
            case .remove(let index): rows.remove(at: Int(index))
            case .truncate(let length): rows = Array(rows.prefix(Int(length)))
            }
        }
        batches.append(diffs)
        let snapshot = rows
        rowsLock.unlock()
        push(snapshot)
    }

    var users: [String] { (latest ?? []).map { $0.userId } }
}

func configFor(_ who: String) -> ClientConfig {
    // C lives on the second homeserver, the one without delayed events.
    ClientConfig(
        homeserverUrl: env[who == "C" ? "RTC_TEST_NODELAY_HOMESERVER_URL" : "RTC_TEST_HOMESERVER_URL"]!,
        userId: env["RTC_TEST_\(who)_USER_ID"]!,
        deviceId: env["RTC_TEST_\(who)_DEVICE_ID"]!,
        accessToken: env["RTC_TEST_\(who)_ACCESS_TOKEN"]!,
        storePath: env["RTC_TEST_STORE_DIR"]! + "/swift-\(who)",
        // A's stores are encrypted, B's are not: both paths are covered (deriving the store
        // key takes a few seconds in a debug build, so only A pays for it).
        storePassphrase: who == "A" ? "swift test passphrase" : nil,
        // Without a passphrase our calls (delay ids) are persisted only by explicit opt-in:
        // B opts in, so its resume after a restart is the plaintext path.
        persistCallsUnencrypted: who == "B"
    )
}

/// Fails unless `body` throws an `RtcFfiError` for which `matches` holds, with a message.
func expectError(
    _ what: String, _ matches: (RtcFfiError) -> Bool, _ body: () async throws -> Void
) async {
    do {
        try await body()
        XCTFail("expected \(what)")
    } catch let error as RtcFfiError {
        XCTAssertTrue(matches(error), "expected \(what), got \(error)")
        XCTAssertFalse(error.localizedDescription.isEmpty)
    } catch {
        XCTFail("expected \(what), got \(error)")
    }
}

func isInvalidArgument(_ error: RtcFfiError) -> Bool {
    if case .InvalidArgument = error { return true }
    return false
}

func isNotRunning(_ error: RtcFfiError) -> Bool {
    if case .NotRunning = error { return true }
    return false
}

func isNotInCall(_ error: RtcFfiError) -> Bool {
    if case .NotInCall = error { return true }
    return false
}

func isAlreadyJoined(_ error: RtcFfiError) -> Bool {
    if case .AlreadyJoined = error { return true }
    return false
}

extension TaskHandle {
    /// Waits until the task has ended.
    func waitUntilFinished() async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !isFinished() {
            if Date() > deadline { throw Timeout(description: "a cancelled task did not finish") }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }
}

/// What the steps share: XCTest makes a new test-case object for each test.
enum Shared {
    static var a: RtcClient!
    static var b: RtcClient!
    static var handles: [TaskHandle] = []
    static let diagnostics = DiagnosticValues()
    static let participants = ParticipantRows()
    static let active = ActiveValues()
    static let status = StatusValues()
    static let callEvents = CallEventValues()
    static let changes = SessionChangeValues()
    /// The last step that passed: a step runs only if the one before it passed.
    static var passedStep = 0
}

final class BindingsTests: XCTestCase {
    /// Runs step `number` if the step before it passed, and records whether it passed.
    private func step(_ number: Int, _ body: () async throws -> Void) async throws {
        guard Shared.passedStep == number - 1 else {
            XCTFail("not run: step \(Shared.passedStep + 1) failed")
            return
        }
        let failuresBefore = testRun?.failureCount ?? 0
        try await body()
        if (testRun?.failureCount ?? 0) == failuresBefore {
            Shared.passedStep = number
        }
    }

    func test1BuildAndTypedErrors() async throws {
        try await step(1) {
            var bad = configFor("A")
            bad.userId = "not a user id"
            await expectError("InvalidArgument", isInvalidArgument) { _ = try await RtcClient.build(config: bad) }
            // No store and no opt-in to an ephemeral device: refused.
            var noStore = configFor("A")
            noStore.storePath = nil
            await expectError("InvalidArgument", isInvalidArgument) { _ = try await RtcClient.build(config: noStore) }
            Shared.a = try await RtcClient.build(config: configFor("A"))
            Shared.b = try await RtcClient.build(config: configFor("B"))
            let a = Shared.a!
            XCTAssertEqual(a.userId(), env["RTC_TEST_A_USER_ID"])
            XCTAssertEqual(a.deviceId(), env["RTC_TEST_A_DEVICE_ID"])
            XCTAssertEqual(call, CallId(roomId: room, slotId: slot))
            await expectError("InvalidArgument", isInvalidArgument) {
                try await a.join(call: CallId(roomId: "not-a-room", slotId: slot), config: fast)
            }
            await expectError("InvalidArgument", isInvalidArgument) {
                try await a.join(call: CallId(roomId: room, slotId: "no-slot"), config: fast)
            }
            await expectError("NotRunning", isNotRunning) {
                try await a.join(call: call, config: fast)
            }
            await expectError("InvalidArgument", isInvalidArgument) {
                _ = try a.participants(call: CallId(roomId: "not-a-room", slotId: slot))
            }
        }
    }

    func test2StartAndDiagnostics() async throws {
        try await step(2) {
            let (a, b) = (Shared.a!, Shared.b!)
            Shared.handles.append(a.subscribeDiagnostics(listener: Shared.diagnostics))
            XCTAssertEqual(a.syncStatus(), .notStarted)
            async let startA: Void = a.start()
            async let startB: Void = b.start()
            _ = try await (startA, startB)
            try await a.start()  // a second start does nothing
            let features = try await a.features()
            XCTAssertTrue(features.stickyEvents && features.delayedEvents, "\(features)")
            // The supervised sync loop's first answer comes at once (it does not long-poll).
            let deadline = Date().addingTimeInterval(30)
            while a.syncStatus() != .running {
                XCTAssertLessThan(Date(), deadline, "\(a.syncStatus())")
                if Date() >= deadline { break }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            // So does the side connection's (sticky events over sliding sync).
            while a.sideSyncStatus() != .running {
                XCTAssertLessThan(Date(), deadline, "\(a.sideSyncStatus())")
                if Date() >= deadline { break }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            let bad = env["RTC_TEST_BAD_EVENT_ID"]!
            try await Shared.diagnostics.waitFor("the bad membership's diagnostic") { all in
                all.contains { $0.eventId == bad }
            }
            let found = Shared.diagnostics.all.first { $0.eventId == bad }!
            XCTAssertEqual(found.kind, .membership)
            XCTAssertEqual(found.roomId, room)
            XCTAssertFalse(found.reason.isEmpty)
            XCTAssertNil(found.cap)
            XCTAssertNil(found.dropped)
        }
    }

    func test3JoinAndSeeOwnEntry() async throws {
        try await step(3) {
            let a = Shared.a!
            let (participants, active, status) = (Shared.participants, Shared.active, Shared.status)
            Shared.handles += [
                try a.subscribeParticipants(call: call, listener: participants),
                try a.subscribeCallActive(call: call, listener: active),
                try a.subscribeOwnStatus(call: call, listener: status),
                a.subscribeCallEvents(listener: Shared.callEvents),
                a.subscribeSessionChanges(listener: Shared.changes),
            ]
            // Each subscription delivered its current value before returning.
            XCTAssertEqual(participants.batches.first, [.reset(values: [])])
            XCTAssertEqual(participants.latest, [])
            XCTAssertEqual(active.latest, false)
            XCTAssertEqual(status.latest, .disconnected)

            try await a.join(call: call, config: fast)
            XCTAssertEqual(try a.ownStatus(call: call), .connected(deadManSwitch: true))
            let me = env["RTC_TEST_A_USER_ID"]!
            try await participants.waitFor("A's own entry") { $0.last?.contains { $0.userId == me } == true }
            let own = participants.latest!.first!
            XCTAssertEqual(own.deviceId, env["RTC_TEST_A_DEVICE_ID"])
            XCTAssertEqual(own.roomId, room)
            XCTAssertEqual(own.slotId, slot)
            XCTAssertEqual(own.transportServiceUrl, env["RTC_TEST_LIVEKIT_SERVICE_URL"]!)
            XCTAssertFalse(own.memberId.isEmpty || own.livekitIdentity.isEmpty)
            XCTAssertGreaterThan(own.createdTs, 0)
            try await active.waitFor("the call to be active") { $0.last == true }
            try await status.waitFor("A connected") { all in
                if case .connected = all.last { return true }
                return false
            }
            XCTAssertTrue(try a.isCallActive(call: call))
            XCTAssertEqual(a.activeCalls(), [call])
            try await Shared.callEvents.waitFor("the call to start") { all in
                all.contains { $0 == .started(call: call) }
            }
            try await Shared.changes.waitFor("A's join as a session change") { all in
                all.contains { if case .joined(let p) = $0 { return p.userId == me } else { return false } }
            }
            // Joining again as another member is refused, with the reason as the error's kind.
            await expectError("AlreadyJoined", isAlreadyJoined) {
                try await a.join(call: call, config: fast)
            }
            XCTAssertEqual(try a.ownStatus(call: call), .connected(deadManSwitch: true))
            // Our membership can change while joined: it is refreshed with the new transport.
            try await a.updateMembership(call: call, transportUrl: "https://lk2.invalid", callIntent: nil)
            try await participants.waitFor("A's new transport") {
                $0.last?.contains { $0.transportServiceUrl == "https://lk2.invalid" } == true
            }
            await expectError("NotInCall", isNotInCall) {
                try await a.updateMembership(
                    call: roomCall(roomId: "!elsewhere:localhost"), transportUrl: nil, callIntent: nil)
            }
            XCTAssertTrue(participants.sawLibraryThread)
        }
    }

    func test4SecondParticipantJoins() async throws {
        try await step(4) {
            let (a, b, participants) = (Shared.a!, Shared.b!, Shared.participants)
            try await b.join(call: call, config: fast)
            let other = env["RTC_TEST_B_USER_ID"]!
            try await participants.waitFor("B in A's list") { $0.last?.contains { $0.userId == other } == true }
            XCTAssertEqual(Set(participants.users), Set([env["RTC_TEST_A_USER_ID"]!, other]))
            XCTAssertEqual(try a.participants(call: call).map { $0.userId }, participants.users)
        }
    }

    /// Named to sort between steps 4 and 5 (XCTest runs tests by name).
    func test4bLivekitCredentials() async throws {
        try await step(5) {
            // The homeserver advertises a stand-in JWT service (see ffi-test-runner); A moved
            // to another transport above, so it moves back first.
            let (a, b) = (Shared.a!, Shared.b!)
            let service = env["RTC_TEST_LIVEKIT_SERVICE_URL"]!
            let me = env["RTC_TEST_A_USER_ID"]!
            try await a.updateMembership(call: call, transportUrl: service, callIntent: nil)
            let deadline = Date().addingTimeInterval(timeout)
            var seen: Participant?
            while seen == nil {
                seen = try b.participants(call: call).first {
                    $0.userId == me && $0.transportServiceUrl == service
                }
                if seen == nil {
                    if Date() > deadline { throw Timeout(description: "B never saw A on the service") }
                    try await Task.sleep(nanoseconds: 50_000_000)
                }
            }
            let credentials = try await a.livekitCredentials(call: call)
            XCTAssertEqual(credentials.serviceUrl, service)
            XCTAssertEqual(credentials.sfuUrl, env["RTC_TEST_LIVEKIT_SFU_URL"]!)
            XCTAssertEqual(credentials.endpoint, "service /get_token")
            // The identity is the one B computes for A's membership.
            XCTAssertEqual(credentials.identity, seen!.livekitIdentity)
            XCTAssertTrue(credentials.identityMatchesMembership)
            // The JWT's claims (its signature is checked by the Python and Kotlin suites).
            let parts = credentials.jwt.split(separator: ".").map(String.init)
            XCTAssertEqual(parts.count, 3)
            var payload = parts[1].replacingOccurrences(of: "-", with: "+")
                .replacingOccurrences(of: "_", with: "/")
            payload += String(repeating: "=", count: (4 - payload.count % 4) % 4)
            let claims = try JSONSerialization.jsonObject(with: Data(base64Encoded: payload)!)
                as! [String: Any]
            XCTAssertEqual(claims["sub"] as? String, credentials.identity)
            XCTAssertEqual((claims["video"] as? [String: Any])?["room"] as? String, credentials.room)
            let cached = try await a.livekitCredentials(call: call)
            XCTAssertEqual(cached, credentials)
            await expectError("NotInCall", isNotInCall) {
                _ = try await a.livekitCredentials(call: roomCall(roomId: "!elsewhere:localhost"))
            }
        }
    }

    func test5SecondParticipantResumesAfterARestart() async throws {
        try await step(6) {
            let other = env["RTC_TEST_B_USER_ID"]!
            // B's app is killed mid-call: stopped without leaving, then built again on its stores.
            Shared.b.stop()
            Shared.b = nil
            Shared.b = try await RtcClient.build(config: configFor("B"))
            let b = Shared.b!
            try await b.start()
            XCTAssertEqual(b.interruptedCalls(), [call])
            try await Shared.participants.waitFor("B's old membership to end") {
                $0.last?.contains { $0.userId == other } == false
            }
            try await b.join(call: call, config: fast)
            try await Shared.participants.waitFor("B back in A's list") {
                $0.last?.contains { $0.userId == other } == true
            }
        }
    }

    func test6SecondParticipantLeaves() async throws {
        try await step(7) {
            let (b, participants) = (Shared.b!, Shared.participants)
            let other = env["RTC_TEST_B_USER_ID"]!
            try await b.leave(call: call)
            XCTAssertEqual(try b.ownStatus(call: call), .disconnected)
            try await participants.waitFor("B gone from A's list") { $0.last?.contains { $0.userId == other } == false }
            XCTAssertEqual(participants.users, [env["RTC_TEST_A_USER_ID"]!])
            func leftReason(_ change: SessionChange) -> LeftReason? {
                if case .left(let participant, let reason) = change, participant.userId == other { return reason }
                return nil
            }
            try await Shared.changes.waitFor("B's leave with its reason") { $0.contains { leftReason($0) != nil } }
            XCTAssertEqual(Shared.changes.all.compactMap(leftReason).last, .leaveEvent)
        }
    }

    func test7Leave() async throws {
        try await step(8) {
            let a = Shared.a!
            try await a.leave(call: call)
            try await Shared.status.waitFor("A disconnected") { $0.last == .disconnected }
            try await Shared.participants.waitFor("an empty list") { $0.last?.isEmpty == true }
            try await Shared.active.waitFor("the call to end") { $0.last == false }
            try await Shared.callEvents.waitFor("the call-ended event") { all in
                all.contains { $0 == .ended(call: call) }
            }
            try await a.leave(call: call)  // leaving again does nothing
            // Listeners that kept up were never told they fell behind.
            XCTAssertTrue(Shared.changes.resyncs.all.isEmpty, "\(Shared.changes.resyncs.all)")
            XCTAssertTrue(Shared.callEvents.resyncs.all.isEmpty, "\(Shared.callEvents.resyncs.all)")
            XCTAssertTrue(Shared.diagnostics.missed.all.isEmpty, "\(Shared.diagnostics.missed.all)")
        }
    }

    func test8CloseHandles() async throws {
        try await step(9) {
            for handle in Shared.handles {
                handle.cancel()
                handle.cancel()  // twice is harmless
            }
            for handle in Shared.handles {
                try await handle.waitUntilFinished()
            }
            Shared.handles.removeAll()
            // A cancelled subscription releases its listener.
            weak var released: ParticipantRows?
            let cancelled: TaskHandle = try {
                let listener = ParticipantRows()
                released = listener
                let handle = try Shared.a.subscribeParticipants(call: call, listener: listener)
                handle.cancel()
                return handle
            }()
            try await cancelled.waitUntilFinished()
            XCTAssertNil(released, "the library still holds a cancelled listener")
            Shared.a.stop()
            Shared.b.stop()
            Shared.a.stop()  // twice is harmless
            let a = Shared.a!
            await expectError("NotRunning", isNotRunning) {
                try await a.join(call: call, config: fast)
            }
            Shared.a = nil
            Shared.b = nil
        }
    }

    func test9WithoutDelayedEventsJoinHasNoDeadManSwitch() async throws {
        try await step(10) {
            // On a homeserver without delayed events (MSC4140) a join still works, without a
            // dead-man switch, and our status says so.
            let c = try await RtcClient.build(config: configFor("C"))
            let nodelayCall = roomCall(roomId: env["RTC_TEST_NODELAY_ROOM_ID"]!)
            let status = StatusValues()
            let participants = ParticipantRows()
            let handles = [
                try c.subscribeOwnStatus(call: nodelayCall, listener: status),
                try c.subscribeParticipants(call: nodelayCall, listener: participants),
            ]
            defer {
                for handle in handles { handle.cancel() }
                c.stop()
            }
            try await c.start()
            let features = try await c.features()
            XCTAssertTrue(features.stickyEvents, "\(features)")
            XCTAssertFalse(features.delayedEvents, "\(features)")
            try await c.join(call: nodelayCall, config: fast)
            XCTAssertEqual(try c.ownStatus(call: nodelayCall), .connected(deadManSwitch: false))
            try await status.waitFor("C connected without a dead-man switch") {
                $0.last == .connected(deadManSwitch: false)
            }
            let me = env["RTC_TEST_C_USER_ID"]!
            try await participants.waitFor("C's own entry") { $0.last?.contains { $0.userId == me } == true }
            XCTAssertFalse(status.all.contains(.connected(deadManSwitch: true)), "\(status.all)")
            try await c.leave(call: nodelayCall)
            try await status.waitFor("C disconnected") { $0.last == .disconnected }
            try await participants.waitFor("an empty list") { $0.last?.isEmpty == true }
        }
    }
}
