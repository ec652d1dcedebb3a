package org.dala;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The Java API end to end over the real library (and a real dala-server on loopback). */
class DalaTest {
    @TempDir Path tmp;

    static final Store.Options FAST = new Store.Options().kdf(1, 8L << 20);

    static byte[] pass(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    Store newStore(String name) {
        return Store.create(tmp.resolve(name).toString(), pass("correct horse"), FAST);
    }

    @Test
    void textCrossesAsUtf8EmojiKazakhRussian() {
        String kk = "Ойыл ауданында белсенділер ұсталды 🏃‍♀️🚓";
        String ru = "Задержаны во время пробежки — «без оснований»";
        ReportId id;
        try (Store s = newStore("s")) {
            try (Report r = s.createReport("detention/1")) {
                r.setText("place", "Орал (Uralsk) 📍").setNarrative(kk + "\n" + ru).setInteger("hours", 3);
                s.seal(r);
                id = r.id();
                assertEquals(ReportState.SEALED, r.state());
            }
        }
        try (Store s = Store.open(tmp.resolve("s").toString(), pass("correct horse"), FAST);
             Report r = s.report(id)) {
            assertEquals(kk + "\n" + ru, r.narrative());
            assertEquals("Орал (Uralsk) 📍", r.text("place"));
            assertNull(r.text("missing"));
            assertEquals(3, r.integer("hours"));
            assertEquals("detention/1", r.form());
            assertTrue(r.toJson().contains("🏃‍♀️🚓"));
            List<ReportInfo> all = s.reports();
            assertEquals(1, all.size());
            assertEquals(id, all.get(0).id);
            assertEquals(id, ReportId.parse(id.toString()));
        }
    }

    @Test
    void everyFieldTypeGeoPointsPeopleAndLocation() {
        ReportId id;
        try (Store s = newStore("s")) {
            try (Report r = s.createReport("detention/1")) {
                r.setText("place", "Oral").setInteger("hours", 3).setDecimal("fine", "-12.50").setBoolean("released", true)
                        .setTimestamp("when", 1755421200000L)
                        .setGeo("where", new GeoPoint(51.23, 51.37, 20))
                        .setPeople("detained", java.util.Arrays.asList(new Person("Roza Kariyeva", "detained"),
                                                                       new Person("Marua Eskendirova", null)))
                        .setLocation(new GeoPoint(51.2, 51.4, 0));
                s.seal(r);
                id = r.id();
            }
            try (Report r = s.report(id)) {
                assertEquals("-12.50", r.decimal("fine"));
                assertNull(r.decimal("missing"));
                assertTrue(r.bool("released"));
                assertEquals(1755421200000L, r.timestamp("when"));
                assertEquals(new GeoPoint(51.23, 51.37, 20), r.geo("where"));
                assertNull(r.geo("missing"));
                assertEquals(java.util.Arrays.asList(new Person("Roza Kariyeva", "detained"),
                                                     new Person("Marua Eskendirova", "")), r.people("detained"));
                assertNull(r.people("missing"));
                assertEquals(FieldType.PEOPLE, r.fieldTypes().get("detained"));
                assertEquals(FieldType.GEO, r.fieldTypes().get("where"));
                assertEquals(java.util.Arrays.asList("detained", "fine", "hours", "place", "released", "when", "where"),
                             new java.util.ArrayList<>(r.fieldTypes().keySet()));
                assertTrue(r.createdMs() > 0);
                assertFalse(r.isPurged());
                assertArrayEquals(s.deviceKey(), r.sealInfo().deviceKey);
                assertArrayEquals(new byte[32], r.sealInfo().previousHash);
                assertTrue(r.toJson().contains("\"location\":{\"latitude\":51.2"), r.toJson());
                assertEquals(Status.STATE, assertThrows(DalaException.class, () -> r.bool("place")).status());
                assertEquals(Status.NOT_FOUND, assertThrows(DalaException.class, () -> r.timestamp("missing")).status());
            }
            try (Report draft = s.createReport("detention/1")) {
                assertEquals(Status.STATE, assertThrows(DalaException.class, draft::sealInfo).status());
                assertThrows(DalaException.class, () -> draft.setGeo("g", new GeoPoint(91, 0, 0)));
                assertThrows(DalaException.class, () -> draft.setPeople("p", java.util.Arrays.asList(new Person("", "x"))));
            }
        }
    }

    @Test
    void libraryVersionAndStoreSettings() {
        assertEquals(Library.versionNumber() / 10000 + "." + Library.versionNumber() / 100 % 100 + "."
                     + Library.versionNumber() % 100, Library.version());
        assertTrue(Library.versionNumber() >= 200);
        try (Store s = newStore("s")) {
            s.check();
            s.setDeleteAfterDelivery(true);
            s.setDeleteAfterDelivery(false);
            OutboxStats none = s.outboxStats("org-nowhere");
            assertEquals(0, none.pending + none.inFlight + none.delivered + none.rejected);
        }
    }

    @Test
    void listsAPageAtATime() {
        try (Store s = newStore("s")) {
            List<ReportId> made = new java.util.ArrayList<>();
            for (int i = 0; i < 5; ++i) {
                try (Report r = s.createReport(i < 3 ? "detention/1" : "incident/2")) {
                    s.save(r);
                    if (i == 0) s.seal(r);
                    made.add(r.id());
                }
            }
            List<ReportId> all = new java.util.ArrayList<>();
            for (ReportInfo info : s.reports()) all.add(info.id);
            List<ReportId> walked = new java.util.ArrayList<>();
            ListOptions o = new ListOptions().limit(2);
            int pages = 0;
            for (;;) {
                ReportPage page = s.reports(o);
                assertTrue(page.reports.size() <= 2);
                for (ReportInfo info : page.reports) walked.add(info.id);
                ++pages;
                if (page.next == null) break;
                o.after(page.next);
            }
            assertEquals(3, pages);
            assertEquals(all, walked);
            assertEquals(2, s.reports(new ListOptions().limit(1000).form("incident")).reports.size());
            ReportPage sealed = s.reports(new ListOptions().states(java.util.EnumSet.of(ReportState.SEALED)));
            assertEquals(1, sealed.reports.size());
            assertEquals(made.get(0), sealed.reports.get(0).id);
            assertNull(sealed.next);
            assertEquals(5, s.reports((ListOptions) null).reports.size());
            DalaException bad = assertThrows(DalaException.class, () -> s.reports(new ListOptions().after("nonsense")));
            assertEquals(Status.INVALID_ARGUMENT, bad.status());
            assertThrows(DalaException.class, () -> s.reports(new ListOptions().limit(0)));
            assertThrows(DalaException.class, () -> s.reports(new ListOptions().form("Not A Form")));
        }
    }

    @Test
    void wrongPassphraseHasItsOwnExceptionAndSecretsAreWiped() {
        newStore("s").close();
        byte[] wrong = pass("guess");
        DalaException.WrongKey e = assertThrows(DalaException.WrongKey.class,
                () -> Store.open(tmp.resolve("s").toString(), wrong, FAST));
        assertEquals(Status.WRONG_KEY, e.status());
        assertArrayEquals(new byte[wrong.length], wrong, "the passphrase array is zeroed after use");
        byte[] right = pass("correct horse");
        Store.open(tmp.resolve("s").toString(), right, FAST).close();
        assertArrayEquals(new byte[right.length], right);
        assertThrows(DalaException.NotFound.class, () -> Store.open(tmp.resolve("none").toString(), pass("x")));
        assertThrows(DalaException.Exists.class, () -> newStore("s"));
    }

    @Test
    void useAfterCloseIsAClearErrorAndCloseTwiceIsHarmless() {
        Store s = newStore("s");
        Report r = s.createReport("detention/1");
        r.close();
        r.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> r.setNarrative("x"));
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
        s.close();
        s.close();
        assertThrows(IllegalStateException.class, () -> s.createReport("detention/1"));
        assertThrows(IllegalStateException.class, s::reports);
    }

