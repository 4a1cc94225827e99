#!/usr/bin/env python3
"""Verifies Standard Webhooks signatures independently of ftune's C++ code
(python's stdlib hmac/hashlib/base64 only).

Usage: verify_webhook.py SECRET REQUESTS.json
where REQUESTS.json holds a list of {"id", "timestamp", "signature", "body"}.
Prints "ok N" and exits 0 when every signature verifies, else names the
first bad one and exits 1.
"""
import base64
import hashlib
import hmac
import json
import sys


def verify(secret, msg_id, timestamp, body, header):
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    expected = base64.b64encode(
        hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for part in header.split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


def main():
    secret = sys.argv[1]
    with open(sys.argv[2], encoding="utf-8") as f:
        requests = json.load(f)
    for i, r in enumerate(requests):
        if not verify(secret, r["id"], r["timestamp"], r["body"],
                      r["signature"]):
            print(f"bad signature on request {i}: {r['signature']}")
            return 1
    print(f"ok {len(requests)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
