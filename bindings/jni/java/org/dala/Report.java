package org.dala;

/**
 * One version of a report, in memory: a draft (editable; saved by {@link Store#save} or sealed by
 * {@link Store#seal}) or a sealed version (read-only, verified when read). Not meant to be shared between
 * threads without synchronisation; methods are synchronized so that sharing it is at least safe.
 */
public final class Report extends NativeHandle {
    Report(long handle) {
        super(handle, Native.REPORT, "Report");
    }

    public synchronized ReportId id() {
        return new ReportId(with(Native::reportId));
    }

    public synchronized int version() {
        return with(Native::reportVersion);
    }

    public synchronized ReportState state() {
        return ReportState.of(with(Native::reportState));
    }

    public synchronized String form() {
        return Native.string(with(Native::reportForm));
    }

    public synchronized String narrative() {
        return Native.string(with(Native::reportNarrative));
    }

    public synchronized Report setNarrative(String text) {
        run(h -> Native.reportSetNarrative(h, Native.bytes(text)));
        return this;
    }

    public synchronized Report setText(String key, String value) {
        run(h -> Native.reportSetText(h, Native.bytes(key), Native.bytes(value)));
        return this;
    }

    public synchronized Report setInteger(String key, long value) {
        run(h -> Native.reportSetInteger(h, Native.bytes(key), value));
        return this;
    }

    public synchronized Report setBoolean(String key, boolean value) {
        run(h -> Native.reportSetBoolean(h, Native.bytes(key), value));
        return this;
    }

    public synchronized Report setTimestamp(String key, long unixMs) {
        run(h -> Native.reportSetTimestamp(h, Native.bytes(key), unixMs));
        return this;
    }

    /** A decimal as text, e.g. "-12.50" (no binary floating point). */
    public synchronized Report setDecimal(String key, String value) {
        run(h -> Native.reportSetDecimal(h, Native.bytes(key), Native.bytes(value)));
        return this;
    }

    public synchronized Report removeField(String key) {
        run(h -> Native.reportRemoveField(h, Native.bytes(key)));
        return this;
    }

    public synchronized Report setPriority(int priority) {
        run(h -> Native.reportSetPriority(h, priority));
        return this;
    }

    /** A text field's value, or null when the report has no such field. */
    public synchronized String text(String key) {
        return Native.string(with(h -> Native.reportGetText(h, Native.bytes(key))));
    }

    public synchronized long integer(String key) {
        return with(h -> Native.reportGetInteger(h, Native.bytes(key)));
    }

    /** The whole report as JSON (docs/c-api.md), attachments listed without keys. */
    public synchronized String toJson() {
        return Native.string(with(Native::reportJson));
    }
}
