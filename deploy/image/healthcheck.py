"""The image's HEALTHCHECK: exit 0 when /healthz answers 200 on the REST port (chatmq serve,
chatmq api: CHATMQ_HTTP_PORT, 8000) or on the ops port (every other part: CHATMQ_OPS_PORT, 9100)."""

import os
import sys
import urllib.request

for port in (os.environ.get("CHATMQ_HTTP_PORT", "8000"), os.environ.get("CHATMQ_OPS_PORT", "9100")):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        continue
sys.exit(1)
