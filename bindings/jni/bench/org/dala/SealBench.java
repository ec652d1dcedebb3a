package org.dala;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Overhead of the Java binding (issue 5): one durable seal (create a draft, set a field and a 1 KB
 * narrative, seal, free) through org.dala, beside the same C calls made from native code in the same
 * process and store (seal_bench_jni.cc), alternating rounds. Prints each figure beside the limit.
 */
public final class SealBench {
    static native double[] sealInC(long store, int n, byte[] narrative);

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
        System.exit(ok ? 0 : 1);
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
