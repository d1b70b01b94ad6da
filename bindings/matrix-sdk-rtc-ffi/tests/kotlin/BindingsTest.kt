// The Kotlin bindings against a real Synapse: run through `ffi-test-runner`, which provides the
// homeserver, two users (A and B) and a shared room, and a second homeserver without delayed
// events with a user C and a room of C's own, in `RTC_TEST_*` variables. See
// scripts/bindings/test-kotlin.sh.
//
// Each step is a test; a failed step fails every later one (they build on each other). Prints
// `N passed, N failed` and exits non-zero on any failure.

import java.io.File
import java.util.Base64
import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec
import java.lang.ref.WeakReference
import java.util.concurrent.ConcurrentHashMap
import kotlin.system.exitProcess
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import uniffi.matrix_sdk_rtc_ffi.*

const val TIMEOUT_MS = 30_000L
val env: Map<String, String> = System.getenv()
val room = env.getValue("RTC_TEST_ROOM_ID")
val slot = env.getValue("RTC_TEST_SLOT_ID")
val call = roomCall(room)
val fast = JoinConfig(delayMs = 3_000uL, restartIntervalMs = 1_000uL)

fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw AssertionError(message())
}

/** Every value a listener received, as a flow the test can wait on. */
open class Values<T> {
    val all = MutableStateFlow<List<T>>(emptyList())
    val threads: MutableSet<Long> = ConcurrentHashMap.newKeySet()
    val latest: T? get() = all.value.lastOrNull()

    fun push(value: T) {
        threads.add(Thread.currentThread().id)
        all.update { it + value }
    }

    suspend fun waitFor(what: String, predicate: (List<T>) -> Boolean) {
        withTimeoutOrNull(TIMEOUT_MS) { all.first(predicate) }
            ?: throw AssertionError("timed out waiting for $what; saw ${all.value}")
    }
}

class ActiveValues : Values<Boolean>(), CallActiveListener {
    override fun onUpdate(active: Boolean) = push(active)
}

class StatusValues : Values<OwnStatus>(), OwnStatusListener {
    override fun onUpdate(status: OwnStatus) = push(status)
}

/** The diagnostics reported, and how many were missed if this listener fell behind. */
class DiagnosticValues : Values<Diagnostic>(), DiagnosticsListener {
    val missed = MutableStateFlow<List<ULong>>(emptyList())

    override fun onUpdate(event: DiagnosticEvent) = when (event) {
        is DiagnosticEvent.Reported -> push(event.diagnostic)
        is DiagnosticEvent.Missed -> missed.update { it + event.missed }
    }
}

/** Calls started and ended, and the resyncs if this listener fell behind. */
class CallEventValues : Values<CallEvent>(), CallEventsListener {
    val resyncs = MutableStateFlow<List<CallEvent.Resync>>(emptyList())

    override fun onUpdate(event: CallEvent) = when (event) {
        is CallEvent.Started, is CallEvent.Ended -> push(event)
        is CallEvent.Resync -> resyncs.update { it + event }
    }
}

/** The membership changes, and the resyncs (every active call's participants) if this
 * listener fell behind. */
class SessionChangeValues : Values<SessionChange>(), SessionChangesListener {
    val resyncs = MutableStateFlow<List<SessionUpdate.Resync>>(emptyList())

    override fun onUpdate(update: SessionUpdate) = when (update) {
        is SessionUpdate.Change -> push(update.change)
        is SessionUpdate.Resync -> resyncs.update { it + update }
    }
}

/** The participant list, kept up to date from the diffs as an app would. */
class ParticipantRows : Values<List<Participant>>(), ParticipantsListener {
    val batches = MutableStateFlow<List<List<ParticipantsDiff>>>(emptyList())
    private var rows = mutableListOf<Participant>()

    @Synchronized
    override fun onUpdate(diffs: List<ParticipantsDiff>) {
        for (diff in diffs) apply(diff)
        batches.update { it + listOf(diffs) }
        push(rows.toList())
    }

