#!/usr/bin/env python3
"""Upload to S3 storage (issue 16): a large attachment uploaded by `dala sync` to a dala-server keeping its
attachments in a real SeaweedFS (init --blobs s3://...), beside `curl -T` (SigV4-signed) of the same file to
the same SeaweedFS, in the same run; the server's peak memory. Each figure is printed beside its limit.
Usage: s3_upload_bench.py BIN_DIR [--mib N] [--rounds N]
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path[:0] = [os.path.join(HERE, "..", "support")]
import harness  # noqa: E402
import seaweedfs  # noqa: E402
from harness import KDF, measured, run  # noqa: E402

_cli = harness.parser(__doc__, seed=False)
_cli.add_argument("--mib", type=int, default=1024, metavar="N", help="size of the attachment (default 1024 MiB)")
_cli.add_argument("--rounds", type=int, default=3, metavar="N", help="rounds, medians reported (default 3)")
ARGS = _cli.parse_args()
BIN, MIB, ROUNDS = ARGS.bin_dir, ARGS.mib, ARGS.rounds
CHUNK = 1 << 20
failures = 0


def row(metric, value, op, limit, unit, basis):
    global failures
    ok = value <= limit if op == "<=" else value >= limit
    failures += 0 if ok else 1
    print(f"{metric:44} {value:12.3f} {unit}  {op} {limit:12.3f} {unit}   {'ok' if ok else 'MISS':4}  ({basis})")


def cpu_seconds(pid):
    """User + system CPU seconds of a process, its threads and its waited-for children (/proc)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def main():
    work = tempfile.mkdtemp(prefix="dala-s3-bench-", dir=os.environ.get("DALA_BENCH_DIR"))
    store = seaweedfs.Store(work)
    server = None
    try:
        store.start()
        os.environ.update(store.env())
        harness.ENV.update(store.env())
        env = dict(os.environ, DALA_PASSPHRASE="bench", DALA_KDF_OPS="1", DALA_KDF_MEM_MIB="8")
        dala_bin, server_bin = harness.binaries(BIN)
        big = os.path.join(work, "clip.bin")
        with open(big, "wb") as f:
            for _ in range(MIB):
                f.write(os.urandom(CHUNK))
        desk = harness.Desk(dala_bin, os.path.join(work, "org.key"))
        server = harness.Server(server_bin, os.path.join(work, "srv"), desk=desk)
        key = run(server_bin, "init", "--data", server.data, "--organisation", desk.identity, "--blobs",
                  store.url + "&prefix=bench/", env=env).stdout.strip().splitlines()[-1]
        server.key = key
        invite = server.invite(uses=10)
        server.start()
        dala_t, curl_t = [], []
        cpu = {"dala sync": [], "dala-server": [], "SeaweedFS (dala)": [], "SeaweedFS (curl)": [], "curl": []}
        for r in range(ROUNDS):
            phone = f"{work}/phone{r}"
            run(dala_bin, "init", "--store", phone, *KDF, env=env, timeout=None)
            run(dala_bin, "join", "--store", phone, invite, env=env, timeout=None)
            run(dala_bin, "report", "add", "--store", phone, "--form", "bench/1", "--attach", big, "--seal", env=env,
                timeout=None)
            subprocess.run(["sync"], check=True)
            weed0, self0 = cpu_seconds(store.proc.pid), os.times()
            t, _, rc, _ = measured(["curl", "-fsS", "-T", big, "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                                    f"{store.access_key}:{store.secret_key}",
                                    f"{store.endpoint}/{seaweedfs.BUCKET}/curl/clip{r}.bin", "-o", "/dev/null"])
            assert rc == 0
            self1 = os.times()
            cpu["SeaweedFS (curl)"].append(cpu_seconds(store.proc.pid) - weed0)
            cpu["curl"].append(self1.children_user + self1.children_system - self0.children_user - self0.children_system)
            curl_t.append(t)
            subprocess.run(["sync"], check=True)
            weed0, server0, self0 = cpu_seconds(store.proc.pid), cpu_seconds(server.proc.pid), os.times()
            t, _, rc, err = measured([dala_bin, "sync", "--store", phone, "--timeout", "900"], env)
            assert rc == 0, err
            self1 = os.times()
            cpu["SeaweedFS (dala)"].append(cpu_seconds(store.proc.pid) - weed0)
            cpu["dala-server"].append(cpu_seconds(server.proc.pid) - server0)
            cpu["dala sync"].append(self1.children_user + self1.children_system - self0.children_user - self0.children_system)
            dala_t.append(t)
            shutil.rmtree(phone)
            store.curl("DELETE", f"curl/clip{r}.bin")
        server_rss = server.peak_rss_mib()
        med = lambda v: sorted(v)[len(v) // 2]
        mb = MIB * CHUNK / 1e6
        print(f"Upload of a {MIB} MiB attachment to SeaweedFS over loopback, medians of {ROUNDS} rounds (dala sync: "
              f"phone -> dala-server in verified 1 MiB chunks -> S3 multipart parts of 8 MiB, then the receipt)")
        print(f"  dala sync {med(dala_t):.2f} s ({mb / med(dala_t):.0f} MB/s); curl -T to the same SeaweedFS "
              f"{med(curl_t):.2f} s ({mb / med(curl_t):.0f} MB/s)")
        # Where the 2 cores go (CPU seconds, medians): the phone, dala-server and SeaweedFS share them here,
        # while curl's upload leaves SeaweedFS nearly alone.
        print("  CPU s: " + ", ".join(f"{k} {med(v):.2f}" for k, v in cpu.items()))
        row("upload to S3 / curl -T to the same store", med(curl_t) / med(dala_t), ">=", 0.8, "x  ", "issue 16 target")
        row("server peak RSS (whole run)", server_rss, "<=", 96, "MiB", "two parts per upload + base")
    finally:
        if server is not None and server.alive():
            server.stop()
        store.remove()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if failures == 0 else 1


sys.exit(main())
