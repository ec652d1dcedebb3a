package org.dala;

final class Hex {
    private Hex() {}

    static String encode(byte[] b) {
        StringBuilder s = new StringBuilder(b.length * 2);
        for (byte x : b) s.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
        return s.toString();
    }

    static byte[] decode(String hex, int length, String error) {
        if (hex == null || hex.length() != 2 * length) throw new DalaException.InvalidArgument(error);
        byte[] out = new byte[length];
        for (int i = 0; i < length; ++i) {
            int hi = Character.digit(hex.charAt(2 * i), 16), lo = Character.digit(hex.charAt(2 * i + 1), 16);
            if (hi < 0 || lo < 0) throw new DalaException.InvalidArgument(error);
            out[i] = (byte) (hi << 4 | lo);
        }
        return out;
    }
}