    private fun apply(diff: ParticipantsDiff) {
        when (diff) {
            is ParticipantsDiff.Reset -> { rows.clear(); rows.addAll(diff.values) }
            is ParticipantsDiff.Append -> rows.addAll(diff.values)
            is ParticipantsDiff.Clear -> rows.clear()
            is ParticipantsDiff.PushFront -> rows.add(0, diff.value)
            is ParticipantsDiff.PushBack -> rows.add(diff.value)
            is ParticipantsDiff.PopFront -> rows.removeAt(0)
            is ParticipantsDiff.PopBack -> rows.removeAt(rows.size - 1)
            is ParticipantsDiff.Insert -> rows.add(diff.index.toInt(), diff.value)
            is ParticipantsDiff.Set -> rows[diff.index.toInt()] = diff.value
            is ParticipantsDiff.Remove -> rows.removeAt(diff.index.toInt())
            is ParticipantsDiff.Truncate -> rows = rows.take(diff.length.toInt()).toMutableList()
        }
    }

    fun users(): List<String> = (latest ?: emptyList()).map { it.userId }
}

fun configFor(who: String) = ClientConfig(
    // C lives on the second homeserver, the one without delayed events.
    homeserverUrl = env.getValue(if (who == "C") "RTC_TEST_NODELAY_HOMESERVER_URL" else "RTC_TEST_HOMESERVER_URL"),
    userId = env.getValue("RTC_TEST_${who}_USER_ID"),
    deviceId = env.getValue("RTC_TEST_${who}_DEVICE_ID"),
    accessToken = env.getValue("RTC_TEST_${who}_ACCESS_TOKEN"),
    storePath = File(env.getValue("RTC_TEST_STORE_DIR"), "kotlin-$who").path,
    // A's stores are encrypted, B's are not: both paths are covered (deriving the store key
    // takes a few seconds in a debug build, so only A pays for it).
    storePassphrase = if (who == "A") "kotlin test passphrase" else null,
    // Without a passphrase our calls (delay ids) are persisted only by explicit opt-in: B opts
    // in, so its resume after a restart is the plaintext path.
    persistCallsUnencrypted = who == "B",
)

suspend inline fun <reified E : RtcFfiException> expectError(block: () -> Unit) {
    try {
        block()
    } catch (error: RtcFfiException) {
        check(error is E) { "expected ${E::class.simpleName}, got $error" }
        check(!error.message.isNullOrEmpty()) { "$error has no message" }
        return
    }
    throw AssertionError("expected ${E::class.simpleName}")
}

/** The payload of an HS256 JWT whose signature `secret` makes (else an AssertionError). */
fun verifiedJwtPayload(jwt: String, secret: String): String {
    val parts = jwt.split(".")
    check(parts.size == 3) { "not a JWT" }
    val mac = Mac.getInstance("HmacSHA256")
    mac.init(SecretKeySpec(secret.toByteArray(), "HmacSHA256"))
    val expected = mac.doFinal("${parts[0]}.${parts[1]}".toByteArray())
    check(expected.contentEquals(Base64.getUrlDecoder().decode(parts[2]))) { "the JWT's signature is not valid" }
    return String(Base64.getUrlDecoder().decode(parts[1]))
}

/** Subscribes a fresh listener, cancels it, and returns a weak reference to the listener. */
suspend fun Suite.releasedAfterCancel(): WeakReference<ParticipantRows> {
    val listener = ParticipantRows()
    val handle = a.subscribeParticipants(call, listener)
    handle.cancel()
    withTimeout(TIMEOUT_MS) { while (!handle.isFinished()) delay(10) }
    handle.close()
    return WeakReference(listener)
}

class Suite {
    lateinit var a: RtcClient
    lateinit var b: RtcClient
    val handles = mutableListOf<TaskHandle>()
    val diagnostics = DiagnosticValues()
    val participants = ParticipantRows()
    val active = ActiveValues()
    val status = StatusValues()
    val callEvents = CallEventValues()
    val changes = SessionChangeValues()

    suspend fun buildAndTypedErrors() {
        expectError<RtcFfiException.InvalidArgument> {
            RtcClient.build(configFor("A").copy(userId = "not a user id"))
        }
        // No store and no opt-in to an ephemeral device: refused.
        expectError<RtcFfiException.InvalidArgument> {
            RtcClient.build(configFor("A").copy(storePath = null))
        }
        a = RtcClient.build(configFor("A"))
        b = RtcClient.build(configFor("B"))
        check(a.userId() == env["RTC_TEST_A_USER_ID"]) { "user id ${a.userId()}" }
        check(a.deviceId() == env["RTC_TEST_A_DEVICE_ID"]) { "device id ${a.deviceId()}" }
        check(call == CallId(room, slot)) { "$call" }
        expectError<RtcFfiException.InvalidArgument> { a.join(CallId("not-a-room", slot), fast) }
        expectError<RtcFfiException.InvalidArgument> { a.join(CallId(room, "no-slot"), fast) }
        expectError<RtcFfiException.NotRunning> { a.join(call, fast) }
        expectError<RtcFfiException.InvalidArgument> { a.participants(CallId("not-a-room", slot)) }
    }

