"""The Python bindings against a real Synapse: run through `ffi-test-runner`, which provides the
homeserver, two users (A and B) and a shared room, and a second homeserver without delayed events
with a user C and a room of C's own, in `RTC_TEST_*` variables.

Usage: ffi-test-runner python3 test_bindings.py GENERATED_PYTHON_DIR

Each step is a test; a failed step fails every later one (they build on each other). Prints
`N passed, N failed` and exits non-zero on any failure.
"""

import asyncio
import base64
import gc
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import traceback
import weakref

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))

import matrix_sdk_rtc_ffi as rtc  # noqa: E402  (the path is set just above)

TIMEOUT = 30.0
ENV = os.environ


class Recorder:
    """Collects what a listener receives (on a library thread) and wakes the asyncio loop."""

    def __init__(self, loop, apply):
        self.loop = loop
        self.apply = apply
        self.changed = asyncio.Event()
        self.updates = 0
        self.threads = set()

    def push(self, value):
        self.threads.add(threading.get_ident())
        self.loop.call_soon_threadsafe(self._apply, value)

    def _apply(self, value):
        self.updates += 1
        self.apply(value)
        self.changed.set()

    async def wait_for(self, what, predicate, timeout=TIMEOUT):
        deadline = self.loop.time() + timeout
        while not predicate():
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


def verify_jwt(jwt, secret):
    """The claims of an HS256 JWT whose signature `secret` makes (else AssertionError)."""
    def decode(part):
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    header, payload, signature = jwt.split(".")
    expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(expected, decode(signature)), "the JWT's signature is not valid"
    return json.loads(decode(payload))


def apply_diff(rows, diff):
    """Applies one ParticipantsDiff to a Python list, as a mobile app would."""
    D = rtc.ParticipantsDiff
    if isinstance(diff, D.RESET):
        rows[:] = diff.values
    elif isinstance(diff, D.APPEND):
        rows.extend(diff.values)
    elif isinstance(diff, D.CLEAR):
        rows.clear()
    elif isinstance(diff, D.PUSH_FRONT):
        rows.insert(0, diff.value)
    elif isinstance(diff, D.PUSH_BACK):
        rows.append(diff.value)
    elif isinstance(diff, D.POP_FRONT):
        rows.pop(0)
    elif isinstance(diff, D.POP_BACK):
        rows.pop()
    elif isinstance(diff, D.INSERT):
        rows.insert(diff.index, diff.value)
    elif isinstance(diff, D.SET):
        rows[diff.index] = diff.value
    elif isinstance(diff, D.REMOVE):
        del rows[diff.index]
    elif isinstance(diff, D.TRUNCATE):
        del rows[diff.length:]
    else:
        raise AssertionError(f"unknown diff {diff!r}")


class Participants(rtc.ParticipantsListener):
    def __init__(self, loop):
        self.rows = []
        self.batches = []
        self.recorder = Recorder(loop, self._apply)

    def on_update(self, diffs):
        self.recorder.push(diffs)

    def _apply(self, diffs):
        self.batches.append(diffs)
        for diff in diffs:
            apply_diff(self.rows, diff)

    def users(self):
        return [row.user_id for row in self.rows]


class Latest:
    """The latest value of a scalar stream, and every value seen."""

    def __init__(self, loop):
        self.values = []
        self.recorder = Recorder(loop, self.values.append)

    def on_update(self, value):
        self.recorder.push(value)

    @property
    def latest(self):
        return self.values[-1] if self.values else None


class Active(Latest, rtc.CallActiveListener):
    pass


class Status(Latest, rtc.OwnStatusListener):
    pass


class Diagnostics(Latest, rtc.DiagnosticsListener):
    """Every DiagnosticEvent: `REPORTED` ones, and `MISSED` counts if this listener fell
    behind."""

    def reported(self):
        return [e.diagnostic for e in self.values if isinstance(e, rtc.DiagnosticEvent.REPORTED)]

    def missed(self):
        return [e.missed for e in self.values if isinstance(e, rtc.DiagnosticEvent.MISSED)]


class CallEvents(Latest, rtc.CallEventsListener):
    def resyncs(self):
        return [e for e in self.values if isinstance(e, rtc.CallEvent.RESYNC)]


