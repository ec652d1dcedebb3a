package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.io.InputStream;
import java.util.Arrays;
import java.util.List;

/**
 * One encrypted report store in one directory. Thread-safe: one Store may be used from many threads.
 * Close it (try-with-resources); calls after close throw IllegalStateException, a second close does
 * nothing. Passphrases and keys are passed as byte arrays and wiped (zeroed) once used.
 */
public final class Store extends NativeHandle {
    private static final int PASSPHRASE = 1, RAW_KEY = 2;

    /** Options for {@link #create}. The defaults are the library's (Argon2id 3 passes, 64 MiB). */
    public static final class Options {
        long opsLimit = 3;
        long memLimit = 64L << 20;
        boolean deleteAfterDelivery;

        public @NotNull Options kdf(long opsLimit, long memLimitBytes) {
            this.opsLimit = opsLimit;
            this.memLimit = memLimitBytes;
            return this;
        }

        public @NotNull Options deleteAfterDelivery(boolean on) {
            this.deleteAfterDelivery = on;
            return this;
        }
    }

    private final java.util.Set<SyncSession> sessions =
            java.util.Collections.synchronizedSet(new java.util.HashSet<SyncSession>());

    private Store(long handle) {
        super(handle, Native.STORE, "Store");
    }

    void remember(SyncSession s) {
        sessions.add(s);
    }

    void forget(SyncSession s) {
        sessions.remove(s);
    }

    /** Stops this store's sync sessions, then closes it (idempotent). */
    @Override
    public void close() {
        SyncSession[] live;
        synchronized (sessions) {
            live = sessions.toArray(new SyncSession[0]);
        }
        for (SyncSession s : live) s.close();
        super.close();
    }

    /** Creates a store protected by a passphrase (UTF-8 bytes; wiped after use). */
    public static @NotNull Store create(@NotNull String dir, @NotNull byte[] passphrase, @Nullable Options options) {
        Options o = options == null ? new Options() : options;
        try {
            return new Store(Native.storeCreate(Native.bytes(dir), PASSPHRASE, passphrase, o.opsLimit, o.memLimit,
                                                o.deleteAfterDelivery));
        } finally {
            wipe(passphrase);
        }
    }

    /** Creates a store protected by a 32-byte key from the platform keystore (wiped after use). */
    public static @NotNull Store createWithKey(@NotNull String dir, @NotNull byte[] key, @Nullable Options options) {
        Options o = options == null ? new Options() : options;
        try {
            return new Store(Native.storeCreate(Native.bytes(dir), RAW_KEY, key, o.opsLimit, o.memLimit,
                                                o.deleteAfterDelivery));
        } finally {
            wipe(key);
        }
    }

    /** Opens a store made with the default options. A wrong passphrase throws {@link DalaException.WrongKey}. */
    public static @NotNull Store open(@NotNull String dir, @NotNull byte[] passphrase) {
        return open(dir, passphrase, null);
    }

    /**
     * Opens a store. The options must give the Argon2id cost the store was made with: the key file does
     * not record it, and another cost reads as a wrong passphrase ({@link DalaException.WrongKey}).
     */
    public static @NotNull Store open(@NotNull String dir, @NotNull byte[] passphrase, @Nullable Options options) {
        Options o = options == null ? new Options() : options;
        try {
            return new Store(Native.storeOpen(Native.bytes(dir), PASSPHRASE, passphrase, o.opsLimit, o.memLimit));
        } finally {
            wipe(passphrase);
        }
    }

    public static @NotNull Store openWithKey(@NotNull String dir, @NotNull byte[] key) {
        Options o = new Options();
        try {
            return new Store(Native.storeOpen(Native.bytes(dir), RAW_KEY, key, o.opsLimit, o.memLimit));
        } finally {
            wipe(key);
        }
    }

    /** Panic wipe: destroys the key first; needs no passphrase. The store must not be open. */
    public static void wipe(@NotNull String dir) {
        Native.storeWipe(Native.bytes(dir));
    }

    /** Re-wraps the key under a new passphrase; the database is not rewritten. Both arrays are wiped. */
    public static void changePassphrase(@NotNull String dir, @NotNull byte[] oldPassphrase,
                                        @NotNull byte[] newPassphrase, @Nullable Options options) {
        Options o = options == null ? new Options() : options;
        try {
            Native.storeChangeCredential(Native.bytes(dir), PASSPHRASE, oldPassphrase, PASSPHRASE, newPassphrase,
                                         o.opsLimit, o.memLimit);
        } finally {
            wipe(oldPassphrase);
            wipe(newPassphrase);
        }
    }

    /** What {@link #rekey} reports as it goes, on the calling thread. */
    public interface RekeyListener {
        /** The database, 0 of 1 when its copy under the new key starts and 1 of 1 when it is done. */
        int DATABASE = 1;
        /** The drafts' attachments: {@code done} of {@code total} bytes encrypted again. */
        int ATTACHMENTS = 2;