    suspend fun startAndDiagnostics() {
        handles += a.subscribeDiagnostics(diagnostics)
        check(a.syncStatus() == SyncStatus.NotStarted) { "${a.syncStatus()}" }
        coroutineScope { listOf(async { a.start() }, async { b.start() }).awaitAll() }
        a.start() // a second start does nothing
        val features = a.features()
        check(features.stickyEvents && features.delayedEvents) { "$features" }
        // The supervised sync loop's first answer comes at once (it does not long-poll).
        withTimeout(TIMEOUT_MS) { while (a.syncStatus() != SyncStatus.Running) delay(20) }
        // So does the side connection's (sticky events over sliding sync).
        withTimeout(TIMEOUT_MS) { while (a.sideSyncStatus() != SideSyncStatus.Running) delay(20) }
        val bad = env.getValue("RTC_TEST_BAD_EVENT_ID")
        diagnostics.waitFor("the bad membership's diagnostic") { all -> all.any { it.eventId == bad } }
        val found = diagnostics.all.value.first { it.eventId == bad }
        check(found.kind == DiagnosticKind.MEMBERSHIP && found.roomId == room && found.reason.isNotEmpty()) { "$found" }
        check(found.cap == null && found.dropped == null) { "$found" }
    }

    suspend fun joinAndSeeOwnEntry() {
        handles += a.subscribeParticipants(call, participants)
        handles += a.subscribeCallActive(call, active)
        handles += a.subscribeOwnStatus(call, status)
        handles += a.subscribeCallEvents(callEvents)
        handles += a.subscribeSessionChanges(changes)
        // Each subscription delivered its current value before returning.
        val first = participants.batches.value.first()
        check(first.size == 1 && first[0] is ParticipantsDiff.Reset) { "first batch $first" }
        check(participants.latest == emptyList<Participant>()) { "${participants.latest}" }
        check(active.latest == false) { "active ${active.latest}" }
        check(status.latest == OwnStatus.Disconnected) { "status ${status.latest}" }

        a.join(call, fast)
        val now = a.ownStatus(call)
        check(now is OwnStatus.Connected && now.deadManSwitch) { "status after join $now" }
        val me = env.getValue("RTC_TEST_A_USER_ID")
        participants.waitFor("A's own entry") { it.lastOrNull()?.any { p -> p.userId == me } == true }
        val own = participants.latest!!.first()
        check(own.deviceId == env["RTC_TEST_A_DEVICE_ID"]) { "$own" }
        check(own.roomId == room && own.slotId == slot) { "$own" }
        check(own.transportServiceUrl == env.getValue("RTC_TEST_LIVEKIT_SERVICE_URL")) { "$own" }
        check(own.memberId.isNotEmpty() && own.livekitIdentity.isNotEmpty() && own.createdTs > 0uL) { "$own" }
        active.waitFor("the call to be active") { it.lastOrNull() == true }
        status.waitFor("A connected") { it.lastOrNull() is OwnStatus.Connected }
        check(a.isCallActive(call)) { "not active" }
        check(a.activeCalls() == listOf(call)) { "${a.activeCalls()}" }
        callEvents.waitFor("the call to start") { all -> all.any { it is CallEvent.Started && it.call == call } }
        changes.waitFor("A's join as a session change") { all ->
            all.any { it is SessionChange.Joined && it.participant.userId == me }
        }
        // Joining again as another member is refused, with the reason as the error's kind.
        expectError<RtcFfiException.AlreadyJoined> { a.join(call, fast) }
        check(a.ownStatus(call) is OwnStatus.Connected) { "${a.ownStatus(call)}" }
        // Our membership can change while joined: it is refreshed with the new transport.
        a.updateMembership(call, "https://lk2.invalid", null)
        participants.waitFor("A's new transport") {
            it.lastOrNull()?.any { p -> p.transportServiceUrl == "https://lk2.invalid" } == true
        }
        expectError<RtcFfiException.NotInCall> { a.updateMembership(roomCall("!elsewhere:localhost"), null, null) }
        val main = Thread.currentThread().id
        check(participants.threads.any { it != main }) { "no update from a library thread" }
    }