    @Test
    void aProxyReachesTheLibrary() {
        try (Store s = newStore("s")) {
            // The proxy URL goes to the C API as it is: a malformed one is refused there, before any connection.
            DalaException.InvalidArgument e = assertThrows(DalaException.InvalidArgument.class,
                    () -> s.sync().throughProxy("socks4://127.0.0.1:9050").runOnce(5_000, null));
            assertTrue(e.getMessage().contains("socks5h://"), e.getMessage());
            assertThrows(DalaException.InvalidArgument.class,
                    () -> s.sync().throughProxy("socks5h://127.0.0.1").startSession(5_000, null, null));
        }
    }

    @Test
    void nullAndEmptyArgumentsAreRefusedClearly() {
        assertThrows(DalaException.InvalidArgument.class, () -> Store.create(null, pass("x"), FAST));
        assertThrows(DalaException.InvalidArgument.class, () -> Store.create(tmp.resolve("a").toString(), null, FAST));
        assertThrows(DalaException.InvalidArgument.class, () -> Store.create(tmp.resolve("b").toString(), new byte[0], FAST));
        try (Store s = newStore("s")) {
            assertThrows(DalaException.InvalidArgument.class, () -> s.createReport(""));
            assertThrows(DalaException.InvalidArgument.class, () -> s.createReport(null));
            assertThrows(DalaException.InvalidArgument.class, () -> s.report(null));
            assertThrows(DalaException.InvalidArgument.class, () -> ReportId.parse("xyz"));
            try (Report r = s.createReport("detention/1")) {
                assertThrows(DalaException.InvalidArgument.class, () -> r.setText(null, "v"));
                assertThrows(DalaException.InvalidArgument.class, () -> r.setText("k", null));
                assertThrows(DalaException.InvalidArgument.class, () -> r.setDecimal("amount", "1,5"));
                assertThrows(DalaException.InvalidArgument.class, () -> s.attach(r.id(), ""));
                s.seal(r);
                assertThrows(DalaException.State.class, () -> r.setNarrative("after sealing"));
            }
        }
    }