class SessionChanges(Latest, rtc.SessionChangesListener):
    """Every SessionUpdate: `CHANGE`s, and `RESYNC`s if this listener fell behind."""

    def changes(self):
        return [u.change for u in self.values if isinstance(u, rtc.SessionUpdate.CHANGE)]

    def resyncs(self):
        return [u for u in self.values if isinstance(u, rtc.SessionUpdate.RESYNC)]


def config_for(who):
    # C lives on the second homeserver, the one without delayed events.
    homeserver = "RTC_TEST_NODELAY_HOMESERVER_URL" if who == "C" else "RTC_TEST_HOMESERVER_URL"
    return rtc.ClientConfig(
        homeserver_url=ENV[homeserver],
        user_id=ENV[f"RTC_TEST_{who}_USER_ID"],
        device_id=ENV[f"RTC_TEST_{who}_DEVICE_ID"],
        access_token=ENV[f"RTC_TEST_{who}_ACCESS_TOKEN"],
        store_path=os.path.join(ENV["RTC_TEST_STORE_DIR"], f"python-{who}"),
        # A's stores are encrypted, B's are not: both paths are covered (deriving the store key
        # takes a few seconds in a debug build, so only A pays for it).
        store_passphrase="python test passphrase" if who == "A" else None,
        # Without a passphrase our calls (delay ids) are persisted only by explicit opt-in:
        # B opts in, so its resume after a restart is the plaintext path.
        persist_calls_unencrypted=who == "B",
    )


FAST = rtc.JoinConfig(delay_ms=3000, restart_interval_ms=1000)