    suspend fun secondParticipantJoins() {
        b.join(call, fast)
        val other = env.getValue("RTC_TEST_B_USER_ID")
        participants.waitFor("B in A's list") { it.lastOrNull()?.any { p -> p.userId == other } == true }
        check(participants.users().toSet() == setOf(env["RTC_TEST_A_USER_ID"], other)) { "${participants.users()}" }
        check(a.participants(call).map { it.userId } == participants.users()) { "snapshot differs" }
    }

    suspend fun livekitCredentials() {
        // The homeserver advertises a stand-in JWT service (see ffi-test-runner); A moved to
        // another transport above, so it moves back first.
        val service = env.getValue("RTC_TEST_LIVEKIT_SERVICE_URL")
        val me = env.getValue("RTC_TEST_A_USER_ID")
        a.updateMembership(call, service, null)
        val seen = withTimeout(30_000L) {
            var found: Participant? = null
            while (found == null) {
                found = b.participants(call).firstOrNull { it.userId == me && it.transportServiceUrl == service }
                if (found == null) delay(50)
            }
            found
        }
        val credentials = a.livekitCredentials(call)
        check(credentials.serviceUrl == service) { "$credentials" }
        check(credentials.sfuUrl == env.getValue("RTC_TEST_LIVEKIT_SFU_URL")) { "$credentials" }
        check(credentials.endpoint == "service /get_token") { "$credentials" }
        // The identity is the one B computes for A's membership.
        check(credentials.identity == seen.livekitIdentity) { "$credentials vs $seen" }
        check(credentials.identityMatchesMembership) { "$credentials" }
        val payload = verifiedJwtPayload(credentials.jwt, env.getValue("RTC_TEST_LIVEKIT_API_SECRET"))
        check(payload.contains("\"sub\":\"${credentials.identity}\"")) { payload }
        check(payload.contains("\"room\":\"${credentials.room}\"")) { payload }
        check(a.livekitCredentials(call) == credentials) { "not cached" }
        expectError<RtcFfiException.NotInCall> { a.livekitCredentials(roomCall("!elsewhere:localhost")) }
    }

    suspend fun secondParticipantResumesAfterARestart() {
        val other = env.getValue("RTC_TEST_B_USER_ID")
        // B's app is killed mid-call: stopped without leaving, then built again on its stores.
        b.stop()
        b.close()
        b = RtcClient.build(configFor("B"))
        b.start()
        check(b.interruptedCalls() == listOf(call)) { "${b.interruptedCalls()}" }
        participants.waitFor("B's old membership to end") { it.lastOrNull()?.none { p -> p.userId == other } == true }
        b.join(call, fast)
        participants.waitFor("B back in A's list") { it.lastOrNull()?.any { p -> p.userId == other } == true }
    }

    suspend fun secondParticipantLeaves() {
        val other = env.getValue("RTC_TEST_B_USER_ID")
        b.leave(call)
        check(b.ownStatus(call) == OwnStatus.Disconnected) { "${b.ownStatus(call)}" }
        participants.waitFor("B gone from A's list") { it.lastOrNull()?.none { p -> p.userId == other } == true }
        check(participants.users() == listOf(env["RTC_TEST_A_USER_ID"])) { "${participants.users()}" }
        changes.waitFor("B's leave with its reason") { all ->
            all.any { it is SessionChange.Left && it.participant.userId == other }
        }
        val left = changes.all.value.last { it is SessionChange.Left && it.participant.userId == other } as SessionChange.Left
        check(left.reason == LeftReason.LeaveEvent) { "${left.reason}" }
    }

    suspend fun leave() {
        a.leave(call)
        status.waitFor("A disconnected") { it.lastOrNull() == OwnStatus.Disconnected }
        participants.waitFor("an empty list") { it.lastOrNull()?.isEmpty() == true }
        active.waitFor("the call to end") { it.lastOrNull() == false }
        callEvents.waitFor("the call-ended event") { all -> all.any { it is CallEvent.Ended && it.call == call } }
        a.leave(call) // leaving again does nothing
        // Listeners that kept up were never told they fell behind.
        check(changes.resyncs.value.isEmpty()) { "${changes.resyncs.value}" }
        check(callEvents.resyncs.value.isEmpty()) { "${callEvents.resyncs.value}" }
        check(diagnostics.missed.value.isEmpty()) { "${diagnostics.missed.value}" }
    }