        void onProgress(int phase, long done, long total);
    }

    /**
     * Re-keys the store (no Store may be open on it): the database and the drafts' attachments are encrypted
     * again under new keys, and the key file then wraps the new key under the new passphrase. Killed at any
     * point, the store opens with one passphrase or the other and loses nothing; call it again to finish.
     * Afterwards an old key file (a copy a searcher kept) with the old passphrase opens nothing. Takes about
     * as long as copying the store two or three times: {@link #changePassphrase} is instant. An exception
     * thrown by the listener does not stop the re-key; it is thrown once the re-key has ended. Both arrays
     * are wiped.
     */
    public static void rekey(@NotNull String dir, @NotNull byte[] oldPassphrase, @NotNull byte[] newPassphrase,
                             @Nullable Options options, @Nullable RekeyListener listener) {
        Options o = options == null ? new Options() : options;
        try {
            Native.storeRekey(Native.bytes(dir), PASSPHRASE, oldPassphrase, PASSPHRASE, newPassphrase, o.opsLimit,
                              o.memLimit, listener);
        } finally {
            wipe(oldPassphrase);
            wipe(newPassphrase);
        }
    }

    /**
     * Sets (or replaces) a duress passphrase (no Store may be open on it): opening the store with it destroys
     * the store's key and data and opens a new, empty store, taking the same time as any open. Read
     * docs/duress.md before offering it. Both arrays are wiped.
     */
    public static void setDuress(@NotNull String dir, @NotNull byte[] passphrase, @NotNull byte[] duressPassphrase,
                                 @Nullable Options options) {
        Options o = options == null ? new Options() : options;
        try {
            Native.storeSetDuress(Native.bytes(dir), PASSPHRASE, passphrase, duressPassphrase, o.opsLimit, o.memLimit);
        } finally {
            wipe(passphrase);
            wipe(duressPassphrase);
        }
    }

    /** Removes the duress passphrase, if any (no Store may be open on it). The array is wiped. */
    public static void clearDuress(@NotNull String dir, @NotNull byte[] passphrase, @Nullable Options options) {
        Options o = options == null ? new Options() : options;
        try {
            Native.storeClearDuress(Native.bytes(dir), PASSPHRASE, passphrase, o.opsLimit, o.memLimit);
        } finally {
            wipe(passphrase);
        }
    }

    /** Destroys the platform key of a store ({@code KeyStore.deleteEntry}): true when it is gone. */
    public interface KeyDestroyer {
        boolean destroy();
    }

    /**
     * Panic wipe that first destroys the store's platform key through {@code destroyer}, then does what
     * {@link #wipe(String)} does. Everything is attempted even if a step fails; then the first failure is
     * thrown ({@link DalaException.Io} if the key could not be destroyed, or the destroyer threw).
     */
    public static void wipe(@NotNull String dir, @Nullable KeyDestroyer destroyer) {
        Native.storeWipeWithOptions(Native.bytes(dir), destroyer);
    }

    /** The servers this store delivers to, with their organisation and how the last contact went. */
    public @NotNull List<Server> servers() {
        return Arrays.asList(with(Native::servers));
    }

    /** Seals the drafts of these reports in one transaction: all of them, or none. */
    public void sealAll(@NotNull List<ReportId> ids) {
        byte[][] raw = null;
        if (ids != null) {
            raw = new byte[ids.size()][];
            for (int i = 0; i < raw.length; ++i) raw[i] = idBytes(ids.get(i));
        }
        final byte[][] all = raw;
        run(h -> Native.storeSealReports(h, all));
    }

    /** This device's Ed25519 public key (32 bytes). */
    public @NotNull byte[] deviceKey() {
        return with(Native::storeDeviceKey);
    }

    /** Creates and saves a new draft; form is "name/version", e.g. "detention/1". */
    public @NotNull Report createReport(@NotNull String form) {
        return new Report(with(h -> Native.reportCreate(h, Native.bytes(form))));
    }

    /** The latest version of a report (sealed versions are verified on read). */
    public @NotNull Report report(@NotNull ReportId id) {
        return new Report(with(h -> Native.reportGet(h, idBytes(id), 0)));
    }

    public @NotNull Report report(@NotNull ReportId id, int version) {
        if (version < 1) throw new DalaException.InvalidArgument("a version is 1 or more");
        return new Report(with(h -> Native.reportGet(h, idBytes(id), version)));
    }

    /** The editable draft: the existing one, or a new version of a sealed report linked by hash. */
    public @NotNull Report edit(@NotNull ReportId id) {
        return new Report(with(h -> Native.reportEdit(h, idBytes(id))));
    }

    public void save(@NotNull Report report) {
        run(h -> report.run(r -> Native.reportSave(h, r)));
    }

