#!/usr/bin/env python3
"""Runs the verification snippet of docs/webhooks.md (the ```python block
after the "webhook-verify" marker) against the Standard Webhooks
specification's published example, and checks that it refuses a changed
body, another secret, a stale timestamp and a signature of another scheme
version. Plain Python 3, no third-party modules; no ftune binary needed.
"""

import re
import sys
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs/webhooks.md"

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def snippet():
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- webhook-verify[^\n]*-->\n```python\n(.*?)\n```",
                      text, re.S)
    if match is None:
        raise AssertionError(f"{DOC}: no ```python block after the "
                             "webhook-verify marker")
    return match.group(1)


class VerifySnippetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        scope = {}
        exec(compile(snippet(), str(DOC), "exec"), scope)  # noqa: S102
        cls.verify = staticmethod(scope["verify_webhook"])

    def headers(self, signature=SIGNATURE, timestamp=TIMESTAMP):
        return {"webhook-id": MSG_ID, "webhook-timestamp": str(timestamp),
                "webhook-signature": signature}

    def test_accepts_the_specifications_example(self):
        self.assertTrue(self.verify(SECRET, self.headers(), BODY,
                                    now=TIMESTAMP + 10))
        # One of several signatures (secret rotation on the sender's side).
        self.assertTrue(self.verify(
            SECRET, self.headers("v1,AAAA " + SIGNATURE), BODY,
            now=TIMESTAMP))

    def test_refuses_what_it_should(self):
        self.assertFalse(self.verify(SECRET, self.headers(),
                                     BODY.replace(b"2", b"3"),
                                     now=TIMESTAMP))
        self.assertFalse(self.verify("whsec_" + "A" * 32, self.headers(),
                                     BODY, now=TIMESTAMP))
        self.assertFalse(self.verify(SECRET, self.headers(), BODY,
                                     now=TIMESTAMP + 3600))
        self.assertFalse(self.verify(
            SECRET, self.headers(SIGNATURE.replace("v1,", "v2,")), BODY,
            now=TIMESTAMP))


if __name__ == "__main__":
    sys.exit(unittest.main())
