"""A stand-in for a LiveKit JWT service, for tests only.

lk-jwt-service itself cannot be installed from the package registries this project reaches, so
the tests run this small HTTP server instead. It follows the documented requests and answers of
lk-jwt-service (see docs/protocol-next.md section 5.2 in the shared docs) and mints real LiveKit
JWTs with the `livekit-api` package, signed with a key and secret the harness chooses:

* POST /get_token ("Matrix 2.0"): {room_id, slot_id, openid_token, member{id, claimed_user_id,
  claimed_device_id}} plus the optional, all-or-none delay_id / delay_timeout / delay_cs_api_url
  (accepted and ignored); unknown fields are refused (400 M_NOT_JSON), missing ones too
  (400 M_BAD_JSON). The OpenID token is verified against the real homeserver
  (GET /_matrix/federation/v1/openid/userinfo); claimed_user_id must be its `sub` (else 401
  M_UNAUTHORIZED). The JWT's `sub` is b64(sha256(json([sub, device, member.id]))) and its
  `video.room` is b64(sha256(json([room_id, slot_id]))), b64 meaning unpadded standard base64.
* POST /sfu/get (legacy): {room, openid_token, device_id, delay_*?}; identity "sub:device",
  room b64(sha256(json([room, "m.call#ROOM"]))).
* POST /_matrix/client/{unstable/io.element.msc4195,v1}/rtc/livekit/get_token: the homeserver
  endpoint, reached through Synapse's MSC4512 application-service proxy. Synapse authenticates
  the user and forwards the request with our hs_token and X-Matrix-User-Identifier.
  {url, room_id, slot_id, member{id, claimed_user_id?, claimed_device_id}}; `url` must be our SFU.

Answers are {"url": <the SFU url>, "jwt": <the JWT>}. There is no SFU behind it: the URL is only
handed out. Not implemented: room creation on an SFU (full-access homeservers), delegation of
delayed leaves, webhooks, the room-membership check of the homeserver endpoint, federation
lookups of other homeservers (only the homeserver named by the harness is trusted).

Control (for the harness, never for clients), under /_stand_in/:
  GET  /_stand_in/health        -> {"ok": true}
  PUT  /_stand_in/config        <- {homeserver_url?, server_name?, disabled_paths?, refuse?,
                                    ttl_seconds?}; `refuse` is null or {status, errcode, error}
                                    and applies to every token endpoint
  GET  /_stand_in/requests      -> [{method, path, status}] of the token endpoints, oldest first
  GET  /_stand_in/openid_tokens -> the OpenID access tokens received, oldest first (so a test
                                    can check that none of them reached its logs)

Started as: python jwt_service.py --port-file FILE, with LIVEKIT_API_KEY, LIVEKIT_API_SECRET,
STAND_IN_HS_TOKEN and STAND_IN_SFU_URL in the environment. It binds 127.0.0.1 on a free port and
writes that port into FILE. Nothing secret is ever printed.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from livekit.api import AccessToken, VideoGrants

GET_TOKEN = "/get_token"
SFU_GET = "/sfu/get"
HS_GET_TOKEN_PATHS = (
    "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token",
    "/_matrix/client/v1/rtc/livekit/get_token",
)
LEGACY_SLOT = "m.call#ROOM"
MAX_BODY = 64 * 1024


class Refusal(Exception):
    """An error answer: status, errcode, message."""

    def __init__(self, status, errcode, error):
        super().__init__(error)
        self.status = status
        self.errcode = errcode
        self.error = error


def b64_sha256_of_json_list(items):
    # Compact JSON without ASCII escaping: what serde_json and JSON.stringify write.
    text = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii").rstrip("=")


class State:
    def __init__(self, api_key, api_secret, hs_token, sfu_url):
        self.lock = threading.Lock()
        self.api_key = api_key
        self.api_secret = api_secret
        self.hs_token = hs_token
        self.sfu_url = sfu_url
        self.homeserver_url = None
        self.server_name = None
        self.disabled_paths = set()
        self.refuse = None
        self.ttl_seconds = 3600
        self.requests = []
        self.openid_tokens = []

    def configure(self, update):
        with self.lock:
            if "homeserver_url" in update:
                self.homeserver_url = update["homeserver_url"]
            if "server_name" in update:
                self.server_name = update["server_name"]
            if "disabled_paths" in update:
                self.disabled_paths = set(update["disabled_paths"] or [])
            if "refuse" in update:
                self.refuse = update["refuse"]
            if "ttl_seconds" in update:
                self.ttl_seconds = int(update["ttl_seconds"])

    def record(self, method, path, status):
        with self.lock:
            self.requests.append({"method": method, "path": path, "status": status})

    def mint(self, identity, room):
        grants = VideoGrants(
            room_join=True,
            room=room,
            room_create=False,
            can_publish=True,
            can_subscribe=True,
            can_update_own_metadata=True,
        )
        token = (
            AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_grants(grants)
            .with_ttl(datetime.timedelta(seconds=self.ttl_seconds))
        )
        return token.to_jwt()

    def verify_openid(self, openid):
        """The OpenID token's user, asked of the homeserver it names."""
        with self.lock:
            self.openid_tokens.append(openid["access_token"])
            homeserver_url, server_name = self.homeserver_url, self.server_name
        if homeserver_url is None or openid["matrix_server_name"] != server_name:
            raise Refusal(401, "M_UNAUTHORIZED", "unknown homeserver")
        query = urllib.parse.urlencode({"access_token": openid["access_token"]})
        url = f"{homeserver_url}/_matrix/federation/v1/openid/userinfo?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                user = json.loads(answer.read())
        except urllib.error.HTTPError:
            raise Refusal(401, "M_UNAUTHORIZED", "the OpenID token was not accepted") from None
        except (urllib.error.URLError, OSError, ValueError):
            raise Refusal(500, "M_UNKNOWN", "the homeserver could not be asked") from None
        sub = user.get("sub") if isinstance(user, dict) else None
        if not isinstance(sub, str) or not sub:
            raise Refusal(401, "M_UNAUTHORIZED", "the homeserver named no user")
        return sub