class Suite:
    def __init__(self):
        self.room = ENV["RTC_TEST_ROOM_ID"]
        self.slot = ENV["RTC_TEST_SLOT_ID"]
        self.call = rtc.room_call(self.room)
        assert self.call == rtc.CallId(room_id=self.room, slot_id=self.slot), self.call
        self.handles = []

    async def expect_error(self, kind, call):
        try:
            await call()
        except kind as error:
            assert str(error), f"{kind.__name__} without a message"
            return
        raise AssertionError(f"expected {kind.__name__}")

    async def test_build_and_typed_errors(self):
        loop = asyncio.get_running_loop()
        self.loop = loop
        bad = config_for("A")
        bad.user_id = "not a user id"
        await self.expect_error(rtc.RtcFfiError.InvalidArgument, lambda: rtc.RtcClient.build(bad))
        # No store and no opt-in to an ephemeral device: refused.
        no_store = config_for("A")
        no_store.store_path = None
        await self.expect_error(rtc.RtcFfiError.InvalidArgument, lambda: rtc.RtcClient.build(no_store))
        self.a = await rtc.RtcClient.build(config_for("A"))
        self.b = await rtc.RtcClient.build(config_for("B"))
        assert self.a.user_id() == ENV["RTC_TEST_A_USER_ID"]
        assert self.a.device_id() == ENV["RTC_TEST_A_DEVICE_ID"]
        bad_room = rtc.CallId(room_id="not-a-room", slot_id=self.slot)
        bad_slot = rtc.CallId(room_id=self.room, slot_id="no-slot")
        await self.expect_error(rtc.RtcFfiError.InvalidArgument, lambda: self.a.join(bad_room, FAST))
        await self.expect_error(rtc.RtcFfiError.InvalidArgument, lambda: self.a.join(bad_slot, FAST))
        await self.expect_error(rtc.RtcFfiError.NotRunning, lambda: self.a.join(self.call, FAST))
        try:
            self.a.participants(bad_room)
            raise AssertionError("expected InvalidArgument from a sync method")
        except rtc.RtcFfiError.InvalidArgument:
            pass

    async def test_start_and_diagnostics(self):
        self.diagnostics = Diagnostics(self.loop)
        self.handles.append(self.a.subscribe_diagnostics(self.diagnostics))
        assert isinstance(self.a.sync_status(), rtc.SyncStatus.NOT_STARTED), self.a.sync_status()
        await asyncio.gather(self.a.start(), self.b.start())
        await self.a.start()  # a second start does nothing
        features = await self.a.features()
        assert features.sticky_events and features.delayed_events, features
        # The supervised sync loop's first answer comes at once (it does not long-poll).
        deadline = self.loop.time() + TIMEOUT
        while not isinstance(self.a.sync_status(), rtc.SyncStatus.RUNNING):
            assert self.loop.time() < deadline, self.a.sync_status()
            await asyncio.sleep(0.02)
        # So does the side connection's (sticky events over sliding sync).
        while not isinstance(self.a.side_sync_status(), rtc.SideSyncStatus.RUNNING):
            assert self.loop.time() < deadline, self.a.side_sync_status()
            await asyncio.sleep(0.02)
        bad = ENV["RTC_TEST_BAD_EVENT_ID"]
        await self.diagnostics.recorder.wait_for(
            "the bad membership's diagnostic",
            lambda: any(d.event_id == bad for d in self.diagnostics.reported()))
        found = next(d for d in self.diagnostics.reported() if d.event_id == bad)
        assert found.kind == rtc.DiagnosticKind.MEMBERSHIP, found
        assert found.room_id == self.room and found.reason, found
        assert found.cap is None and found.dropped is None, found

    async def test_join_and_see_own_entry(self):
        self.participants = Participants(self.loop)
        self.active = Active(self.loop)
        self.status = Status(self.loop)
        self.call_events = CallEvents(self.loop)
        self.changes = SessionChanges(self.loop)
        self.handles += [
            self.a.subscribe_participants(self.call, self.participants),
            self.a.subscribe_call_active(self.call, self.active),
            self.a.subscribe_own_status(self.call, self.status),
            self.a.subscribe_call_events(self.call_events),
            self.a.subscribe_session_changes(self.changes),
        ]
        # Each subscription delivered its current value before returning.
        for listener in (self.participants, self.active, self.status):
            await listener.recorder.wait_for("the current value", lambda: listener.recorder.updates)
        first = self.participants.batches[0]
        assert len(first) == 1 and isinstance(first[0], rtc.ParticipantsDiff.RESET), first
        assert self.participants.rows == []
        assert self.active.latest is False
        assert isinstance(self.status.latest, rtc.OwnStatus.DISCONNECTED), self.status.latest

        await self.a.join(self.call, FAST)
        status = self.a.own_status(self.call)
        assert isinstance(status, rtc.OwnStatus.CONNECTED) and status.dead_man_switch, status
        me = ENV["RTC_TEST_A_USER_ID"]
        await self.participants.recorder.wait_for(
            "A's own entry", lambda: me in self.participants.users())
        own = self.participants.rows[0]
        assert own.device_id == ENV["RTC_TEST_A_DEVICE_ID"], own
        assert own.room_id == self.room and own.slot_id == self.slot, own
        assert own.transport_service_url == ENV["RTC_TEST_LIVEKIT_SERVICE_URL"], own
        assert own.member_id and own.livekit_identity and own.created_ts > 0, own
        assert own.format == "js-sdk", own
        await self.active.recorder.wait_for("the call to be active", lambda: self.active.latest)
        await self.status.recorder.wait_for(
            "A connected", lambda: isinstance(self.status.latest, rtc.OwnStatus.CONNECTED))
        assert self.a.is_call_active(self.call)
        assert self.a.active_calls() == [self.call], self.a.active_calls()
        await self.call_events.recorder.wait_for(
            "the call to start",
            lambda: any(isinstance(e, rtc.CallEvent.STARTED) and e.call == self.call
                        for e in self.call_events.values))
        await self.changes.recorder.wait_for(
            "A's join as a session change",
            lambda: any(isinstance(c, rtc.SessionChange.JOINED) and c.participant.user_id == me
                        for c in self.changes.changes()))
        # Joining again as another member is refused, with the reason as the error's kind.
        await self.expect_error(rtc.RtcFfiError.AlreadyJoined, lambda: self.a.join(self.call, FAST))
        assert isinstance(self.a.own_status(self.call), rtc.OwnStatus.CONNECTED)
        # Our membership can change while joined: it is refreshed with the new transport.
        await self.a.update_membership(self.call, "https://lk2.invalid", None)
        await self.participants.recorder.wait_for(
            "A's new transport",
            lambda: any(row.transport_service_url == "https://lk2.invalid" for row in self.participants.rows))
        assert self.participants.users() == [me], self.participants.users()
        await self.expect_error(
            rtc.RtcFfiError.NotInCall,
            lambda: self.a.update_membership(rtc.room_call("!elsewhere:localhost"), None, None))
        # Live updates come from the library's own threads.
        main_thread = threading.get_ident()
        assert self.participants.recorder.threads - {main_thread}, "no update from a library thread"

    async def test_second_participant_joins(self):
        await self.b.join(self.call, FAST)
        other = ENV["RTC_TEST_B_USER_ID"]
        await self.participants.recorder.wait_for(
            "B in A's list", lambda: other in self.participants.users())
        assert sorted(self.participants.users()) == sorted([ENV["RTC_TEST_A_USER_ID"], other])
        snapshot = self.a.participants(self.call)
        assert [p.user_id for p in snapshot] == self.participants.users(), snapshot

    async def test_livekit_credentials(self):
        # The homeserver advertises a stand-in JWT service (see ffi-test-runner); A moved to
        # another transport above, so it moves back first.
        service = ENV["RTC_TEST_LIVEKIT_SERVICE_URL"]
        me = ENV["RTC_TEST_A_USER_ID"]
        await self.a.update_membership(self.call, service, None)
        deadline = self.loop.time() + TIMEOUT
        while True:
            seen = [p for p in self.b.participants(self.call)
                    if p.user_id == me and p.transport_service_url == service]
            if seen:
                break
            assert self.loop.time() < deadline, "B never saw A on the JWT service"
            await asyncio.sleep(0.05)
        credentials = await self.a.livekit_credentials(self.call)
        assert credentials.service_url == service, credentials
        assert credentials.sfu_url == ENV["RTC_TEST_LIVEKIT_SFU_URL"], credentials
        assert credentials.endpoint == "service /get_token", credentials
        # The identity is the one B computes for A's membership.
        assert credentials.identity == seen[0].livekit_identity, credentials
        assert credentials.identity_matches_membership, credentials
        claims = verify_jwt(credentials.jwt, ENV["RTC_TEST_LIVEKIT_API_SECRET"])
        assert claims["sub"] == credentials.identity, claims
        assert claims["video"]["room"] == credentials.room, claims
        assert claims["exp"] * 1000 == credentials.expires_at_ms, claims
        # Cached until shortly before it expires.
        assert await self.a.livekit_credentials(self.call) == credentials
        await self.expect_error(
            rtc.RtcFfiError.NotInCall,
            lambda: self.a.livekit_credentials(rtc.room_call("!elsewhere:localhost")))

    async def test_second_participant_resumes_after_a_restart(self):
        other = ENV["RTC_TEST_B_USER_ID"]
        # B's app is killed mid-call: stopped without leaving, then built again on its stores.
        self.b.stop()
        del self.b
        gc.collect()
        self.b = await rtc.RtcClient.build(config_for("B"))
        await self.b.start()
        assert self.b.interrupted_calls() == [self.call], self.b.interrupted_calls()
        await self.participants.recorder.wait_for(
            "B's old membership to end", lambda: other not in self.participants.users())
        await self.b.join(self.call, FAST)
        await self.participants.recorder.wait_for(
            "B back in A's list", lambda: other in self.participants.users())

    async def test_second_participant_leaves(self):
        other = ENV["RTC_TEST_B_USER_ID"]
        await self.b.leave(self.call)
        assert isinstance(self.b.own_status(self.call), rtc.OwnStatus.DISCONNECTED)
        await self.participants.recorder.wait_for(
            "B gone from A's list", lambda: other not in self.participants.users())
        assert self.participants.users() == [ENV["RTC_TEST_A_USER_ID"]]
        await self.changes.recorder.wait_for(
            "B's leave with its reason",
            lambda: any(isinstance(c, rtc.SessionChange.LEFT) and c.participant.user_id == other
                        for c in self.changes.changes()))
        left = [c for c in self.changes.changes()
                if isinstance(c, rtc.SessionChange.LEFT) and c.participant.user_id == other][-1]
        assert isinstance(left.reason, rtc.LeftReason.LEAVE_EVENT), left.reason

    async def test_leave(self):
        await self.a.leave(self.call)
        await self.status.recorder.wait_for(
            "A disconnected", lambda: isinstance(self.status.latest, rtc.OwnStatus.DISCONNECTED))
        await self.participants.recorder.wait_for(
            "an empty list", lambda: self.participants.rows == [])
        await self.active.recorder.wait_for("the call to end", lambda: self.active.latest is False)
        await self.call_events.recorder.wait_for(
            "the call-ended event",
            lambda: any(isinstance(e, rtc.CallEvent.ENDED) and e.call == self.call
                        for e in self.call_events.values))
        await self.a.leave(self.call)  # leaving again does nothing
        # Listeners that kept up were never told they fell behind.
        assert self.changes.resyncs() == [], self.changes.resyncs()
        assert self.call_events.resyncs() == [], self.call_events.resyncs()
        assert self.diagnostics.missed() == [], self.diagnostics.missed()

    async def test_close_handles(self):
        for handle in self.handles:
            handle.cancel()
            handle.cancel()  # twice is harmless
        for handle in self.handles:
            deadline = self.loop.time() + TIMEOUT
            while not handle.is_finished():
                assert self.loop.time() < deadline, "a cancelled task did not finish"
                await asyncio.sleep(0.01)
        self.handles.clear()
        # The library released every listener: nothing but this suite holds them now.
        listeners = ("diagnostics", "participants", "active", "status", "call_events", "changes")
        refs = [weakref.ref(getattr(self, name)) for name in listeners]
        for name in listeners:
            delattr(self, name)
        gc.collect()
        assert all(ref() is None for ref in refs), "a listener is still referenced"
        self.a.stop()
        self.b.stop()
        self.a.stop()  # twice is harmless
        await self.expect_error(rtc.RtcFfiError.NotRunning, lambda: self.a.join(self.call, FAST))
        del self.a, self.b
        gc.collect()

    async def test_without_delayed_events_join_has_no_dead_man_switch(self):
        # On a homeserver without delayed events (MSC4140) a join still works, without a
        # dead-man switch, and our status says so.
        loop = asyncio.get_running_loop()
        c = await rtc.RtcClient.build(config_for("C"))
        call = rtc.room_call(ENV["RTC_TEST_NODELAY_ROOM_ID"])
        status = Status(loop)
        participants = Participants(loop)
        handles = [c.subscribe_own_status(call, status), c.subscribe_participants(call, participants)]
        try:
            await c.start()
            features = await c.features()
            assert features.sticky_events and not features.delayed_events, features
            await c.join(call, FAST)
            now = c.own_status(call)
            assert isinstance(now, rtc.OwnStatus.CONNECTED) and now.dead_man_switch is False, now
            await status.recorder.wait_for(
                "C connected without a dead-man switch",
                lambda: status.latest == rtc.OwnStatus.CONNECTED(dead_man_switch=False))
            me = ENV["RTC_TEST_C_USER_ID"]
            await participants.recorder.wait_for(
                "C's own entry", lambda: me in participants.users())
            armed = [v for v in status.values
                     if isinstance(v, rtc.OwnStatus.CONNECTED) and v.dead_man_switch]
            assert armed == [], status.values
            await c.leave(call)
            await status.recorder.wait_for(
                "C disconnected", lambda: isinstance(status.latest, rtc.OwnStatus.DISCONNECTED))
            await participants.recorder.wait_for("an empty list", lambda: participants.rows == [])
        finally:
            # As in test_close_handles: no listener may be called once the interpreter exits.
            for handle in handles:
                handle.cancel()
            for handle in handles:
                deadline = loop.time() + TIMEOUT
                while not handle.is_finished():
                    assert loop.time() < deadline, "a cancelled task did not finish"
                    await asyncio.sleep(0.01)
            c.stop()
            del c, handles
            gc.collect()


async def main():
    suite = Suite()
    tests = [name for name in dir(Suite) if name.startswith("test_")]
    tests.sort(key=lambda name: Suite.__dict__[name].__code__.co_firstlineno)
    passed = failed = 0
    broken = None
    for name in tests:
        if broken is not None:
            print(f"FAIL {name}: not run, {broken} failed")
            failed += 1
            continue
        started = time.monotonic()
        try:
            await asyncio.wait_for(getattr(suite, name)(), 120)
            print(f"ok   {name} ({time.monotonic() - started:.2f} s)")
            passed += 1
        except Exception:  # noqa: BLE001  (report every failure, then go on)
            print(f"FAIL {name}")
            traceback.print_exc()
            failed += 1
            broken = name
    for handle in suite.handles:
        handle.cancel()
    print(f"{passed} passed, {failed} failed", flush=True)
    return failed


if __name__ == "__main__":
    if ENV.get("RTC_TEST_LOG"):
        rtc.init_logging(ENV["RTC_TEST_LOG"])
    sys.exit(1 if asyncio.run(main()) else 0)
