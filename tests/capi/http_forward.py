#!/usr/bin/env python3
"""The C API test's stand-in for an app's own HTTP stack (OkHttp, URLSession): POSTs a body to a URL with
optional headers and prints the HTTP status, a newline, then the response body as hex.
Usage: http_forward.py URL CONTENT_TYPE BODY_FILE OFFSET LENGTH [HEADER: VALUE]..."""
import sys
import urllib.error
import urllib.request

url, ctype, path, offset, length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
with open(path, "rb") as f:
    f.seek(offset)
    body = f.read(length)
req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
for h in sys.argv[6:]:
    k, v = h.split(": ", 1)
    req.add_header(k, v)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        status, data = r.status, r.read()
except urllib.error.HTTPError as e:
    status, data = e.code, e.read()
except OSError:
    sys.exit(1)
print(status)
print(data.hex())