    suspend fun closeHandles() {
        for (handle in handles) {
            handle.cancel()
            handle.cancel() // twice is harmless
        }
        withTimeout(TIMEOUT_MS) {
            for (handle in handles) {
                while (!handle.isFinished()) delay(10)
            }
        }
        handles.forEach { it.close() }
        handles.clear()
        // A cancelled subscription releases its listener.
        val released = releasedAfterCancel()
        withTimeout(TIMEOUT_MS) {
            while (released.get() != null) {
                System.gc()
                delay(10)
            }
        }
        a.stop()
        b.stop()
        a.stop() // twice is harmless
        expectError<RtcFfiException.NotRunning> { a.join(call, fast) }
        a.close()
        b.close()
    }

    suspend fun withoutDelayedEventsJoinHasNoDeadManSwitch() {
        // On a homeserver without delayed events (MSC4140) a join still works, without a
        // dead-man switch, and our status says so.
        val c = RtcClient.build(configFor("C"))
        val nodelayCall = roomCall(env.getValue("RTC_TEST_NODELAY_ROOM_ID"))
        val cStatus = StatusValues()
        val cParticipants = ParticipantRows()
        val cHandles = listOf(
            c.subscribeOwnStatus(nodelayCall, cStatus),
            c.subscribeParticipants(nodelayCall, cParticipants),
        )
        try {
            c.start()
            val features = c.features()
            check(features.stickyEvents && !features.delayedEvents) { "$features" }
            c.join(nodelayCall, fast)
            val now = c.ownStatus(nodelayCall)
            check(now == OwnStatus.Connected(deadManSwitch = false)) { "status after join $now" }
            cStatus.waitFor("C connected without a dead-man switch") {
                it.lastOrNull() == OwnStatus.Connected(deadManSwitch = false)
            }
            val me = env.getValue("RTC_TEST_C_USER_ID")
            cParticipants.waitFor("C's own entry") { it.lastOrNull()?.any { p -> p.userId == me } == true }
            check(cStatus.all.value.none { it is OwnStatus.Connected && it.deadManSwitch }) { "${cStatus.all.value}" }
            c.leave(nodelayCall)
            cStatus.waitFor("C disconnected") { it.lastOrNull() == OwnStatus.Disconnected }
            cParticipants.waitFor("an empty list") { it.lastOrNull()?.isEmpty() == true }
        } finally {
            cHandles.forEach { it.cancel(); it.close() }
            c.stop()
            c.close()
        }
    }
}

fun main(): Unit = runBlocking {
    env["RTC_TEST_LOG"]?.let { initLogging(it) }
    val suite = Suite()
    val steps: List<Pair<String, suspend () -> Unit>> = listOf(
        "build_and_typed_errors" to suite::buildAndTypedErrors,
        "start_and_diagnostics" to suite::startAndDiagnostics,
        "join_and_see_own_entry" to suite::joinAndSeeOwnEntry,
        "second_participant_joins" to suite::secondParticipantJoins,
        "livekit_credentials" to suite::livekitCredentials,
        "second_participant_resumes_after_a_restart" to suite::secondParticipantResumesAfterARestart,
        "second_participant_leaves" to suite::secondParticipantLeaves,
        "leave" to suite::leave,
        "close_handles" to suite::closeHandles,
        "without_delayed_events_join_has_no_dead_man_switch" to suite::withoutDelayedEventsJoinHasNoDeadManSwitch,
    )
    var passed = 0
    var failed = 0
    var broken: String? = null
    for ((name, step) in steps) {
        if (broken != null) {
            println("FAIL $name: not run, $broken failed")
            failed++
            continue
        }
        try {
            withTimeout(120_000L) { step() }
            println("ok   $name")
            passed++
        } catch (error: Throwable) {
            println("FAIL $name: $error")
            error.printStackTrace()
            failed++
            broken = name
        }
    }
    suite.handles.forEach { it.cancel() }
    println("$passed passed, $failed failed")
    System.out.flush()
    exitProcess(if (failed == 0) 0 else 1)
}
