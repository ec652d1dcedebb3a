#!/usr/bin/env python3
"""A real RFC 3161 time-stamping authority for tests: `openssl ts` (OpenSSL 3), on loopback.

  tsa.py init DIR NAME        a CA and a TSA certificate signed by it (extendedKeyUsage timeStamping)
                              and the openssl ts configuration, in DIR
  tsa.py reply DIR QUERY OUT  answers one TimeStampReq file with a TimeStampResp file
  tsa.py serve DIR PORTFILE   serves RFC 3161 over HTTP on 127.0.0.1 (POST application/timestamp-query);
                              writes the port to PORTFILE; stops by itself after 15 minutes
"""
import http.server
import os
import subprocess
import sys
import tempfile
import threading

CONFIG = """[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
certs = $dir/ca.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def init(d, name):
    os.makedirs(d, exist_ok=True)
    p = lambda f: os.path.join(d, f)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", f"/CN={name} root", "-keyout", p("ca.key"), "-out", p("ca.crt"))
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={name} TSA", "-keyout", p("tsa.key"), "-out", p("tsa.csr"))
    with open(p("ext.cnf"), "w") as f:
        f.write("basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = critical, timeStamping\n")
    run("openssl", "x509", "-req", "-in", p("tsa.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", p("ext.cnf"), "-out", p("tsa.crt"))
    with open(p("tsa.cnf"), "w") as f:
        f.write(CONFIG.format(dir=os.path.abspath(d)))
    with open(p("serial"), "w") as f:
        f.write("01\n")


LOCK = threading.Lock()  # openssl ts -reply updates the serial file


def reply(d, query, out):
    with LOCK:
        run("openssl", "ts", "-reply", "-config", os.path.join(d, "tsa.cnf"), "-queryfile", query, "-out", out)


def serve(d, port_file):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with tempfile.TemporaryDirectory() as t:
                q, r = os.path.join(t, "q.tsq"), os.path.join(t, "r.tsr")
                with open(q, "wb") as f:
                    f.write(body)
                try:
                    reply(d, q, r)
                    answer = open(r, "rb").read()
                    self.send_response(200)
                except subprocess.CalledProcessError:
                    answer = b""
                    self.send_response(400)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Timer(900, server.shutdown).start()
    with open(port_file + ".part", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".part", port_file)
    server.serve_forever()


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "init" and len(sys.argv) == 4:
        init(sys.argv[2], sys.argv[3])
    elif cmd == "reply" and len(sys.argv) == 5:
        reply(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "serve" and len(sys.argv) == 4:
        serve(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