def parse_json(raw):
    try:
        return json.loads(raw)
    except ValueError:
        raise Refusal(400, "M_NOT_JSON", "the body is not JSON") from None


def strict_object(value, allowed, required, what):
    """`value` as a dict with only `allowed` keys and every `required` one a non-empty string."""
    if not isinstance(value, dict):
        raise Refusal(400, "M_NOT_JSON", f"{what} is not an object")
    unknown = set(value) - set(allowed)
    if unknown:
        raise Refusal(400, "M_NOT_JSON", f"{what} has unknown fields: {sorted(unknown)}")
    for key in required:
        if not isinstance(value.get(key), str) or not value[key]:
            raise Refusal(400, "M_BAD_JSON", f"{what} is missing `{key}`")
    return value


OPENID_FIELDS = ("access_token", "token_type", "matrix_server_name", "expires_in")
DELAY_FIELDS = ("delay_id", "delay_timeout", "delay_cs_api_url")


def check_delay_fields(body):
    present = [key for key in DELAY_FIELDS if body.get(key)]
    if present and len(present) != len(DELAY_FIELDS):
        raise Refusal(400, "M_BAD_JSON", "the delay fields must be given together")


def get_token(state, body):
    body = strict_object(
        body, ("room_id", "slot_id", "openid_token", "member") + DELAY_FIELDS,
        ("room_id", "slot_id"), "the body",
    )
    openid = strict_object(
        body.get("openid_token"), OPENID_FIELDS, ("access_token", "matrix_server_name"),
        "`openid_token`",
    )
    member = strict_object(
        body.get("member"), ("id", "claimed_user_id", "claimed_device_id"),
        ("id", "claimed_user_id", "claimed_device_id"), "`member`",
    )
    check_delay_fields(body)
    sub = state.verify_openid(openid)
    if member["claimed_user_id"] != sub:
        raise Refusal(401, "M_UNAUTHORIZED", "claimed_user_id is not the OpenID user")
    identity = b64_sha256_of_json_list([sub, member["claimed_device_id"], member["id"]])
    room = b64_sha256_of_json_list([body["room_id"], body["slot_id"]])
    return {"url": state.sfu_url, "jwt": state.mint(identity, room)}


def sfu_get(state, body):
    body = strict_object(body, ("room", "openid_token", "device_id") + DELAY_FIELDS,
                         ("room", "device_id"), "the body")
    openid = strict_object(
        body.get("openid_token"), OPENID_FIELDS, ("access_token", "matrix_server_name"),
        "`openid_token`",
    )
    check_delay_fields(body)
    sub = state.verify_openid(openid)
    identity = f"{sub}:{body['device_id']}"
    room = b64_sha256_of_json_list([body["room"], LEGACY_SLOT])
    return {"url": state.sfu_url, "jwt": state.mint(identity, room)}


