package org.dala;

import java.util.Arrays;

/** A report's id: 16 bytes, shown as 32 lowercase hex characters. */
public final class ReportId {
    private final byte[] bytes;

    ReportId(byte[] bytes) {
        if (bytes == null || bytes.length != 16) throw new DalaException.InvalidArgument("a report id is 16 bytes");
        this.bytes = bytes.clone();
    }

    public static ReportId parse(String hex) {
        return new ReportId(Hex.decode(hex, 16, "a report id is 32 hexadecimal characters"));
    }

    byte[] bytes() {
        return bytes.clone();
    }

    @Override
    public String toString() {
        return Hex.encode(bytes);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ReportId && Arrays.equals(bytes, ((ReportId) o).bytes);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(bytes);
    }
}
