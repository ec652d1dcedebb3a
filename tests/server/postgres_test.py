#!/usr/bin/env python3
"""dala-server on PostgreSQL (issue 16), against a real PostgreSQL 15 cluster this test starts on 127.0.0.1
(tests/support/postgres.py), restarts and stops:
- `init --database` with PostgreSQL unreachable: a clear error, nothing left in the data directory;
- several `init`s at once on one new database: the schema is made once, one server is made, the others are
  refused in words (no SQL error from a race);
- the signing key is sealed in the database: a copy of the data directory with another server.key is refused;
- PostgreSQL stopped while the server runs: pushes get "try later", nothing is lost or half-written, and once
  PostgreSQL is back the same server process delivers without a restart;
- two nodes on copies of one data directory and one database, phones dialling both, one node SIGKILLed
  during pushes: every version stored exactly once, every phone with verified receipts, the desk verifying
  the one log, `dala-server check` clean;
- `backup` on a PostgreSQL data directory says to use pg_dump;
- nodes whose attachment stores part while they run (a share gone under one, a one-way replica): every node
  refuses uploads until they are one again, saying so in /metrics and the log; a node started on a copy of
  the shared store is refused.

Usage: postgres_test.py BIN_DIR."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
import postgres  # noqa: E402

FAILED = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        FAILED.append(what)


def add_report(dala, store, place):
    harness.run(dala, "report", "add", "--store", store, "--form", "detention/1", "--field", f"place={place}",
                "--text", f"Seen at {place}.", "--seal")


def init_nodes(server_bin, desk, url, blobs, first, *copies):
    """`dala-server init` of a node's data directory `first` on the database `url` with attachments in the
    shared directory `blobs`, copied to each of `copies` (nodes are started on copies of one data directory):
    the server's key."""
    out = harness.run(server_bin, "init", "--data", first, "--organisation", desk.identity, "--database", url,
                      "--blobs", blobs).stdout
    for c in copies:
        shutil.copytree(first, c)
    return out.strip().splitlines()[-1]


def storage_limit_across_nodes(dala, server_bin, desk, cluster, work, servers):
    """--max-storage-mib on nodes that share one attachment store is the store's limit, not each node's: what
    one node stored counts on the other (recounted from the database at most every 2 s)."""
    url = cluster.new_database()
    e_dir, f_dir = os.path.join(work, "node-e"), os.path.join(work, "node-f")
    key = init_nodes(server_bin, desk, url, os.path.join(work, "ef-blobs"), e_dir, f_dir)
    e = harness.Server(server_bin, e_dir, desk=desk)
    f = harness.Server(server_bin, f_dir, desk=desk)
    e.key = f.key = key
    e.start("--max-storage-mib", "1")
    f.start("--max-storage-mib", "1")  # both started before anything is stored: each counts nothing
    servers += [e, f]
    clip = os.path.join(work, "clip.mp4")
    with open(clip, "wb") as out_file:
        out_file.write(os.urandom(700 << 10))
    first = harness.new_phone(dala, os.path.join(work, "limit-e"), desk.invite(key, f"http://127.0.0.1:{e.port}", uses=1))
    second = harness.new_phone(dala, os.path.join(work, "limit-f"), desk.invite(key, f"http://127.0.0.1:{f.port}", uses=1))
    for phone in (first, second):
        harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--text", "A clip.",
                    "--attach", clip, "--seal")
    r = harness.run(dala, "sync", "--store", first, check=False, timeout=120)
    check("a 700 KiB clip stored through node E (limit 1 MiB)", r.returncode == 0, (r.returncode, r.stderr[-300:]))
    r = harness.run(dala, "sync", "--store", second, check=False, timeout=120)
    check("  a second one through node F is refused: the shared store is full, whichever node stored the first",
          r.returncode == 5 and "storage is full" in r.stderr, (r.returncode, r.stderr[-300:]))
    for s in (e, f):
        s.stop()


def nodes_apart(port):
    """dala_server_nodes_apart in a node's /metrics (None if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as m:
            for line in m.read().decode().splitlines():
                if line.startswith("dala_server_nodes_apart "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def wait_apart(ports, want, seconds=30):
    """Waits (bounded) until every node's /metrics says `want` (True: some node's mark missing)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = [nodes_apart(p) for p in ports]
        if all(g is not None and (g > 0) == want for g in got):
            return got
        time.sleep(0.2)
    return [nodes_apart(p) for p in ports]