    @Test
    void attachmentsAreStreams() throws IOException {
        byte[] clip = new byte[3_000_001];
        for (int i = 0; i < clip.length; ++i) clip[i] = (byte) (i * 31 + (i >> 9));
        try (Store s = newStore("s"); Report r = s.createReport("detention/1")) {
            AttachmentOutputStream out = s.attach(r.id(), "video/mp4");
            for (int off = 0; off < clip.length; off += 65_537) out.write(clip, off, Math.min(65_537, clip.length - off));
            out.close();
            out.close();  // idempotent
            AttachmentId id = out.id();
            AttachmentOutputStream dropped = s.attach(r.id(), "audio/ogg");
            dropped.write(new byte[] {1, 2, 3});
            dropped.abort();
            assertEquals(1, s.attachments(r.id()).size());
            assertEquals(clip.length, s.attachments(r.id()).get(0).size);
            ByteArrayOutputStream back = new ByteArrayOutputStream();
            try (InputStream in = s.openAttachment(id)) {
                byte[] buf = new byte[10_000];
                for (int n; (n = in.read(buf, 0, buf.length)) > 0;) back.write(buf, 0, n);
            }
            assertArrayEquals(clip, back.toByteArray());
            File f = tmp.resolve("photo.jpg").toFile();
            Files.write(f.toPath(), new byte[] {9, 8, 7});
            AttachmentId photo = s.attachFile(r.id(), f.getPath(), "image/jpeg");
            s.removeAttachment(photo);
            assertThrows(DalaException.NotFound.class, () -> s.openAttachment(photo));
            assertThrows(DalaException.NotFound.class, () -> s.attachFile(r.id(), tmp.resolve("none").toString(), "image/jpeg"));
        }
    }

    @Test
    void manyThreadsUseOneStore() throws Exception {
        try (Store s = newStore("s")) {
            List<Thread> threads = new ArrayList<>();
            AtomicInteger failures = new AtomicInteger();
            for (int t = 0; t < 8; ++t) {
                final int n = t;
                threads.add(new Thread(() -> {
                    try {
                        for (int i = 0; i < 25; ++i) {
                            try (Report r = s.createReport("detention/1")) {
                                r.setNarrative("thread " + n + " report " + i);
                                s.seal(r);
                            }
                            s.reports();
                        }
                    } catch (RuntimeException e) {
                        failures.incrementAndGet();
                    }
                }));
            }
            threads.forEach(Thread::start);
            for (Thread th : threads) th.join();
            assertEquals(0, failures.get());
            assertEquals(200, s.reports().size());
        }
    }

    @Test
    void unclosedHandlesAreFreedByTheBackstop() throws Exception {
        try (Store s = newStore("s")) {
            long before = NativeHandle.backstopFreed();
            for (int i = 0; i < 200; ++i) s.createReport("detention/1");  // never closed
            for (int i = 0; i < 100 && NativeHandle.backstopFreed() == before; ++i) {
                System.gc();
                Thread.sleep(20);
            }
            assertTrue(NativeHandle.backstopFreed() > before, "the backstop freed unreachable handles");
        }
    }

