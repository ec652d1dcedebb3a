#!/usr/bin/env python3
"""Upload benchmark (issue 4): a large attachment uploaded by `dala sync` to dala-server over loopback,
beside `curl -T` of the same file to nginx's WebDAV PUT, in the same run; the client's and the server's
peak memory; bytes sent again per interruption (through tools/faultproxy.py cut). Each figure is printed beside
its limit. Usage: upload_bench.py BIN_DIR [--mib N] [--rounds N]
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path[:0] = [os.path.join(HERE, "..", "support"), os.path.join(HERE, "..", "..", "tools")]
import faultproxy  # noqa: E402
import harness  # noqa: E402
from harness import KDF, free_port, measured, run, wait_port  # noqa: E402

_cli = harness.parser(__doc__, seed=False)
_cli.add_argument("--mib", type=int, default=1024, metavar="N", help="size of the attachment (default 1024 MiB)")
_cli.add_argument("--rounds", type=int, default=3, metavar="N", help="rounds, medians reported (default 3)")
ARGS = _cli.parse_args()
BIN, MIB, ROUNDS = ARGS.bin_dir, ARGS.mib, ARGS.rounds
CHUNK = 1 << 20
failures = 0


def row(metric, measured, op, limit, unit, basis):
    global failures
    ok = measured <= limit if op == "<=" else measured >= limit
    failures += 0 if ok else 1
    print(f"{metric:44} {measured:12.3f} {unit}  {op} {limit:12.3f} {unit}   {'ok' if ok else 'MISS':4}  ({basis})")


def main():
    if shutil.which("nginx") is None or shutil.which("curl") is None:
        raise SystemExit("upload_bench needs nginx (nginx-core, WebDAV PUT) and curl: tools/dev bench installs them")
    work = tempfile.mkdtemp(prefix="dala-upload-bench-", dir=os.environ.get("DALA_BENCH_DIR"))
    procs = []
    env = dict(os.environ, DALA_PASSPHRASE="bench", DALA_KDF_OPS="1", DALA_KDF_MEM_MIB="8")
    dala_bin, server_bin = harness.binaries(BIN)
    dala = [dala_bin]
    try:
        big = os.path.join(work, "clip.bin")
        with open(big, "wb") as f:
            for _ in range(MIB):
                f.write(os.urandom(CHUNK))
        port, nport, pport = free_port(), free_port(), free_port()
        _, server = harness.new_server(dala_bin, server_bin, work, port)
        invite = server.invite(uses=10)
        server.start()
        procs.append(server.proc)
        os.makedirs(f"{work}/nginx/www")
        os.makedirs(f"{work}/nginx/tmp")
        os.chmod(work, 0o755)  # nginx's worker may run as another user (when started by root)
        for d in ("nginx", "nginx/www", "nginx/tmp"):
            os.chmod(f"{work}/{d}", 0o777)
        with open(f"{work}/nginx/nginx.conf", "w") as c:
            c.write(f"""daemon off; worker_processes 1; pid {work}/nginx/nginx.pid; error_log {work}/nginx/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {work}/nginx/tmp; client_max_body_size 0;
  server {{ listen 127.0.0.1:{nport}; root {work}/nginx/www; location / {{ dav_methods PUT; }} }} }}
