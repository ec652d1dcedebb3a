package org.dala;

/** A report's id: 16 bytes, shown as 32 lowercase hex characters. */
public final class ReportId extends Id16 {
    ReportId(byte[] bytes) {
        super(bytes, "a report id");
    }

    public static ReportId parse(String hex) {
        return new ReportId(Hex.decode(hex, 16, "a report id is 32 hexadecimal characters"));
    }
}