    @Test
    void statusCodesMatchTheCHeader() {
        Map<Integer, Status> java = new HashMap<>();
        for (Status st : Status.values()) java.put(st.code(), st);
        int[] codes = Native.statusCodes();
        assertEquals(codes.length, Status.values().length, "every C status has a Java one, and no more");
        for (int c : codes) {
            assertNotNull(java.get(c), "no Java Status for C code " + c);
            assertEquals(Native.statusName(c), java.get(c).cName());
            if (c != 0) assertEquals(java.get(c), DalaException.create(c, new byte[0]).status());
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        byte[] out = readAll(p.getInputStream());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), String.join(" ", cmd));
        return new String(out, StandardCharsets.UTF_8).trim();
    }

    static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        for (int n; (n = in.read(buf)) > 0;) b.write(buf, 0, n);
        return b.toByteArray();
    }

    /**
     * A dala-server on a free loopback port, made as an organisation makes one: the desk's root key
     * (dala desk keygen), a server initialised for that organisation, and an invite the root key signs
     * (dala desk invite). The binaries come from ctest's environment.
     */
    static final class Server implements AutoCloseable {
        static final String ORGANISATION = "KIBHR";
        final Process process;
        final String invite;

        Server(Path tmp) throws Exception {
            this(tmp, 1);
        }

        Server(Path tmp, int uses) throws Exception {
            String server = System.getenv("DALA_SERVER_BIN"), cli = System.getenv("DALA_CLI_BIN");
            assertNotNull(server, "DALA_SERVER_BIN is not set");
            assertNotNull(cli, "DALA_CLI_BIN is not set");
            String data = tmp.resolve("srv").toString(), key = tmp.resolve("org.key").toString();
            String org = run("env", "DALA_PASSPHRASE=desk", cli, "desk", "keygen", "--out", key,
                             "--name", ORGANISATION, "--kdf-ops", "1", "--kdf-mem-mib", "8");
            assertTrue(org.matches("DALA-ORG1-[A-Za-z0-9_-]+"), "desk keygen prints the identity alone: " + org);
            String init = run(server, "init", "--data", data, "--organisation", org);
            String serverKey = init.substring(init.lastIndexOf('\n') + 1);
            assertTrue(serverKey.matches("[0-9a-f]{64}"), "server init ends with its key: " + init);
            int port = freePort();
            invite = run("env", "DALA_PASSPHRASE=desk", cli, "desk", "invite", "--key", key,
                         "--server-key", serverKey, "--url", "http://127.0.0.1:" + port, "--uses", String.valueOf(uses));
            assertTrue(invite.matches("DALA2-[A-Za-z0-9_-]+"), "desk invite prints the invite alone: " + invite);
            process = new ProcessBuilder(server, "run", "--data", data, "--listen", "127.0.0.1:" + port, "--quiet")
                    .redirectErrorStream(true).start();
            InputStream log = process.getInputStream();
            for (int b; (b = log.read()) != '\n';) assertTrue(b >= 0, "dala-server did not start");  // "listening"
        }

        @Override
        public void close() {
            process.destroy();
            try {
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Test
    void readmeSampleRunsAsShown() throws Exception {
        try (Server srv = new Server(tmp)) {
            Sync.Result r = org.dala.sample.QuickStart.run(tmp.resolve("phone").toString(), srv.invite, new byte[70_000]);
            assertEquals(1, r.delivered);
            assertEquals(0, r.remaining);
        }
    }

    @Test
    void syncAgainstDalaServerOnLoopbackWithAThrowingListener() throws Exception {
        try (Server srv = new Server(tmp); Store s = newStore("phone")) {
            String destination = s.join(srv.invite);
            assertTrue(destination.startsWith("org-"));
            for (int i = 0; i < 3; ++i) {
                try (Report r = s.createReport("detention/1")) {
                    r.setNarrative("Жеделхат " + i + " ✊");
                    s.seal(r);
                }
            }
            try (Report r = s.createReport("detention/1")) {
                try (AttachmentOutputStream out = s.attach(r.id(), "video/mp4")) {
                    out.write(new byte[2_500_000]);
                }
                s.seal(r);
            }
            // A listener that throws: the run completes and records everything; then the exception surfaces.
            // It is called after every request all the same, with one SyncProgress value each.
            java.util.List<SyncProgress> seen = new java.util.ArrayList<>();
            IllegalStateException thrown = assertThrows(IllegalStateException.class,
                    () -> s.sync().runOnce(30_000, p -> {
                        seen.add(p);
                        throw new IllegalStateException("listener failed");
                    }));
            assertEquals("listener failed", thrown.getMessage());
            assertTrue(seen.size() > 1, "called after each request, throwing or not");
            SyncProgress last = seen.get(seen.size() - 1);
            assertEquals(s.servers().get(0).destination, last.destination);
            assertEquals(4, last.delivered);
            assertEquals(0, last.remaining);
            assertTrue(last.uploadTotal >= 2_500_000, "the video's bytes are counted");
            assertEquals(last.uploadTotal, last.uploadDone, "progress reached the whole upload");
            assertTrue(last.toString().contains(last.destination));
            Sync.Result r = s.sync().runOnce(30_000, p -> { });
            assertEquals(0, r.delivered);  // everything went in the first run
            assertEquals(0, r.remaining);
            assertEquals(4, s.receipts().size());
            for (Receipt rc : s.receipts()) assertTrue(rc.verified);
            for (ReportInfo info : s.reports()) assertEquals(ReportState.DELIVERED, info.state);
            OutboxStats st = s.outboxStats(destination);
            assertEquals(4, st.delivered);
            assertEquals(0, st.pending + st.inFlight + st.rejected);
            assertEquals(0, st.nextAttemptMs);
            s.check();
        }
    }

    @Test
    void serversShowTheOrganisationAndHowTheLastContactWent() throws Exception {
        String destination;
        try (Store s = newStore("phone")) {
            try (Server srv = new Server(tmp)) {
                destination = s.join(srv.invite);
                List<org.dala.Server> before = s.servers();
                assertEquals(1, before.size());
                org.dala.Server joined = before.get(0);
                assertEquals(destination, joined.destination);
                assertEquals(Server.ORGANISATION, joined.organisation);
                assertTrue(joined.url.startsWith("http://127.0.0.1:"), joined.url);
                assertTrue(joined.fingerprint.matches("\\d{5}( \\d{5}){5}"), joined.fingerprint);
                assertEquals(32, joined.serverKey.length);
                assertEquals(32, joined.organisationKey.length);
                assertFalse(java.util.Arrays.equals(new byte[32], joined.organisationKey));
                assertFalse(joined.enrolled, "enrolment happens at the first contact");
                assertEquals("", joined.lastError);
                sealOne(s, "one");
                assertEquals(0, s.sync().runOnce(30_000, null).remaining);
                org.dala.Server after = s.servers().get(0);
                assertTrue(after.enrolled);
                assertEquals("", after.lastError);
            }
            // The server is gone: the next contact fails, and says so.
            sealOne(s, "two");
            s.sync().runOnce(5_000, null);
            assertFalse(s.servers().get(0).lastError.isEmpty(), "the failed contact is recorded");
        }
    }

    @Test
    void anAsyncRunCancelledMidUploadLosesNothingAndTheNextRunFinishes() throws Exception {
        try (Server srv = new Server(tmp); Store s = newStore("phone")) {
            s.join(srv.invite);
            ReportId id;
            try (Report r = s.createReport("detention/1")) {
                try (AttachmentOutputStream out = s.attach(r.id(), "video/mp4")) {
                    byte[] chunk = new byte[1 << 20];
                    for (int i = 0; i < 40; ++i) out.write(chunk);  // three upload requests of up to 16 MiB
                }
                s.seal(r);
                id = r.id();
            }
            java.util.concurrent.ExecutorService one = java.util.concurrent.Executors.newSingleThreadExecutor();
            java.util.concurrent.CountDownLatch uploading = new java.util.concurrent.CountDownLatch(1);
            java.util.concurrent.Future<Sync.Result> run = s.sync().runAsync(one, 60_000,
                    p -> {
                        if (p.uploadDone > 0) uploading.countDown();
                    }, null);
            assertTrue(uploading.await(30, TimeUnit.SECONDS), "the upload started");
            assertTrue(run.cancel(true));
            assertTrue(run.isCancelled());
            assertThrows(java.util.concurrent.CancellationException.class, run::get);
            one.shutdown();
            assertTrue(one.awaitTermination(30, TimeUnit.SECONDS), "the run stopped");
            assertEquals(0, s.receipts().size(), "stopped before the upload ended");
            assertEquals(ReportState.QUEUED, stateOf(s, id));
            // Nothing lost, and no backoff (a stop is not a failed contact): the next run finishes the upload at
            // once and the report is delivered, verified.
            assertEquals("", s.servers().get(0).lastError);
            java.util.concurrent.ExecutorService next = java.util.concurrent.Executors.newSingleThreadExecutor();
            Sync.Result r = s.sync().runAsync(next, 60_000, null, null).get(60, TimeUnit.SECONDS);
            next.shutdown();
            assertEquals(1, r.delivered);
            assertEquals(0, r.remaining);
            assertTrue(s.receipts().get(0).verified);
        }
    }

    @Test
    void badTextIsRefusedNeverCutShortOrReplaced() {
        try (Store s = newStore("s"); Report r = s.createReport("detention/1")) {
            r.setText("place", "kept");
            assertThrows(DalaException.InvalidArgument.class, () -> r.setText("place", "Oral\u0000 and the rest"));
            assertThrows(DalaException.InvalidArgument.class, () -> r.setNarrative("half a pair \uD800 of surrogates"));
            assertThrows(DalaException.InvalidArgument.class, () -> r.setText("k\u0000ey", "x"));
            assertThrows(DalaException.InvalidArgument.class,
                         () -> r.setPeople("detained", java.util.Arrays.asList(new Person("A\uDC00", "detained"))));
            assertEquals("kept", r.text("place"), "a refused value changes nothing");
            StringBuilder big = new StringBuilder();
            while (big.length() <= 64 * 1024) big.append("Жеделхат ");
            DalaException tooLong = assertThrows(DalaException.class, () -> r.setText("place", big.toString()));
            assertTrue(tooLong.status() == Status.TOO_LARGE || tooLong.status() == Status.INVALID_ARGUMENT,
                       "an oversized text: " + tooLong.status());
            assertEquals("kept", r.text("place"));
            s.save(r);
            try (Report back = s.report(r.id())) {
                assertEquals("kept", back.text("place"));
            }
            assertThrows(DalaException.InvalidArgument.class, () -> s.createReport("detention\u0000/1"));
            assertThrows(DalaException.InvalidArgument.class, () -> Store.open(tmp.toString() + "/s\u0000x", pass("p")));
        }
    }

    @Test
    void pagingPastTheEndGivesAnEmptyPage() {
        try (Store s = newStore("s")) {
            List<ReportId> ids = new ArrayList<>();
            for (int i = 0; i < 5; ++i) {
                try (Report r = s.createReport("detention/1")) {
                    s.save(r);
                    ids.add(r.id());
                }
            }
            ReportPage first = s.reports(new ListOptions().limit(2));
            assertEquals(2, first.reports.size());
            assertNotNull(first.next);
            // The rest goes while the app holds the cursor: the next page is empty and ends the listing.
            for (ReportId id : ids) s.deleteDraft(id);
            ReportPage past = s.reports(new ListOptions().limit(2).after(first.next));
            assertEquals(0, past.reports.size());
            assertNull(past.next);
        }
    }

    @Test
    void sealAllSealsEveryDraftOrNone() {
        try (Store s = newStore("s")) {
            List<ReportId> drafts = new ArrayList<>();
            for (int i = 0; i < 3; ++i) {
                try (Report r = s.createReport("detention/1")) {
                    r.setNarrative("draft " + i);
                    s.save(r);
                    drafts.add(r.id());
                }
            }
            // One id is no report: nothing is sealed.
            List<ReportId> withUnknown = new ArrayList<>(drafts);
            withUnknown.add(ReportId.parse("00112233445566778899aabbccddeeff"));
            assertThrows(DalaException.class, () -> s.sealAll(withUnknown));
            for (ReportId id : drafts) assertEquals(ReportState.DRAFT, stateOf(s, id));
            s.sealAll(drafts.subList(0, 2));
            assertEquals(ReportState.SEALED, stateOf(s, drafts.get(0)));
            assertEquals(ReportState.SEALED, stateOf(s, drafts.get(1)));
            assertEquals(ReportState.DRAFT, stateOf(s, drafts.get(2)));
            assertThrows(DalaException.InvalidArgument.class, () -> s.sealAll(null));
            assertThrows(DalaException.InvalidArgument.class, () -> s.sealAll(java.util.Arrays.asList((ReportId) null)));
        }
    }

    @Test
    void rekeyReportsProgressAndLeavesTheOldPassphraseNothing() throws Exception {
        String dir = tmp.resolve("s").toString();
        ReportId id;
        try (Store s = newStore("s")) {
            try (Report r = s.createReport("detention/1")) {
                r.setNarrative("kept across the re-key");
                try (AttachmentOutputStream out = s.attach(r.id(), "image/jpeg")) {
                    out.write(new byte[100_000]);
                }
                s.save(r);
                id = r.id();
            }
        }
        List<long[]> seen = new ArrayList<>();
        Store.rekey(dir, pass("correct horse"), pass("battery staple"), FAST,
                    (phase, done, total) -> seen.add(new long[] {phase, done, total}));
        assertEquals(Store.RekeyListener.DATABASE, seen.get(0)[0]);
        long[] last = seen.get(seen.size() - 1);
        assertEquals(Store.RekeyListener.ATTACHMENTS, last[0]);
        assertEquals(last[2], last[1], "the attachments' phase ends at its total");
        assertTrue(last[2] >= 100_000, "the draft's photo was encrypted again: " + last[2]);
        assertThrows(DalaException.WrongKey.class, () -> Store.open(dir, pass("correct horse"), FAST));
        try (Store s = Store.open(dir, pass("battery staple"), FAST); Report r = s.report(id)) {
            assertEquals("kept across the re-key", r.narrative());
            assertEquals(1, s.attachments(id).size());
        }
        // A listener that throws does not stop the re-key; its exception comes once the re-key is done.
        IllegalStateException thrown = assertThrows(IllegalStateException.class,
                () -> Store.rekey(dir, pass("battery staple"), pass("third"), FAST, (phase, done, total) -> {
                    throw new IllegalStateException("listener failed");
                }));
        assertEquals("listener failed", thrown.getMessage());
        try (Store s = Store.open(dir, pass("third"), FAST); Report r = s.report(id)) {
            assertEquals("kept across the re-key", r.narrative());
        }
        assertThrows(DalaException.WrongKey.class, () -> Store.rekey(dir, pass("wrong"), pass("x"), FAST, null));
    }

    @Test
    void aDuressPassphraseOpensAnEmptyStoreAndCanBeCleared() {
        String dir = tmp.resolve("s").toString();
        try (Store s = newStore("s")) {
            sealOne(s, "what a checkpoint must not find");
        }
        Store.setDuress(dir, pass("correct horse"), pass("let me go"), FAST);
        Store.clearDuress(dir, pass("correct horse"), FAST);
        assertThrows(DalaException.WrongKey.class, () -> Store.open(dir, pass("let me go"), FAST));
        assertThrows(DalaException.InvalidArgument.class,
                     () -> Store.setDuress(dir, pass("correct horse"), pass("correct horse"), FAST));
        Store.setDuress(dir, pass("correct horse"), pass("let me go"), FAST);
        try (Store s = Store.open(dir, pass("let me go"), FAST)) {
            assertEquals(0, s.reports().size(), "the duress passphrase opens an empty store");
        }
        assertThrows(DalaException.WrongKey.class, () -> Store.open(dir, pass("correct horse"), FAST));
    }

    @Test
    void aWipeDestroysThePlatformKeyFirstAndGoesOnWhenItCannot() {
        List<String> order = new ArrayList<>();
        String a = tmp.resolve("a").toString(), b = tmp.resolve("b").toString();
        newStore("a").close();
        Store.wipe(a, () -> {
            order.add("destroyed while the store was still there: " + new File(a).exists());
            return true;
        });
        assertEquals(java.util.Arrays.asList("destroyed while the store was still there: true"), order);
        assertFalse(new File(a).exists());
        newStore("b").close();
        assertThrows(DalaException.Io.class, () -> Store.wipe(b, () -> false));
        assertFalse(new File(b).exists(), "the wipe went on");
        newStore("b").close();
        assertThrows(DalaException.Io.class, () -> Store.wipe(b, () -> {
            throw new IllegalStateException("keystore unavailable");
        }));
        assertFalse(new File(b).exists(), "the wipe went on");
        assertThrows(DalaException.NotFound.class, () -> Store.wipe(b, () -> true));
    }

    static ReportId sealOne(Store s, String narrative) {
        try (Report r = s.createReport("detention/1")) {
            r.setNarrative(narrative);
            s.seal(r);
            return r.id();
        }
    }

    static ReportState stateOf(Store s, ReportId id) {
        for (ReportInfo info : s.reports()) if (info.id.equals(id)) return info.state;
        throw new AssertionError("no report " + id);
    }

    @Test
    void anOrganisationJoinedLaterGetsEarlierReportsOnlyWithIncludeExisting() throws Exception {
        try (Server srv = new Server(tmp, 2); Store later = newStore("phone"); Store all = newStore("phone2")) {
            ReportId before = sealOne(later, "sealed before joining");
            ReportId beforeAll = sealOne(all, "sealed before joining, shared");
            String destination = later.join(srv.invite);
            assertEquals(destination, all.join(srv.invite, true), "the destination is the organisation's");
            assertEquals(ReportState.SEALED, stateOf(later, before), "not queued for an organisation joined later");
            assertEquals(ReportState.QUEUED, stateOf(all, beforeAll), "queued: the user included it");
            ReportId after = sealOne(later, "sealed after joining");

            Sync.Result r = later.sync().runOnce(30_000, null);
            assertEquals(1, r.delivered, "only the report sealed after the join");
            assertEquals(0, r.remaining);
            assertEquals(1, later.receipts().size());
            assertEquals(after, later.receipts().get(0).id);
            assertEquals(ReportState.SEALED, stateOf(later, before));

            r = all.sync().runOnce(30_000, null);
            assertEquals(1, r.delivered);
            assertEquals(0, r.remaining);
            assertEquals(beforeAll, all.receipts().get(0).id);
            assertTrue(all.receipts().get(0).verified);
            assertEquals(ReportState.DELIVERED, stateOf(all, beforeAll));
        }
    }

    /** The app's own HTTP stack, as an Android app might write it (HttpURLConnection). */
    static final class UrlConnectionTransport implements Transport {
        final AtomicInteger posts = new AtomicInteger(), uploads = new AtomicInteger();
        volatile boolean offline;

        @Override
        public Response post(String url, byte[] body, long timeoutMs, byte[] tlsPin) throws IOException {
            posts.incrementAndGet();
            return send(url, "application/x-protobuf", null, body, timeoutMs);
        }

        @Override
        public Response upload(String url, String requestHeader, String filePath, long offset, long length,
                               long timeoutMs, byte[] tlsPin) throws IOException {
            uploads.incrementAndGet();
            byte[] body = new byte[(int) length];
            try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(filePath, "r")) {
                f.seek(offset);
                f.readFully(body);
            }
            return send(url, "application/octet-stream", requestHeader, body, timeoutMs);
        }

        Response send(String url, String type, String dalaHeader, byte[] body, long timeoutMs) throws IOException {
            if (offline) throw new IOException("no network");
            java.net.HttpURLConnection c = (java.net.HttpURLConnection) new java.net.URL(url).openConnection();
            c.setRequestMethod("POST");
            c.setDoOutput(true);
            c.setConnectTimeout((int) Math.min(timeoutMs, 30_000));
            c.setReadTimeout((int) Math.min(timeoutMs, 30_000));
            c.setRequestProperty("Content-Type", type);
            if (dalaHeader != null) c.setRequestProperty("Authorization", dalaHeader);
            c.setFixedLengthStreamingMode(body.length);
            try (java.io.OutputStream out = c.getOutputStream()) {
                out.write(body);
            }
            int status = c.getResponseCode();
            InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
            return new Response(status, in == null ? new byte[0] : readAll(in));
        }
    }

    @Test
    void appTransportCarriesReportsAndAttachments() throws Exception {
        try (Server srv = new Server(tmp); Store s = newStore("phone")) {
            s.join(srv.invite);
            try (Report r = s.createReport("detention/1")) {
                try (AttachmentOutputStream out = s.attach(r.id(), "video/mp4")) {
                    out.write(new byte[1_500_000]);
                }
                s.seal(r);
            }
            UrlConnectionTransport net = new UrlConnectionTransport();
            net.offline = true;
            Sync.Result r = s.sync().runOnce(20_000, null, net);
            assertTrue(r.unreachable);
            assertEquals(1, r.remaining);
            net.offline = false;
            s.notifyOnline();
            r = s.sync().runOnce(20_000, null, net);
            assertEquals(1, r.delivered);
            assertEquals(0, r.remaining);
            assertTrue(net.uploads.get() >= 1, "the attachment went through the app's upload");
            assertTrue(s.receipts().get(0).verified);
        }
    }

    @Test
    void backgroundSessionDeliversAndStopsWithTheStore() throws Exception {
        try (Server srv = new Server(tmp)) {
            Store s = newStore("phone");
            s.join(srv.invite);
            for (int i = 0; i < 3; ++i) {
                try (Report r = s.createReport("detention/1")) {
                    s.seal(r);
                }
            }
            AtomicInteger calls = new AtomicInteger();
            SyncSession session = s.sync().startSession(10_000, p -> {
                calls.incrementAndGet();
                throw new IllegalStateException("dropped: the session goes on");
            }, null);
            session.notifyOnline();
            Sync.Result last = null;
            for (int i = 0; i < 200 && (last == null || last.remaining != 0); ++i) {
                Thread.sleep(25);
                last = session.lastResult();
            }
            assertNotNull(last);
            assertEquals(0, last.remaining);
            assertTrue(calls.get() > 0, "the listener ran on the session's thread");
            assertEquals(3, s.receipts().size());
            session.cancel();
            s.close();  // stops the session first
            assertThrows(IllegalStateException.class, session::notifyOnline);
            session.close();  // already stopped: harmless
        }
    }
}
