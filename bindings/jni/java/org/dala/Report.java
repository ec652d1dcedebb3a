package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One version of a report, in memory: a draft (editable; saved by {@link Store#save} or sealed by
 * {@link Store#seal}) or a sealed version (read-only, verified when read). Not meant to be shared between
 * threads without synchronisation; methods are synchronized so that sharing it is at least safe.
 */
public final class Report extends NativeHandle {
    Report(long handle) {
        super(handle, Native.REPORT, "Report");
    }

    public synchronized @NotNull ReportId id() {
        return new ReportId(with(Native::reportId));
    }

    public synchronized int version() {
        return with(Native::reportVersion);
    }

    public synchronized @NotNull ReportState state() {
        return ReportState.of(with(Native::reportState));
    }

    public synchronized @NotNull String form() {
        return Native.string(with(Native::reportForm));
    }

    public synchronized @NotNull String narrative() {
        return Native.string(with(Native::reportNarrative));
    }

    public synchronized @NotNull Report setNarrative(@NotNull String text) {
        run(h -> Native.reportSetNarrative(h, Native.bytes(text)));
        return this;
    }

    public synchronized @NotNull Report setText(@NotNull String key, @NotNull String value) {
        run(h -> Native.reportSetText(h, Native.bytes(key), Native.bytes(value)));
        return this;
    }

    public synchronized @NotNull Report setInteger(@NotNull String key, long value) {
        run(h -> Native.reportSetInteger(h, Native.bytes(key), value));
        return this;
    }

    public synchronized @NotNull Report setBoolean(@NotNull String key, boolean value) {
        run(h -> Native.reportSetBoolean(h, Native.bytes(key), value));
        return this;
    }

    public synchronized @NotNull Report setTimestamp(@NotNull String key, long unixMs) {
        run(h -> Native.reportSetTimestamp(h, Native.bytes(key), unixMs));
        return this;
    }

    /** A decimal as text, e.g. "-12.50" (no binary floating point). */
    public synchronized @NotNull Report setDecimal(@NotNull String key, @NotNull String value) {
        run(h -> Native.reportSetDecimal(h, Native.bytes(key), Native.bytes(value)));
        return this;
    }

    public synchronized @NotNull Report removeField(@NotNull String key) {
        run(h -> Native.reportRemoveField(h, Native.bytes(key)));
        return this;
    }

    public synchronized @NotNull Report setPriority(int priority) {
        run(h -> Native.reportSetPriority(h, priority));
        return this;
    }

    /** A text field's value, or null when the report has no such field. */
    public synchronized @Nullable String text(@NotNull String key) {
        return Native.string(with(h -> Native.reportGetText(h, Native.bytes(key))));
    }

    public synchronized long integer(@NotNull String key) {
        return with(h -> Native.reportGetInteger(h, Native.bytes(key)));
    }

    /** A decimal field's value as text ("-12.50"), or null when the report has no such field. */
    public synchronized @Nullable String decimal(@NotNull String key) {
        return Native.string(with(h -> Native.reportGetDecimal(h, Native.bytes(key))));
    }

    /** A boolean field's value; {@link DalaException} NOT_FOUND when absent, STATE when of another type. */
    public synchronized boolean bool(@NotNull String key) {
        return with(h -> Native.reportGetBoolean(h, Native.bytes(key)));
    }

    /** A timestamp field's value (Unix ms); {@link DalaException} NOT_FOUND when absent. */
    public synchronized long timestamp(@NotNull String key) {
        return with(h -> Native.reportGetTimestamp(h, Native.bytes(key)));
    }

    /** A geo field's value, or null when the report has no such field. */
    public synchronized @Nullable GeoPoint geo(@NotNull String key) {
        double[] g = with(h -> Native.reportGetGeo(h, Native.bytes(key)));
        return g == null ? null : new GeoPoint(g[0], g[1], g[2]);
    }

    /** A people field's value, or null when the report has no such field. */
    public synchronized @Nullable List<Person> people(@NotNull String key) {
        byte[][] p = with(h -> Native.reportGetPeople(h, Native.bytes(key)));
        if (p == null) return null;
        List<Person> out = new ArrayList<>();
        for (int i = 0; i + 1 < p.length; i += 2) out.add(new Person(Native.string(p[i]), Native.string(p[i + 1])));
        return Collections.unmodifiableList(out);
    }

    public synchronized @NotNull Report setGeo(@NotNull String key, @NotNull GeoPoint value) {
        run(h -> Native.reportSetGeo(h, Native.bytes(key), value.latitude, value.longitude, value.accuracyM));
        return this;
    }

    public synchronized @NotNull Report setPeople(@NotNull String key, @NotNull List<Person> people) {
        byte[][] names = new byte[people.size()][], roles = new byte[people.size()][];
        for (int i = 0; i < people.size(); ++i) {
            names[i] = Native.bytes(people.get(i).name);
            roles[i] = Native.bytes(people.get(i).role);
        }
        run(h -> Native.reportSetPeople(h, Native.bytes(key), names, roles));
        return this;
    }

    /** Where the report was made (capture metadata); null clears it. */
    public synchronized @NotNull Report setLocation(@Nullable GeoPoint location) {
        run(h -> Native.reportSetLocation(h, location == null, location == null ? 0 : location.latitude,
                                          location == null ? 0 : location.longitude,
                                          location == null ? 0 : location.accuracyM));
        return this;
    }

    /** When version 1 was created (Unix ms). */
    public synchronized long createdMs() {
        return with(Native::reportCreatedMs);
    }

    /** Whether the content was deleted after delivery (only id, form, state and hashes remain). */
    public synchronized boolean isPurged() {
        return with(Native::reportIsPurged);
    }

    /** The fields' keys and types, in key order. */
    public synchronized @NotNull Map<String, FieldType> fieldTypes() {
        byte[][] keys = with(Native::reportFieldKeys);
        int[] types = with(Native::reportFieldTypes);
        Map<String, FieldType> out = new LinkedHashMap<>();
        for (int i = 0; i < keys.length && i < types.length; ++i) out.put(Native.string(keys[i]), FieldType.of(types[i]));
        return Collections.unmodifiableMap(out);
    }

    /** A sealed version's signature facts; {@link DalaException} STATE for a draft. */
    public synchronized @NotNull SealInfo sealInfo() {
        return new SealInfo(with(Native::reportSealInfo));
    }

    /** The whole report as JSON (docs/c-api.md), attachments listed without keys. */
    public synchronized @NotNull String toJson() {
        return Native.string(with(Native::reportJson));
    }
}
