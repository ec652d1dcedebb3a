package org.dala;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Overhead of the Java binding (issues 5 and 17): one durable seal (create a draft, set a field and a 1 KB
 * narrative, seal, free) through org.dala, beside the same C calls made from native code in the same
 * process and store (seal_bench_jni.cc), alternating rounds; and, given the directory of dala and
 * dala-server (second argument), a sync of 100 queued reports to a dala-server on 127.0.0.1 through
 * Sync.runAsync (a Future on an executor, a progress listener), beside dala_sync_run_once called from
 * native code for a second store of the same process, taking turns. Prints each figure beside the limit.
 *   SealBench [SEALS] [BIN_DIR]
 */
public final class SealBench {
    static native double[] sealInC(long store, int n, byte[] narrative);
    static native long syncInC(long store, long timeoutMs);  // delivered, or -1

    public static void main(String[] args) throws Exception {
        System.loadLibrary("dala_seal_bench_jni");
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 400;
        Path dir = Files.createTempDirectory("dala-java-bench");
        byte[] key = new byte[32];
        Arrays.fill(key, (byte) 7);
        StringBuilder sb = new StringBuilder();
        while (sb.length() < 1000) sb.append("detained during a peaceful run in Oral; no grounds given. ");
        String narrative = sb.substring(0, 1000);
        byte[] narrativeBytes = narrative.getBytes(StandardCharsets.UTF_8);
        double[] java = new double[0], c = new double[0];
        try (Store s = Store.createWithKey(dir.resolve("s").toString(), key, null)) {
            for (int round = 0; round < 4; ++round) {
                double[] tj = new double[n];
                for (int i = 0; i < n; ++i) {
                    long t0 = System.nanoTime();
                    try (Report r = s.createReport("detention/1")) {
                        r.setText("place", "Oral").setNarrative(narrative);
                        s.seal(r);
                    }
                    tj[i] = (System.nanoTime() - t0) / 1e6;
                }
                double[] tc = s.with(h -> sealInC(h, n, narrativeBytes));
                if (round > 0) {  // round 0 warms up the JIT and the database
                    java = concat(java, tj);
                    c = concat(c, tc);
                }
            }
        }
        double pj = median(java), pc = median(c), ratio = pj / pc;
        System.out.printf("Java binding overhead: %d seals per path per round, 3 rounds after a warm-up, medians%n", n);
        System.out.printf("  seal through Java %.3f ms, through the C API %.3f ms%n", pj, pc);
        boolean ok = ratio <= 1.2;
        System.out.printf("%-44s %12.3f x    <= %12.3f x     %-4s  (issue 5 target)%n", "seal via Java / via C", ratio, 1.2,
                          ok ? "ok" : "MISS");
        if (args.length > 1) ok &= syncOverhead(Paths.get(args[1]), dir, narrative);
        System.exit(ok ? 0 : 1);
    }

    // The sync: two stores joined to one dala-server, the same reports queued in each before each round, one
    // synced through Sync.runAsync and the other through the C API from native code, in alternating order.
    static boolean syncOverhead(Path bin, Path dir, String narrative) throws Exception {
        final int perRound = 100, rounds = 9;  // the first round warms up
        int port;
        try (ServerSocket free = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = free.getLocalPort();
        }
        String work = dir.toString();
        String setup = "export DALA_PASSPHRASE=bench; org=$('" + bin + "/dala' desk keygen --out '" + work
                + "/org.key' --kdf-ops 1 --kdf-mem-mib 8 2>/dev/null) && key=$('" + bin + "/dala-server' init --data '"
                + work + "/srv' --organisation \"$org\" 2>/dev/null | tail -1) && '" + bin + "/dala' desk invite --key '"
                + work + "/org.key' --server-key \"$key\" --url http://127.0.0.1:" + port + " --uses 2";
        File nowhere = new File("/dev/null");
        Process p = new ProcessBuilder("sh", "-c", setup).redirectError(ProcessBuilder.Redirect.to(nowhere)).start();
        String invite = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))
                .readLine();
        if (p.waitFor() != 0 || invite == null || invite.trim().isEmpty())
            throw new IllegalStateException("no invite from " + bin);
        invite = invite.trim();
        Process server = new ProcessBuilder(bin + "/dala-server", "run", "--data", work + "/srv", "--listen",
                "127.0.0.1:" + port, "--quiet").redirectError(ProcessBuilder.Redirect.to(nowhere)).start();
        ExecutorService executor = Executors.newSingleThreadExecutor();
        try {
            new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8))
                    .readLine();  // "listening on ..."
            double[] viaJava = new double[0], viaC = new double[0];
            byte[] kj = new byte[32], kc = new byte[32];  // each is wiped once its store is made
            Arrays.fill(kj, (byte) 8);
            Arrays.fill(kc, (byte) 9);
            try (Store sj = Store.createWithKey(dir.resolve("sync-java").toString(), kj, null);
                 Store sc = Store.createWithKey(dir.resolve("sync-c").toString(), kc, null)) {
                sj.join(invite);
                sc.join(invite);
                long[] progress = new long[1];
                for (int round = 0; round < rounds; ++round) {
                    for (Store s : new Store[] {sj, sc}) {
                        for (int i = 0; i < perRound; ++i) {
                            try (Report r = s.createReport("detention/1")) {
                                r.setText("place", "Oral").setNarrative(narrative);
                                s.seal(r);
                            }
                        }
                    }
                    double tj = 0, tc = 0;
                    for (int turn = 0; turn < 2; ++turn) {
                        if ((turn == 0) == (round % 2 == 0)) {
                            long t0 = System.nanoTime();
                            Sync.Result r = sj.sync().runAsync(executor, 60_000, pr -> progress[0] = pr.delivered, null).get();
                            tj = (System.nanoTime() - t0) / 1e6;
                            if (r.delivered != perRound || r.remaining != 0)
                                throw new IllegalStateException("Java sync delivered " + r.delivered);
                        } else {
                            long t0 = System.nanoTime();
                            long delivered = sc.with(h -> syncInC(h, 60_000));
                            tc = (System.nanoTime() - t0) / 1e6;
                            if (delivered != perRound) throw new IllegalStateException("C sync delivered " + delivered);
                        }
                    }
                    if (round > 0) {
                        viaJava = concat(viaJava, new double[] {tj});
                        viaC = concat(viaC, new double[] {tc});
                    }
                }
            }
            double pj = median(viaJava), pc = median(viaC), ratio = pj / pc;
            System.out.printf("  sync of %d queued reports to dala-server on loopback, %d rounds after a warm-up, medians:%n",
                              perRound, rounds - 1);
            System.out.printf("  through Sync.runAsync (Future, listener) %.2f ms, through the C API %.2f ms%n", pj, pc);
            boolean ok = ratio <= 1.2;
            System.out.printf("%-44s %12.3f x    <= %12.3f x     %-4s  (issue 17 target)%n", "async sync via Java / via C",
                              ratio, 1.2, ok ? "ok" : "MISS");
            return ok;
        } finally {
            executor.shutdownNow();
            server.destroy();
            server.waitFor();
        }
    }

    static double[] concat(double[] a, double[] b) {
        double[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }
}