    /** Signs, stores, seals to every destination and queues, in one durable transaction. */
    public void seal(@NotNull Report report) {
        run(h -> report.run(r -> Native.reportSeal(h, r)));
    }

    public void deleteDraft(@NotNull ReportId id) {
        run(h -> Native.reportDeleteDraft(h, idBytes(id)));
    }

    /** Queues a rejected report again, exactly as it was sealed. */
    public void retry(@NotNull ReportId id) {
        run(h -> Native.reportRetry(h, idBytes(id)));
    }

    /** Every report's latest version, newest first. */
    public @NotNull List<ReportInfo> reports() {
        return Arrays.asList(with(Native::listReports));
    }

    /**
     * A page of the reports' latest versions, newest first; a report keeps its place through its versions,
     * so paging while reports are edited neither skips nor repeats one. Past the end: an empty page.
     */
    public @NotNull ReportPage reports(@Nullable ListOptions options) {
        ListOptions o = options == null ? new ListOptions() : options;
        Object[] page = with(h -> Native.listReportsPage(h, o.limit, o.after == null ? null : Native.bytes(o.after),
                                                         o.stateMask(), o.form == null ? null : Native.bytes(o.form)));
        byte[] next = (byte[]) page[1];
        return new ReportPage(Arrays.asList((ReportInfo[]) page[0]), next == null ? null : Native.string(next));
    }

    /** Starts an attachment of the report's draft; write to the stream, then close it to finish. */
    public @NotNull AttachmentOutputStream attach(@NotNull ReportId report, @NotNull String mimeType) {
        return new AttachmentOutputStream(with(h -> Native.writerOpen(h, idBytes(report), Native.bytes(mimeType))));
    }

    /** Streams an existing file into a new attachment of the draft, encrypting as it reads. */
    public @NotNull AttachmentId attachFile(@NotNull ReportId report, @NotNull String path, @NotNull String mimeType) {
        return new AttachmentId(with(h -> Native.attachmentImport(h, idBytes(report), Native.bytes(path),
                                                                  Native.bytes(mimeType))));
    }

    /** A verified, decrypting stream of an attachment; a damaged file throws {@link DalaException.Verify}. */
    public @NotNull InputStream openAttachment(@NotNull AttachmentId id) {
        return new AttachmentInputStream(with(h -> Native.readerOpen(h, id == null ? null : id.bytes())));
    }

    public void removeAttachment(@NotNull AttachmentId id) {
        run(h -> Native.attachmentRemove(h, id == null ? null : id.bytes()));
    }

    public @NotNull List<AttachmentInfo> attachments(@NotNull ReportId report) {
        return Arrays.asList(with(h -> Native.listAttachments(h, idBytes(report))));
    }

    /**
     * Joins an organisation's server from an invite its root key signed; works offline. The organisation
     * gets only what is sealed from now on. Returns the destination name.
     */
    public @NotNull String join(@NotNull String invite) {
        return join(invite, false);
    }

    /**
     * As {@link #join(String)}; with {@code includeExisting}, every report this phone already holds is
     * sealed to the organisation as well (ask the user first).
     */
    public @NotNull String join(@NotNull String invite, boolean includeExisting) {
        return Native.string(with(h -> Native.join(h, Native.bytes(invite), includeExisting)));
    }

    /**
     * The servers' receipts kept on this phone, each checked under the invite's server key (its place in the
     * server's signed log).
     */
    public @NotNull List<Receipt> receipts() {
        return Arrays.asList(with(Native::receipts));
    }

    /** Checks every database page (slow on large stores); {@link DalaException} with CORRUPT when damaged. */
    public void check() {
        run(Native::storeCheck);
    }

    /** Whether a report's content is purged from this phone once every destination holds it. */
    public void setDeleteAfterDelivery(boolean enabled) {
        run(h -> Native.storeSetDeleteAfterDelivery(h, enabled));
    }

    /** Counts of a destination's outbox (the destination {@link #join} returned). */
    public @NotNull OutboxStats outboxStats(@NotNull String destination) {
        return new OutboxStats(with(h -> Native.outboxStats(h, Native.bytes(destination))));
    }

    /** Reports that waited only because no server could be reached are due at once. */
    public void notifyOnline() {
        run(Native::storeNotifyOnline);
    }

    /** The user asked to send now: every queued report is due at once, whatever its backoff. */
    public void retryNow() {
        run(Native::storeRetryNow);
    }

    /** Delivery runs on this store. */
    public @NotNull Sync sync() {
        return new Sync(this);
    }

    static @Nullable byte[] idBytes(@Nullable ReportId id) {
        return id == null ? null : id.bytes();
    }

    static void wipe(@Nullable byte[] secret) {
        if (secret != null) Arrays.fill(secret, (byte) 0);
    }

}