def homeserver_get_token(state, body, headers):
    authorization = headers.get("Authorization")
    if not authorization:
        raise Refusal(401, "M_MISSING_TOKEN", "no homeserver token")
    if authorization != f"Bearer {state.hs_token}":
        raise Refusal(401, "M_UNKNOWN_TOKEN", "not our homeserver's token")
    user = headers.get("X-Matrix-User-Identifier")
    if not user or not user.startswith("@") or ":" not in user:
        raise Refusal(401, "M_UNAUTHORIZED", "no user from the homeserver")
    body = strict_object(body, ("url", "room_id", "slot_id", "member", "server_name"),
                         ("url", "room_id", "slot_id"), "the body")
    member = strict_object(
        body.get("member"), ("id", "claimed_user_id", "claimed_device_id"),
        ("id", "claimed_device_id"), "`member`",
    )
    if body["url"] != state.sfu_url:
        raise Refusal(400, "M_INVALID_PARAM", "`url` is not our SFU")
    identity = b64_sha256_of_json_list([user, member["claimed_device_id"], member["id"]])
    room = b64_sha256_of_json_list([body["room_id"], body["slot_id"]])
    return {"url": state.sfu_url, "jwt": state.mint(identity, room)}


class Handler(BaseHTTPRequestHandler):
    server_version = "jwt-service-stand-in/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # Request lines are recorded in /_stand_in/requests; nothing goes to stderr.

    @property
    def state(self):
        return self.server.state

    def send_json(self, status, value):
        data = json.dumps(value).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_text(self, status, text):
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_raw_body(self):
        """The whole body, read before anything is answered: on a kept-alive connection an
        unread body would be taken for the next request."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise Refusal(413, "M_TOO_LARGE", "body too large")
        return self.rfile.read(length) if length else b""

    def read_body(self):
        raw = self.read_raw_body()
        return parse_json(raw)

    def path_only(self):
        return urllib.parse.urlsplit(self.path).path

    def do_GET(self):
        path = self.path_only()
        if path == "/_stand_in/health":
            self.send_json(200, {"ok": True})
        elif path == "/_stand_in/requests":
            with self.state.lock:
                requests = list(self.state.requests)
            self.send_json(200, requests)
        elif path == "/_stand_in/openid_tokens":
            with self.state.lock:
                tokens = list(self.state.openid_tokens)
            self.send_json(200, tokens)
        elif path in (GET_TOKEN, SFU_GET) + HS_GET_TOKEN_PATHS:
            self.state.record("GET", path, 405)
            self.send_json(405, {"errcode": "M_UNRECOGNIZED", "error": "use POST"})
        else:
            self.send_text(404, "404 page not found")

    def do_PUT(self):
        try:
            raw = self.read_raw_body()
        except Refusal:
            self.send_json(413, {"errcode": "M_TOO_LARGE", "error": "body too large"})
            return
        if self.path_only() != "/_stand_in/config":
            self.send_text(404, "404 page not found")
            return
        try:
            update = parse_json(raw)
            self.state.configure(update)
        except (Refusal, TypeError, ValueError, AttributeError):
            self.send_json(400, {"errcode": "M_BAD_JSON", "error": "bad config"})
            return
        self.send_json(200, {})

    def do_POST(self):
        path = self.path_only()
        handlers = {GET_TOKEN: "service", SFU_GET: "legacy"}
        kind = handlers.get(path) or ("homeserver" if path in HS_GET_TOKEN_PATHS else None)
        try:
            raw = self.read_raw_body()
        except Refusal as refusal:
            self.send_json(refusal.status, {"errcode": refusal.errcode, "error": refusal.error})
            return
        if kind is None:
            self.send_text(404, "404 page not found")
            return
        with self.state.lock:
            disabled = path in self.state.disabled_paths
            refuse = self.state.refuse
        if disabled:
            # What an older service (or a homeserver without the endpoint) answers.
            self.state.record("POST", path, 404)
            if kind == "homeserver":
                self.send_json(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
            else:
                self.send_text(404, "404 page not found")
            return
        try:
            body = parse_json(raw)
            if refuse:
                raise Refusal(int(refuse["status"]), refuse.get("errcode"), refuse.get("error", ""))
            if kind == "service":
                answer = get_token(self.state, body)
            elif kind == "legacy":
                answer = sfu_get(self.state, body)
            else:
                answer = homeserver_get_token(self.state, body, self.headers)
        except Refusal as refusal:
            self.state.record("POST", path, refusal.status)
            error = {"error": refusal.error}
            if refusal.errcode:
                error["errcode"] = refusal.errcode
            self.send_json(refusal.status, error)
            return
        self.state.record("POST", path, 200)
        self.send_json(200, answer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    state = State(
        api_key=os.environ["LIVEKIT_API_KEY"],
        api_secret=os.environ["LIVEKIT_API_SECRET"],
        hs_token=os.environ["STAND_IN_HS_TOKEN"],
        sfu_url=os.environ["STAND_IN_SFU_URL"],
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = state
    port = server.server_address[1]
    temporary = args.port_file + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(f"{port}\n")
    os.replace(temporary, args.port_file)
    print(f"jwt service stand-in listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
