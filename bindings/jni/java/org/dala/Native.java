package org.dala;

import java.nio.charset.StandardCharsets;

/**
 * The JNI entry points (bindings/jni/dala_jni.cc), one per C function they wrap. Strings cross as UTF-8
 * byte arrays (never JNI's "modified UTF-8", which mangles emoji); handles cross as longs.
 */
final class Native {
    static {
        System.loadLibrary("dala_jni");
    }

    private Native() {}

    /**
     * Text as the library takes it: UTF-8, no NUL. Refused ({@link DalaException.InvalidArgument}) rather than
     * altered: an unpaired surrogate would become '?' through getBytes, and C strings end at a NUL, so the
     * rest would be lost.
     */
    static byte[] bytes(String s) {
        if (s == null) return null;
        if (s.indexOf('\0') >= 0) {
            throw new DalaException.InvalidArgument("text holds a NUL character, which the library cannot store");
        }
        try {
            java.nio.ByteBuffer b = StandardCharsets.UTF_8.newEncoder()
                    .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT)
                    .encode(java.nio.CharBuffer.wrap(s));
            byte[] out = new byte[b.remaining()];
            b.get(out);
            return out;
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new DalaException.InvalidArgument("text is not valid Unicode (an unpaired surrogate)");
        }
    }

    static String string(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    // Handle kinds for free().
    static final int STORE = 1, REPORT = 2, WRITER = 3, READER = 4, SESSION = 5;

    static native void free(int kind, long handle);
    static native int[] statusCodes();   // every code the C header defines, for the mapping check
    static native String statusName(int code);

    // Stores. credKind: 1 passphrase, 2 raw key. The credential array is wiped by the glue after use.
    static native long storeCreate(byte[] dir, int credKind, byte[] cred, long opsLimit, long memLimit,
                                   boolean deleteAfterDelivery);
    static native long storeOpen(byte[] dir, int credKind, byte[] cred, long opsLimit, long memLimit);
    static native void storeWipe(byte[] dir);
    static native void storeChangeCredential(byte[] dir, int oldKind, byte[] oldCred, int newKind, byte[] newCred,
                                             long opsLimit, long memLimit);
    static native byte[] storeDeviceKey(long store);
    static native void storeNotifyOnline(long store);
    static native void storeCheck(long store);
    static native void storeSetDeleteAfterDelivery(long store, boolean enabled);
    static native long[] outboxStats(long store, byte[] destination);   // pending, in flight, delivered, rejected, next
    static native byte[] version();
    static native int versionNumber();
    static native void storeRetryNow(long store);
    static native void storeRekey(byte[] dir, int oldKind, byte[] oldCred, int newKind, byte[] newCred, long opsLimit,
                                  long memLimit, Store.RekeyListener listener);
    static native void storeSetDuress(byte[] dir, int kind, byte[] cred, byte[] duress, long opsLimit, long memLimit);
    static native void storeClearDuress(byte[] dir, int kind, byte[] cred, long opsLimit, long memLimit);
    static native void storeWipeWithOptions(byte[] dir, Store.KeyDestroyer destroyer);
    static native void storeSealReports(long store, byte[][] ids);
    static native Server[] servers(long store);

    // Reports.
    static native long reportCreate(long store, byte[] form);
    static native long reportGet(long store, byte[] id, int version);   // version 0: the latest
    static native long reportEdit(long store, byte[] id);
    static native void reportDeleteDraft(long store, byte[] id);
    static native void reportRetry(long store, byte[] id);
    static native void reportSave(long store, long report);
    static native void reportSeal(long store, long report);
    static native void reportSetText(long report, byte[] key, byte[] value);
    static native void reportSetInteger(long report, byte[] key, long value);
    static native void reportSetBoolean(long report, byte[] key, boolean value);
    static native void reportSetTimestamp(long report, byte[] key, long unixMs);
    static native void reportSetDecimal(long report, byte[] key, byte[] value);
    static native void reportRemoveField(long report, byte[] key);
    static native void reportSetNarrative(long report, byte[] text);
    static native void reportSetPriority(long report, int priority);
    static native byte[] reportId(long report);
    static native int reportVersion(long report);
    static native int reportState(long report);
    static native byte[] reportForm(long report);
    static native byte[] reportNarrative(long report);
    static native byte[] reportGetText(long report, byte[] key);        // null when absent
    static native byte[] reportGetDecimal(long report, byte[] key);     // null when absent
    static native boolean reportGetBoolean(long report, byte[] key);
    static native long reportGetTimestamp(long report, byte[] key);
    static native double[] reportGetGeo(long report, byte[] key);       // null when absent
    static native byte[][] reportGetPeople(long report, byte[] key);    // name, role, name, role...; null when absent
    static native void reportSetGeo(long report, byte[] key, double latitude, double longitude, double accuracyM);
    static native void reportSetLocation(long report, boolean clear, double latitude, double longitude, double accuracyM);
    static native void reportSetPeople(long report, byte[] key, byte[][] names, byte[][] roles);
    static native long reportCreatedMs(long report);
    static native boolean reportIsPurged(long report);
    static native byte[][] reportFieldKeys(long report);
    static native int[] reportFieldTypes(long report);
    static native byte[] reportSealInfo(long report);                   // device key, content hash, previous hash
    static native long reportGetInteger(long report, byte[] key);
    static native byte[] reportJson(long report);
    static native ReportInfo[] listReports(long store);
    // {ReportInfo[] reports, byte[] next (null: the last page)}
    static native Object[] listReportsPage(long store, int limit, byte[] after, int states, byte[] form);

    // Attachments.
    static native long writerOpen(long store, byte[] reportId, byte[] mime);
    static native void writerWrite(long writer, byte[] data, int offset, int length);
    static native byte[] writerFinish(long writer);
    static native byte[] attachmentImport(long store, byte[] reportId, byte[] path, byte[] mime);
    static native long readerOpen(long store, byte[] attachmentId);
    static native int readerRead(long reader, byte[] buffer, int offset, int length);   // -1 at the verified end
    static native void attachmentRemove(long store, byte[] attachmentId);
    static native AttachmentInfo[] listAttachments(long store, byte[] reportId);

    // Delivery.
    static native byte[] join(long store, byte[] invite, boolean includeExisting);
    static native long[] syncRunOnce(long store, long timeoutMs, Sync.ProgressListener listener, Transport transport,
                                     byte[] proxyUrl, long cancel);
    // A run_once's stop token (dala_sync_cancel_*): created per run, triggered from any thread, freed after it.
    static native long cancelCreate();
    static native void cancelTrigger(long cancel);
    static native void cancelFree(long cancel);
    static native long sessionStart(long store, long timeoutMs, Sync.ProgressListener listener, Transport transport,
                                    byte[] proxyUrl);
    static native void sessionNotifyOnline(long session);
    static native void sessionCancel(long session);
    static native long[] sessionLastResult(long session);   // null before the first run ended
    static native Receipt[] receipts(long store);
}