""")
        nginx = subprocess.Popen(["nginx", "-p", f"{work}/nginx", "-c", f"{work}/nginx/nginx.conf"],
                                 stderr=subprocess.DEVNULL)
        procs.append(nginx)
        wait_port(nport)

        dala_t, curl_t, curl_sync_t, sync_rss, cap_rss, cap_t = [], [], [], [], [], []
        for r in range(ROUNDS):
            store = f"{work}/phone{r}"
            run(*dala, "init", "--store", store, *KDF, env=env, timeout=None)
            run(*dala, "join", "--store", store, invite, env=env, timeout=None)
            t, rss, rc, err = measured(dala + ["report", "add", "--store", store, "--form", "bench/1", "--attach", big,
                                               "--seal"], env)
            assert rc == 0, err
            cap_t.append(t)
            cap_rss.append(rss)
            subprocess.run(["sync"], check=True)  # each transfer starts with no dirty pages to flush
            t, rss, rc, _ = measured(["curl", "-fsS", "-T", big, f"http://127.0.0.1:{nport}/clip{r}.bin", "-o",
                                      "/dev/null"])
            assert rc == 0
            curl_t.append(t)
            # The same made durable, as dala's upload is before it answers: fsync nginx's file.
            s0 = time.monotonic()
            subprocess.run(["sync", f"{work}/nginx/www/clip{r}.bin"], check=True)
            curl_sync_t.append(t + time.monotonic() - s0)
            subprocess.run(["sync"], check=True)
            t, rss, rc, err = measured(dala + ["sync", "--store", store, "--timeout", "600"], env)
            assert rc == 0, err
            dala_t.append(t)
            sync_rss.append(rss)
            shutil.rmtree(store)
            os.remove(f"{work}/nginx/www/clip{r}.bin")
        server_rss = server.peak_rss_mib()
        med = lambda v: sorted(v)[len(v) // 2]
        mb = MIB * CHUNK / 1e6
        print(f"Upload of a {MIB} MiB attachment over loopback, medians of {ROUNDS} rounds "
              f"(dala sync: enrol, push, upload in verified 1 MiB chunks each made durable, push for the receipt)")
        print(f"  dala sync {med(dala_t):.2f} s ({mb / med(dala_t):.0f} MB/s); curl -T to nginx WebDAV {med(curl_t):.2f} s "
              f"({mb / med(curl_t):.0f} MB/s); capture (dala report add --attach) {med(cap_t):.2f} s")
        print(f"  curl -T then fsync of nginx's file (durable, as dala's upload is): {med(curl_sync_t):.2f} s")
        row("upload speed / curl -T to nginx", med(curl_t) / med(dala_t), ">=", 0.9, "x  ", "issue 4 target")
        row("upload speed / (curl -T + fsync)", med(curl_sync_t) / med(dala_t), ">=", 0.9, "x  ",
            "both durable when done")
        row("client peak RSS while uploading", max(sync_rss), "<=", 32, "MiB", "issue 4 limit")
        row("client peak RSS while capturing", max(cap_rss), "<=", 32, "MiB", "issue 4 limit")
        row("server peak RSS (whole run)", server_rss, "<=", 64, "MiB", "about one chunk per upload + base")

        # Bytes sent again per interruption: a 64 MiB attachment through a proxy, without and with 5 cuts.
        small = os.path.join(work, "small.bin")
        with open(big, "rb") as src, open(small, "wb") as dst:
            dst.write(src.read(64 * CHUNK))
        forwarded = []
        for cuts in ([], [7_000_001, 9_500_003, 12_250_007, 5_000_011, 11_000_013]):
            store = f"{work}/cut{len(cuts)}"
            run(*dala, "init", "--store", store, *KDF, env=env, timeout=None)
            pinvite = server.invite(url=f"http://127.0.0.1:{pport}")
            run(*dala, "join", "--store", store, pinvite, env=env, timeout=None)
            run(*dala, "report", "add", "--store", store, "--form", "bench/1", "--attach", small, "--seal", env=env,
                timeout=None)
            proxy = faultproxy.Proxy("cut", pport, port, *cuts)
            wait_port(pport)
            for _ in range(10):
                if subprocess.run(dala + ["sync", "--store", store, "--timeout", "120"], env=env,
                                  capture_output=True).returncode == 0:
                    break
            out = proxy.stop()
            forwarded.append(int(out.split("forwarded ")[1].split()[0]))
            assert out.count("cut the") == len(cuts), out
        per_cut = (forwarded[1] - forwarded[0]) / 5
        print(f"  64 MiB through a cutting proxy: {forwarded[0]} bytes without cuts, {forwarded[1]} with 5 cuts")
        row("bytes sent again per interruption", per_cut / CHUNK, "<=", 1.0, "MiB", "one 1 MiB chunk per cut")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if failures == 0 else 1


sys.exit(main())
