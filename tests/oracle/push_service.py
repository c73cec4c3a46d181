"""A stand-in push service on 127.0.0.1 for the delivery tests.

Run: python push_service.py   (prints "PORT <n>" once listening)

Control API (JSON):
  POST /subscriptions {"responses": [...]}  creates a browser-side key pair and an endpoint
      whose answers follow the script: "201", "410", "429 Retry-After: 120", "hang", "close".
      After the script runs out, it answers "default" (201 unless given; "slow" waits
      0.2 s, then answers 201). Returns the PushSubscription JSON.
  POST /push/<id>  the endpoint itself.
  GET /log/<id>    every request to that endpoint: status answered, headers, the payload
      decrypted with http_ece (an implementation independent of the server's), and the
      VAPID check (ES256 signature with the sender's key, aud, exp, sub).
Messages are also "shown" as a browser would: a 2xx with a Topic already shown for the
same subscription replaces that message instead of adding one.
"""

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.exceptions import InvalidSignature

LOCK = threading.Lock()
SUBSCRIPTIONS = {}


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check_vapid(header, origin, now):
    """Checks an Authorization: vapid t=..., k=... header; returns (claims, errors)."""
    errors = []
    if not header.startswith("vapid "):
        return None, ["Authorization is not a vapid header"]
    parts = dict(p.strip().split("=", 1) for p in header[len("vapid "):].split(","))
    token, key = parts.get("t", ""), parts.get("k", "")
    try:
        head, body, signature = token.split(".")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        raw = b64url_decode(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        header_json = json.loads(b64url_decode(head))
        claims = json.loads(b64url_decode(body))
    except (ValueError, InvalidSignature) as error:
        return None, [f"JWT does not verify: {error!r}"]
    if header_json.get("alg") != "ES256":
        errors.append(f"alg is {header_json.get('alg')}")
    if claims.get("aud") != origin:
        errors.append(f"aud {claims.get('aud')!r} is not {origin!r}")
    exp = claims.get("exp", 0)
    if exp <= now:
        errors.append(f"exp {exp} is not after now {now}")
    if exp > now + 86400:
        errors.append(f"exp {exp} is more than 24 h after now {now}")
    sub = claims.get("sub", "")
    if not (sub.startswith("mailto:") or sub.startswith("https://")):
        errors.append(f"sub {sub!r} is neither mailto: nor https:")
    return claims, errors


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self.path.startswith("/log/"):
            sub_id = self.path[len("/log/"):]
            with LOCK:
                sub = SUBSCRIPTIONS.get(sub_id)
                body = json.dumps(None if sub is None else {"requests": sub["log"], "shown": sub["shown"]})
            self.reply(200 if sub else 404, body.encode(), {"Content-Type": "application/json"})
        else:
            self.reply(404)

    def do_POST(self):
        body = self.read_body()
        if self.path == "/subscriptions":
            self.create(json.loads(body or b"{}"))
        elif self.path.startswith("/push/"):
            self.push(self.path[len("/push/"):], body)
        else:
            self.reply(404)

    def create(self, request):
        private = ec.generate_private_key(ec.SECP256R1())
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        auth = os.urandom(16)
        sub_id = b64url_encode(os.urandom(9))
        host, port = self.server.server_address[:2]
        endpoint = f"http://{host}:{port}/push/{sub_id}"
        with LOCK:
            SUBSCRIPTIONS[sub_id] = {
                "private": private,
                "auth": auth,
                "script": list(request.get("responses", [])),
                "default": request.get("default", "201"),
                "log": [],
                "shown": {},
                "origin": f"http://{host}:{port}",
            }
        out = {"endpoint": endpoint, "expirationTime": None,
               "keys": {"p256dh": b64url_encode(public), "auth": b64url_encode(auth)}}
        self.reply(201, json.dumps(out).encode(), {"Content-Type": "application/json"})

    def push(self, sub_id, body):
        with LOCK:
            sub = SUBSCRIPTIONS.get(sub_id)
            action = "404"
            if sub and sub["script"]:
                action = sub["script"].pop(0)
            elif sub:
                action = sub["default"]
        if sub is None:
            self.reply(404)
            return
        entry = {
            "received_at": time.time(),
            "answer": action,
            "ttl": self.headers.get("TTL"),
            "urgency": self.headers.get("Urgency"),
            "topic": self.headers.get("Topic"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "body_bytes": len(body),
        }
        try:
            plain = http_ece.decrypt(body, private_key=sub["private"], auth_secret=sub["auth"], version="aes128gcm")
            entry["payload"] = plain.decode()
        except Exception as error:  # the test asserts on this text
            entry["decrypt_error"] = repr(error)
        claims, errors = check_vapid(self.headers.get("Authorization", ""), sub["origin"], time.time())
        entry["vapid_claims"] = claims
        entry["vapid_errors"] = errors
        with LOCK:
            sub["log"].append(entry)
            if (action.startswith("2") or action == "slow") and "payload" in entry:
                key = entry["topic"] or f"untagged-{len(sub['log'])}"
                sub["shown"][key] = entry["payload"]
        self.answer(action)

    def answer(self, action):
        if action == "slow":
            time.sleep(0.2)
            action = "201"
        if action == "hang":
            time.sleep(30)
            action = "201"
        if action == "close":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        status, _, rest = action.partition(" ")
        headers = {}
        if rest.startswith("Retry-After:"):
            headers["Retry-After"] = rest.split(":", 1)[1].strip()
        body = b""
        if rest.startswith("{"):
            body = rest.encode()
            headers["Content-Type"] = "application/json"
        self.reply(int(status), body, headers)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
