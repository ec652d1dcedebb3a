#!/usr/bin/env python3
"""dala-server with its attachments in an S3-compatible store (issue 16), against a real SeaweedFS server
and a real PostgreSQL 15 cluster this test starts on 127.0.0.1 (tests/support/seaweedfs.py, postgres.py),
with a proxy in between that makes the store misbehave on demand (tests/support/s3_faults.py):
- `init` and `run` with the store refusing connections: a clear error, exit 1;
- the store refusing, timing out, answering 503 or a wrong ETag, a part damaged on the way, or a completion
  answered but not done, in the middle of an upload: the phone is told to try later, nothing is marked damaged or rejected, and once the store is
  well the same server delivers the report with its video, verified by the desk, and `dala-server check` reads every object back;
- a node killed between completing an attachment in the bucket and recording it: the next push finds it
  whole, without the phone sending it again;
- two nodes on one database and one bucket, phones listing both, one node SIGKILLed in the middle of an
  upload: the other resumes from the parts and tail the first left;
- the store's requests in /metrics.

Usage: s3_test.py BIN_DIR."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
import postgres  # noqa: E402
import s3_faults  # noqa: E402
import seaweedfs  # noqa: E402

FAILED = []
MIB = 1 << 20


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def add_video(dala, store, work, mib, text):
    path = os.path.join(work, f"video-{os.urandom(4).hex()}.mp4")
    with open(path, "wb") as f:
        f.write(os.urandom(mib * MIB))
    rid = harness.run(dala, "report", "add", "--store", store, "--form", "detention/1", "--text", text,
                      "--attach", path, "--seal").stdout.strip()
    os.remove(path)
    return rid


def uploaded_bytes(log):
    """Upload body bytes a server received, from its request log (one line per request)."""
    total = 0
    for line in open(log):
        if '"path":"/v2/upload"' in line or '"path":"/v1/upload"' in line:
            total += int(line.split('"bytes_in":')[1].split(",")[0].split("}")[0])
    return total


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-s3-test-")
    cluster = postgres.Cluster().init()
    bucket = seaweedfs.Store()
    proxy = None
    procs = []
    try:
        cluster.start()
        bucket.start()
        harness.ENV.update(bucket.env())  # every dala-server command of this test reads the bucket
        env = dict(os.environ, **bucket.env())
        proxy = s3_faults.FaultyS3(bucket.ports["s3"]).start()
        via_proxy = (f"s3://{seaweedfs.BUCKET}?endpoint=http://127.0.0.1:{proxy.port}&prefix=faults/&timeout=2")
        desk = harness.Desk(dala, os.path.join(work, "org.key"))

        def init(data, blobs, db=None):
            return harness.run(server_bin, "init", "--data", data, "--organisation", desk.identity, "--database",
                               db or cluster.new_database(), "--blobs", blobs, check=False, env=env, timeout=120)

        def start(data, port, extra_env=None, log=None):
            err = open(log, "w") if log else subprocess.DEVNULL
            p = subprocess.Popen([server_bin, "run", "--data", data, "--listen", f"127.0.0.1:{port}"] +
                                 ([] if log else ["--quiet"]), stdout=subprocess.PIPE, stderr=err,
                                 env=dict(env, **(extra_env or {})))
            procs.append(p)
            return p

        # The store unreachable at init, and at start.
        proxy.set("refuse")
        r = init(os.path.join(work, "refused"), via_proxy)
        check("init with the store refusing connections: exit 1, saying the bucket cannot be used",
              r.returncode == 1 and "cannot be used" in r.stderr and "no answer from the store" in r.stderr,
              (r.returncode, r.stderr[-300:]))
        no_keys = dict(env, DALA_S3_ACCESS_KEY_ID="", DALA_S3_SECRET_ACCESS_KEY="")
        r = harness.run(server_bin, "init", "--data", os.path.join(work, "nokeys"), "--organisation", desk.identity,
                        "--blobs", bucket.url, check=False, env=no_keys)
        check("init without S3 credentials in the environment: refused (exit 2), naming the variables",
              r.returncode == 2 and "DALA_S3_ACCESS_KEY_ID" in r.stderr, (r.returncode, r.stderr[-300:]))
        proxy.set("pass")
        data = os.path.join(work, "srv")
        r = init(data, via_proxy)
        check("init with the store well: the bucket probed, the location kept", r.returncode == 0, r.stderr[-300:])
        key = r.stdout.strip().splitlines()[-1]
        proxy.set("refuse")
        port = harness.free_port()
        p = start(data, port)
        try:
            code = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        check("run with the store refusing connections: exit 1 at start", code == 1, code)
        proxy.set("pass")

        # Faults in the middle of an upload, then the store well again.
        log = os.path.join(work, "srv.log")
        server = start(data, port, log=log)
        server.stdout.readline()
        phone = harness.new_phone(dala, os.path.join(work, "phone"), desk.invite(key, f"http://127.0.0.1:{port}"))
        for mode in ("5xx", "etag", "flip", "stall", "refuse", "fakeok"):
            add_video(dala, phone, work, 20, f"A video through {mode}.")
            if mode == "fakeok":
                proxy.set(mode)  # every request passes but the completion: its answer is made up
            else:
                proxy.arm(mode, after=5)  # the upload's first requests pass: its first part is stored
            r = harness.run(dala, "sync", "--store", phone, "--timeout", "90", check=False, timeout=180)
            states = {x["state"] for x in harness.reports(dala, phone)}
            check(f"S3 {mode} mid-upload: the phone is told to try later, nothing rejected or damaged",
                  r.returncode == 5 and "rejected" not in states and "damaged" not in r.stderr.lower(),
                  (r.returncode, states, r.stderr[-300:]))
            check(f"  the server stays up", server.poll() is None)
            proxy.set("pass")
            r = harness.run(dala, "sync", "--store", phone, "--now", check=False, timeout=180)
            check(f"  the store well again: delivered by the same server process", r.returncode == 0,
                  (r.returncode, r.stderr[-300:]))
        problems, n = harness.check_delivered(dala, server_bin, data, desk.key, [phone])
        check(f"every version ({n}) delivered once with its video, verified by the desk", not problems, problems[:3])
        logged = open(log).read()
        check("a part damaged on the way to the store is refused by it (Content-MD5: BadDigest), never stored",
              "BadDigest" in logged, logged[-500:])
        r = harness.run(server_bin, "check", "--data", data, check=False, env=env, timeout=300)
        check("dala-server check reads every attachment back from the bucket: clean", r.returncode == 0,
              r.stderr[-300:])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as m:
            text = m.read().decode()
        failures = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("dala_server_storage_requests_total{") and
                       ('code="503"' in line or 'code="0"' in line))
        parts = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith('dala_server_storage_requests_total{op="upload_part",code="200"}'))
        check("/metrics counts the store's requests, the failed ones too", parts > 0 and failures > 0,
              (parts, failures))
        aborted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith('dala_server_storage_requests_total{op="abort_upload",code="204"}'))
        check("an upload whose part the store misreported (wrong ETag) is discarded, not resumed", aborted >= 1,
              [line for line in text.splitlines() if "abort_upload" in line])

        # Killed between completing the object in the bucket and recording it complete.
        server.terminate()
        server.wait(timeout=30)
        add_video(dala, phone, work, 12, "Killed at the last step.")
        crash = start(data, port, extra_env={"DALA_TEST_FAILPOINT_EXIT": "server.upload.before_complete"})
        crash.stdout.readline()
        harness.run(dala, "sync", "--store", phone, "--timeout", "60", check=False, timeout=120)
        code = crash.wait(timeout=60)
        log2 = os.path.join(work, "srv2.log")
        server = start(data, port, log=log2)
        server.stdout.readline()
        r = harness.run(dala, "sync", "--store", phone, "--now", check=False, timeout=180)
        resent = uploaded_bytes(log2)
        check("a node killed after the object was whole in the bucket but before it was recorded: the next push "
              f"finds it whole (the phone sent {resent} upload bytes again)",
              code == 99 and r.returncode == 0 and resent < MIB, (code, r.returncode, resent, r.stderr[-300:]))
        problems, n = harness.check_delivered(dala, server_bin, data, desk.key, [phone])
        check("  delivered, verified by the desk", not problems, problems[:3])
        server.terminate()
        server.wait(timeout=30)

        # Two nodes on one database and one bucket: an upload cut by node C's death resumes on node D.
        c_dir, d_dir = os.path.join(work, "node-c"), os.path.join(work, "node-d")
        r = init(c_dir, bucket.url + "&prefix=nodes/")
        key = r.stdout.strip().splitlines()[-1]
        shutil.copytree(c_dir, d_dir)
        c_port, d_port = harness.free_port(), harness.free_port()
        node_c = start(c_dir, c_port, extra_env={"DALA_TEST_FAILPOINT_DELAY_MS": "250"})  # a quarter second a chunk
        node_c.stdout.readline()
        d_log = os.path.join(work, "node-d.log")
        node_d = start(d_dir, d_port, log=d_log)
        node_d.stdout.readline()
        # A node on the same database but another prefix of the bucket (its store is not the others'): refused.
        e_dir = os.path.join(work, "node-e")
        shutil.copytree(c_dir, e_dir)
        with open(os.path.join(e_dir, "blobs.path"), "w") as f:
            f.write(bucket.url + "&prefix=elsewhere/")
        r = harness.run(server_bin, "run", "--data", e_dir, "--listen", f"127.0.0.1:{harness.free_port()}", "--quiet",
                        check=False, env=env, timeout=60)
        check("a node on this database whose store is another prefix of the bucket is refused",
              r.returncode != 0 and "do not all use one attachment store" in r.stderr and
              "prefix elsewhere/" in r.stderr, r.stderr[-300:])
        leftover = [k for k in bucket.keys() if k.startswith("elsewhere/")]
        check("  and it left nothing there", not leftover, leftover[:3])
        invite = desk.invite(key, f"http://127.0.0.1:{c_port}", f"http://127.0.0.1:{d_port}", uses=1,
                             equivalent=True)
        walker = harness.new_phone(dala, os.path.join(work, "walker"), invite)
        add_video(dala, walker, work, 20, "A long video.")
        sync = subprocess.Popen([dala, "sync", "--store", walker], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=harness.ENV)
        time.sleep(3.5)  # some 12 chunks through C: its first 8 MiB part is in the bucket
        node_c.kill()
        node_c.wait()
        sync.wait(timeout=180)
        r = harness.run(dala, "sync", "--store", walker, "--now", check=False, timeout=180)
        uploaded = uploaded_bytes(d_log)
        check("an upload cut by node C's death resumes on node D from the parts C left in the bucket "
              f"(D received {uploaded / MIB:.1f} MiB of the 20 MiB)",
              # the video's ciphertext less the 8 MiB part (plus the sealing's few KiB)
              r.returncode == 0 and 0 < uploaded <= 12 * MIB + 64 * 1024, (r.returncode, uploaded, r.stderr[-200:]))
        problems, n = harness.check_delivered(dala, server_bin, d_dir, desk.key, [walker])
        check("  the report and its video delivered whole, verified by the desk", not problems, problems[:3])
        leftovers = [k for k in bucket.keys() if k.startswith("nodes/uploads/")]
        check("  no tail object left in the bucket once the attachment is whole", not leftovers, leftovers[:3])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if proxy:
            proxy.stop()
        bucket.remove()
        cluster.remove()
        if FAILED:
            print(f"kept for a look: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if FAILED:
        print(f"{len(FAILED)} checks failed: {FAILED}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