def repoint(link, target):
    """Points the symlink `link` at `target` at once (as a mount appearing or going under a running node)."""
    os.symlink(target, link + ".new")
    os.replace(link + ".new", link)


def stores_apart_while_running(dala, server_bin, desk, cluster, work):
    """Nodes check every --node-check-interval seconds, not only at start, that they use one attachment store
    (node H's store path is a symlink the test repoints, as a share mounted or gone under a running node):
    - a node started on a copy of the shared store is refused at start, naming the running node's missing
      mark; one on the share starts;
    - the share gone under node H: both nodes refuse uploads (one held in its last step as well) and say so
      in /metrics and the log; nothing is written where the share should be; all is delivered once it is back;
    - H on a one-way copy of the share (it sees node G's marks, G never sees its own): both refuse, G's row
      saying so to H; H killed there, a node restarted on the share starts at once, and the nodes stop
      counting H after three of its intervals;
    - a node stopped gracefully takes its row with it."""
    url = cluster.new_database()
    shared = os.path.join(work, "gh-blobs")
    link = os.path.join(work, "gh-link")
    g_dir, h_dir = os.path.join(work, "node-g"), os.path.join(work, "node-h")
    spare_dir = os.path.join(work, "node-spare")
    key = init_nodes(server_bin, desk, url, shared, g_dir, h_dir, spare_dir)
    os.symlink(shared, link)
    with open(os.path.join(h_dir, "blobs.path"), "w") as f:
        f.write(link)
    ports = [harness.free_port(), harness.free_port()]
    nodes, logs = [], []
    # Node H holds each upload for 5 s between its last byte and recording it complete, so that the stores
    # part while one is in that step.
    held = dict(os.environ, DALA_TEST_FAILPOINT_STALL="server.upload.before_complete:5000")
    for name, data, port, env in (("g", g_dir, ports[0], None), ("h", h_dir, ports[1], held)):
        logs.append(os.path.join(work, f"node-{name}.log"))
        with open(logs[-1], "w") as err:
            nodes.append(subprocess.Popen([server_bin, "run", "--data", data, "--listen", f"127.0.0.1:{port}",
                                           "--quiet", "--node-check-interval", "1"],
                                          stdout=subprocess.PIPE, stderr=err, env=env))
        nodes[-1].stdout.readline()
    try:
        clip = os.path.join(work, "apart.mp4")
        with open(clip, "wb") as f:
            f.write(os.urandom(300 << 10))
        phones = [harness.new_phone(dala, os.path.join(work, f"apart{i}"),
                                    desk.invite(key, f"http://127.0.0.1:{ports[min(i, 1)]}", uses=1))
                  for i in range(3)]

        def add_clip(phone):
            harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--text", "A clip.",
                        "--attach", clip, "--seal")

        def attachment_files(d):
            return {n: os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if not n.startswith(".dala")}

        for p in phones:
            add_clip(p)
        syncs = [harness.run(dala, "sync", "--store", p, check=False, timeout=120).returncode for p in phones]
        check("two nodes on one shared directory: clips uploaded through each", syncs == [0, 0, 0], syncs)
        time.sleep(2.5)  # a few checks
        rows = cluster.psql("SELECT count(*) FROM meta WHERE key LIKE 'node.%'", url).strip()
        got = wait_apart(ports, False, 5)
        check("  each node has its row; after a few checks no node's /metrics counts a node apart",
              rows == "2" and got == [0, 0], (rows, got))

        # Rows only a writer of the database could forge, read strictly: a mark that is not 32 lowercase hex
        # digits (it names a file or object in the store) and an interval past a day are not rows of a node.
        # Were they taken for one, its marks (missing from every store) would hold the nodes apart.
        now_ms = int(time.time() * 1000)
        forged = {"node.forged-token": f"{'Z' * 32} {'Z' * 32} {now_ms} 1 0",
                  "node.forged-interval": f"{'a' * 32} {'b' * 32} {now_ms} 86401 0"}
        for k, v in forged.items():
            cluster.psql(f"INSERT INTO meta(key, value) VALUES ('{k}', convert_to('{v}', 'UTF8'))", url)
        seen, deadline = set(), time.monotonic() + 4
        while time.monotonic() < deadline:  # several checks, each row fresh (alive) all along
            seen.update(tuple(nodes_apart(p) or 0 for p in ports))
            time.sleep(0.2)
        cluster.psql("DELETE FROM meta WHERE key LIKE 'node.forged-%'", url)
        check("  forged node rows (a mark that is no hex token, an interval past a day) are ignored: no node "
              "counts a node apart", seen == {0}, seen)

        # A node started on a copy of the shared store, made while the nodes ran (it holds the mark the last
        # node to start left, and their marks of that moment): refused once their newer marks are not in it.
        copy_dir, k_dir = os.path.join(work, "gh-copy"), os.path.join(work, "node-k")
        os.mkdir(copy_dir)
        for n in os.listdir(shared):  # marks the nodes remove meanwhile are left out, as a copy would miss them
            try:
                shutil.copy2(os.path.join(shared, n), os.path.join(copy_dir, n))
            except FileNotFoundError:
                pass
        shutil.copytree(g_dir, k_dir)
        with open(os.path.join(k_dir, "blobs.path"), "w") as f:
            f.write(copy_dir)
        time.sleep(3)  # the nodes leave newer marks in the share, not in the copy
        try:
            r = harness.run(server_bin, "run", "--data", k_dir, "--listen", f"127.0.0.1:{harness.free_port()}",
                            "--quiet", "--node-check-interval", "1", check=False, timeout=30)
            said = (r.returncode, r.stderr[-1500:])
        except subprocess.TimeoutExpired:
            said = ("it started and served", "")
        check("a node started on a copy of the shared store is refused at start, naming a running node's mark "
              "missing from the copy", said[0] != 0 and "do not all use one attachment store" in said[1] and
              copy_dir + "/.dala-node-mark-" in said[1], said)
        spare = subprocess.Popen([server_bin, "run", "--data", spare_dir, "--listen",
                                  f"127.0.0.1:{harness.free_port()}", "--quiet", "--node-check-interval", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = spare.stdout.readline()
        spare.terminate()
        spare.wait(timeout=30)
        check("  while a node on the share itself starts", started.startswith("listening on"),
              (started, spare.stderr.read()[-300:]))

        # The share vanishes under node H (its path now shows an empty directory) while H holds an upload
        # whose last byte it has, not yet recorded complete.
        for p in phones:
            add_clip(p)
        before = attachment_files(shared)
        in_step = subprocess.Popen([dala, "sync", "--store", phones[1]], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, env=harness.ENV)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                n not in before and size >= 300 << 10 for n, size in attachment_files(shared).items()):
            time.sleep(0.05)
        unmounted = os.path.join(work, "gh-mount-point")
        os.mkdir(unmounted)
        repoint(link, unmounted)
        got = wait_apart(ports, True)
        check("the share gone under node H: within seconds both nodes' /metrics count a node apart",
              all(g is not None and g > 0 for g in got), got)
        incomplete = cluster.psql("SELECT count(*) FROM attachments WHERE complete = 0", url).strip()
        in_step.wait(timeout=120)
        check("  the upload held in its last step as the stores parted is not recorded complete (try later)",
              in_step.returncode != 0 and incomplete == "1", (in_step.returncode, incomplete,
                                                              in_step.stderr.read()[-200:]))
        syncs = [harness.run(dala, "sync", "--store", p, check=False, timeout=120) for p in (phones[0], phones[2])]
        check("  uploads begun through either node now are refused as 'try later' (the phones keep their clips)",
              all(r.returncode != 0 for r in syncs), [(r.returncode, r.stderr[-150:]) for r in syncs])
        stray = list(attachment_files(unmounted))
        check("  nothing but node H's marks was written where the share should be", not stray, stray)
        said = [open(f).read() for f in logs]
        check("  each node logs attachment_stores_apart, naming the other's missing mark and where",
              all('"event":"attachment_stores_apart"' in t and ".dala-node-mark-" in t for t in said),
              [t[-300:] for t in said])

        # The share back: both nodes take uploads again by themselves; everything is delivered.
        repoint(link, shared)
        got = wait_apart(ports, False)
        check("the share back under node H: both nodes' /metrics at 0 again", got == [0, 0], got)
        syncs = [harness.run(dala, "sync", "--store", p, "--now", check=False, timeout=120) for p in phones]
        check("  the held clips delivered through both nodes", all(r.returncode == 0 for r in syncs),
              [(r.returncode, r.stderr[-150:]) for r in syncs])
        problems, n = harness.check_delivered(dala, server_bin, g_dir, desk.key, phones)
        check(f"  every one of the {n} versions stored once, its clip whole, verified by the desk", not problems,
              problems[:3])
        check("  node G logged that the stores are one again", '"event":"attachment_stores_joined"' in
              open(logs[0]).read())

        # Node H's store path a file, not a directory: its store cannot say whether it holds a mark (ENOTDIR),
        # and can write none. H stops taking uploads; node G, which still finds the mark H wrote before, does
        # not. Back on the share, H takes uploads again.
        not_a_dir = os.path.join(work, "gh-file")
        with open(not_a_dir, "w") as f:
            f.write("not a directory")
        repoint(link, not_a_dir)
        got_h = wait_apart(ports[1:], True)
        time.sleep(2)
        got = [nodes_apart(p) for p in ports]
        said = open(logs[1]).read()
        check("node H's store unreadable: H counts a node apart and says which mark it could not look for; G does "
              "not", got_h[0] and got[0] == 0 and got[1] and '"unreadable":["node ' in said and
              '"event":"node_mark_not_written"' in said, (got_h, got, said[-300:]))
        repoint(link, shared)
        got = wait_apart(ports, False)
        check("  back on the share, neither counts a node apart", got == [0, 0], got)

        # Node H on a one-way copy of the share (a replica that receives what the share holds, never the
        # reverse): H finds node G's marks, G never finds H's. G's row says its store lacks one: H refuses too.
        replica = os.path.join(work, "gh-replica")
        os.mkdir(replica)
        stop = threading.Event()

        def replicate():
            while not stop.is_set():
                for n in os.listdir(shared):
                    if n.startswith(".dala-node-mark-") and not os.path.exists(os.path.join(replica, n)):
                        try:
                            shutil.copy(os.path.join(shared, n), os.path.join(replica, n))
                        except FileNotFoundError:
                            pass
                stop.wait(0.1)

        copier = threading.Thread(target=replicate)
        copier.start()
        try:
            repoint(link, replica)
            got = wait_apart(ports, True)
            add_clip(phones[1])
            r = harness.run(dala, "sync", "--store", phones[1], check=False, timeout=120)
            check("node H on a one-way replica of the share: both nodes count a node apart, and H refuses uploads "
                  "though its store holds every mark of G", all(g is not None and g > 0 for g in got) and
                  r.returncode != 0 and not attachment_files(replica), (got, r.returncode, attachment_files(replica)))
            # Node H killed there (SIGKILL: its row stays, saying its store lacked nothing, its marks only in
            # the replica). A node restarted on the share at once is not kept from starting: node G says its
            # store lacks a mark. It refuses uploads with G until H's row has not changed for three of its
            # intervals; then both take uploads.
            nodes[1].kill()
            nodes[1].wait()
        finally:
            stop.set()
            copier.join()
        spare_port = harness.free_port()
        spare_log = os.path.join(work, "node-spare.log")
        with open(spare_log, "w") as err:
            spare = subprocess.Popen([server_bin, "run", "--data", spare_dir, "--listen", f"127.0.0.1:{spare_port}",
                                      "--quiet", "--node-check-interval", "1"], stdout=subprocess.PIPE, stderr=err,
                                     text=True)
        nodes.append(spare)
        started = spare.stdout.readline()
        check("node H killed on the replica: a node started on the share at once starts (node G says its store "
              "lacks a mark)", started.startswith("listening on"), (started, open(spare_log).read()[-300:]))
        got = wait_apart([ports[0], spare_port], False)
        add_clip(phones[0])
        r = harness.run(dala, "sync", "--store", phones[0], "--now", check=False, timeout=120)
        check("  node G and the new node count node H no more after three of its intervals, and take uploads",
              got == [0, 0] and r.returncode == 0, (got, r.returncode, r.stderr[-150:]))
        spare.terminate()
        spare.wait(timeout=30)
        # Node G stops gracefully: it takes its row with it (node H's, killed, is left).
        rows = cluster.psql("SELECT count(*) FROM meta WHERE key LIKE 'node.%'", url).strip()
        nodes[0].terminate()
        nodes[0].wait(timeout=30)
        left = cluster.psql("SELECT count(*) FROM meta WHERE key LIKE 'node.%'", url).strip()
        check("a node stopped gracefully leaves no row behind (a killed one's stays)", (rows, left) == ("2", "1"),
              (rows, left))
        # An attachment a node took into a store of its own (here: moved out of the share): `check` on a node of
        # the share names it, for the operator to copy it back.
        name = sorted(attachment_files(shared))[0]
        os.rename(os.path.join(shared, name), os.path.join(unmounted, name))
        r = harness.run(server_bin, "check", "--data", g_dir, check=False, timeout=120)
        os.rename(os.path.join(unmounted, name), os.path.join(shared, name))
        again = harness.run(server_bin, "check", "--data", g_dir, check=False, timeout=120)
        check("dala-server check names an attachment recorded complete that the shared store lacks; clean once back",
              r.returncode == 1 and name in r.stdout + r.stderr and again.returncode == 0,
              (r.returncode, r.stderr[-300:], again.returncode))
    finally:
        for proc in nodes:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    dala, server_bin = harness.binaries(bin_dir)
    work = tempfile.mkdtemp(prefix="dala-postgres-")
    cluster = postgres.Cluster().init()  # its own directory: nobody owns it under root
    servers = []
    try:
        cluster.start()
        desk = harness.Desk(dala, os.path.join(work, "org.key"))

        # Unreachable at init.
        dead = f"postgresql://dala@127.0.0.1:{harness.free_port()}/dala?connect_timeout=5"
        nowhere = os.path.join(work, "nowhere")
        r = harness.run(server_bin, "init", "--data", nowhere, "--organisation", desk.identity, "--database", dead,
                        check=False)
        check("init with PostgreSQL unreachable: exit 1, saying so, nothing left in the directory",
              r.returncode == 1 and "cannot connect to PostgreSQL" in r.stderr and
              not (os.path.exists(nowhere) and os.listdir(nowhere)), (r.returncode, r.stderr[-300:]))

        # Several inits at once on one new database.
        url = cluster.new_database()
        procs = [subprocess.Popen([server_bin, "init", "--data", os.path.join(work, f"race{i}"), "--organisation",
                                   desk.identity, "--database", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for i in range(4)]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        outputs = [p.stdout.read() for p in procs]
        made = [i for i, (code, _) in enumerate(results) if code == 0]
        refused = [err for code, err in results if code != 0]
        check("4 inits at once on one database: one server made, 3 refused in words (no SQL race)",
              len(made) == 1 and len(refused) == 3 and all("holds a dala-server's data already" in e for e in refused),
              results)
        tables = cluster.psql("SELECT count(*) FROM dala_schema", url) if made else ""
        check("  the schema was made once (one version row)", tables.strip() == "1", tables)

        # One node: phones deliver; PostgreSQL goes away and comes back under the running server.
        server = harness.Server(server_bin, os.path.join(work, f"race{made[0]}") if made else "", desk=desk)
        server.key = outputs[made[0]].strip().splitlines()[-1] if made else None
        server.start()
        servers.append(server)
        phones = [harness.new_phone(dala, os.path.join(work, f"phone{i}"), server.invite(uses=1)) for i in range(2)]
        for i, p in enumerate(phones):
            add_report(dala, p, f"Before {i}")
            harness.run(dala, "sync", "--store", p)
        cluster.stop()
        add_report(dala, phones[0], "While the database is down")
        r = harness.run(dala, "sync", "--store", phones[0], check=False, timeout=120)
        check("PostgreSQL stopped: a push is told to try later (sync exits non-zero), the server keeps running",
              r.returncode != 0 and server.alive(), (r.returncode, r.stderr[-200:]))
        cluster.start()
        r = harness.run(dala, "sync", "--store", phones[0], "--now", check=False, timeout=120)  # past its backoff
        check("PostgreSQL back: the same server process delivers the report held meanwhile", r.returncode == 0 and
              "1 delivered" in r.stderr, (r.returncode, r.stdout, r.stderr[-200:]))
        problems, n = harness.check_delivered(dala, server_bin, server.data, desk.key, phones)
        check(f"  every one of the {n} versions stored once, with verified receipts, the desk verifying them",
              not problems, problems[:3])

        # The sealed signing key: a copy of the data directory with another key opens nothing.
        other = os.path.join(work, "other-key")
        shutil.copytree(server.data, other, ignore=shutil.ignore_patterns("attachments"))
        with open(os.path.join(other, "server.key"), "wb") as f:
            f.write(os.urandom(32))
        r = harness.run(server_bin, "check", "--data", other, check=False)
        check("a data directory with another server.key does not open the database's signing key",
              r.returncode != 0 and "does not open the signing key" in r.stderr, r.stderr[-300:])
        r = harness.run(server_bin, "backup", "--data", server.data, "--out", os.path.join(work, "b.tar"), check=False)
        check("backup of a PostgreSQL data directory says to use pg_dump", r.returncode == 2 and "pg_dump" in r.stderr,
              (r.returncode, r.stderr[-300:]))
        server.stop()
        # Someone who can write to the database swaps the organisation's key (to enrol devices of their own):
        # the signing key, sealed with the organisation's key as associated data, no longer opens.
        with open(os.path.join(server.data, "database.url")) as f:
            first_url = f.read()
        cluster.psql("UPDATE meta SET value = '\\x" + os.urandom(32).hex() + "' WHERE key = 'organisation_key'",
                     first_url)
        r = harness.run(server_bin, "check", "--data", server.data, check=False)
        check("a database whose organisation key was swapped opens no signing key (refused)",
              r.returncode != 0 and "organisation key was changed" in r.stderr, r.stderr[-300:])

        # Two nodes on one database, phones dialling both, one node killed during pushes.
        url = cluster.new_database()
        a_dir = os.path.join(work, "node-a")
        b_dir = os.path.join(work, "node-b")
        key = init_nodes(server_bin, desk, url, os.path.join(work, "ab-blobs"), a_dir, b_dir)
        # A node whose attachment store is not the others' (the shared directory not mounted: here another
        # directory, as a copy of the data directory made with its own attachments would be) is refused.
        stray_dir = os.path.join(work, "node-stray")
        shutil.copytree(a_dir, stray_dir)
        with open(os.path.join(stray_dir, "blobs.path"), "w") as f:
            f.write(os.path.join(work, "not-mounted"))
        a = harness.Server(server_bin, a_dir, desk=desk)
        b = harness.Server(server_bin, b_dir, desk=desk)
        a.key = b.key = key
        a.start()
        b.start()
        servers += [a, b]
        r = harness.run(server_bin, "run", "--data", stray_dir, "--listen", f"127.0.0.1:{harness.free_port()}",
                        "--quiet", check=False, timeout=60)
        check("a node on this database with an attachment store of its own is refused, saying what to do",
              r.returncode != 0 and "do not all use one attachment store" in r.stderr and
              "not-mounted" in r.stderr and ".dala-node-mark-" in r.stderr, (r.returncode, r.stderr[-400:]))
        check("  and a node on the shared store starts (node B, after node A)", b.alive())
        # Both nodes taking pushes at once, each phone dialling one of them: every push is taken at its first
        # try (the nodes' writes are serialised, not refused as conflicts).
        direct = [harness.new_phone(dala, os.path.join(work, f"direct{i}"),
                                    desk.invite(key, f"http://127.0.0.1:{(a, b)[i % 2].port}", uses=1))
                  for i in range(4)]
        exits = []

        def push_direct(store, i):
            for n in range(8):
                add_report(dala, store, f"Direct {i}-{n}")
                exits.append(harness.run(dala, "sync", "--store", store, check=False, timeout=120).returncode)

        threads = [threading.Thread(target=push_direct, args=(p, i)) for i, p in enumerate(direct)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(f"two nodes, four phones pushing at once: all {len(exits)} pushes taken at the first try",
              exits.count(0) == len(exits) == 32, sorted(set(exits)))
        invite = desk.invite(key, f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}", uses=3, equivalent=True)
        phones = [harness.new_phone(dala, os.path.join(work, f"multi{i}"), invite) for i in range(3)]
        errors = []

        def push(store, i):
            for n in range(6):
                add_report(dala, store, f"Node test {i}-{n}")
                r = harness.run(dala, "sync", "--store", store, check=False, timeout=120)
                if r.returncode not in (0, 5):
                    errors.append(r.stderr[-200:])

        threads = [threading.Thread(target=push, args=(p, i)) for i, p in enumerate(phones)]
        for t in threads:
            t.start()
        for _ in range(200):  # node A is killed once pushes are under way, while more are to come
            if len(cluster.psql("SELECT 1 FROM reports LIMIT 3", url).split()) >= 3:
                break
            time.sleep(0.05)
        a.kill()
        for t in threads:
            t.join()
        for p in phones:  # what was in flight when node A died goes to B
            harness.run(dala, "sync", "--store", p, "--now", check=False, timeout=120)
        check("three phones pushed through two nodes while one was SIGKILLed", not errors, errors[:2])
        problems, n = harness.check_delivered(dala, server_bin, b_dir, desk.key, phones + direct)
        check(f"every one of the {n} versions stored exactly once, verified receipts, one log the desk verifies",
              not problems, problems[:3])
        r = harness.run(server_bin, "check", "--data", b_dir, check=False)
        check("dala-server check: the log, its heads and the reports agree", r.returncode == 0, r.stderr[-300:])

        # Two nodes sharing an attachment directory (init --blobs): a photo's upload begun on node A, which is
        # SIGKILLed midway, resumes on node B from the chunks A made durable.
        url = cluster.new_database()
        blobs = os.path.join(work, "shared-blobs")
        c_dir, d_dir = os.path.join(work, "node-c"), os.path.join(work, "node-d")
        key = init_nodes(server_bin, desk, url, blobs, c_dir, d_dir)
        c_port, d_port = harness.free_port(), harness.free_port()
        slow = dict(os.environ, DALA_TEST_FAILPOINT_DELAY_MS="250")  # each 1 MiB chunk a quarter second on C
        node_c = subprocess.Popen([server_bin, "run", "--data", c_dir, "--listen", f"127.0.0.1:{c_port}", "--quiet"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=slow)
        node_c.stdout.readline()
        d_log = os.path.join(work, "node-d.log")
        with open(d_log, "w") as err:
            node_d = subprocess.Popen([server_bin, "run", "--data", d_dir, "--listen", f"127.0.0.1:{d_port}"],
                                      stdout=subprocess.PIPE, stderr=err)
        node_d.stdout.readline()
        try:
            invite = desk.invite(key, f"http://127.0.0.1:{c_port}", f"http://127.0.0.1:{d_port}", uses=1,
                                 equivalent=True)
            phone = harness.new_phone(dala, os.path.join(work, "photographer"), invite)
            photo = os.path.join(work, "photo.jpg")
            with open(photo, "wb") as f:
                f.write(b"\xff\xd8\xff" + os.urandom(12 << 20))
            harness.run(dala, "report", "add", "--store", phone, "--form", "detention/1", "--text", "A photo.",
                        "--attach", photo, "--seal")
            sync = subprocess.Popen([dala, "sync", "--store", phone], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=harness.ENV)
            time.sleep(2.5)  # C takes a quarter second a chunk: a few chunks are durable in the shared directory
            node_c.kill()
            node_c.wait()
            sync.wait(timeout=120)  # it goes on with D (the addresses are equivalent), or leaves it for the next
            r = harness.run(dala, "sync", "--store", phone, "--now", check=False, timeout=180)
            uploaded = 0
            for line in open(d_log):
                if '"path":"/v2/upload"' in line or '"path":"/v1/upload"' in line:
                    uploaded += int(line.split('"bytes_in":')[1].split(",")[0].split("}")[0])
            check("an upload cut by node C's death resumes on node D from the chunks C left in the shared "
                  f"directory (D received {uploaded / (1 << 20):.1f} MiB of the 12 MiB)",
                  r.returncode == 0 and 0 < uploaded <= (12 << 20) - (4 << 20), (r.returncode, uploaded, r.stderr[-200:]))
            problems, n = harness.check_delivered(dala, server_bin, d_dir, desk.key, [phone])
            check("  the report and its photo delivered whole, verified by the desk", not problems, problems[:3])
        finally:
            for proc in (node_c, node_d):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)

        storage_limit_across_nodes(dala, server_bin, desk, cluster, work, servers)
        stores_apart_while_running(dala, server_bin, desk, cluster, work)
    finally:
        for s in servers:
            if s.alive():
                s.stop()
        cluster.remove()
        shutil.rmtree(work, ignore_errors=True)
    if FAILED:
        print(f"{len(FAILED)} checks failed: {FAILED}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
