package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/** A server this store delivers to ({@link Store#servers()}): whose it is and how the last contact went. */
public final class Server {
    /** The destination's name, as {@link Store#join} returned it ("org-" and 16 hex digits of the root key). */
    public final @NotNull String destination;
    /** The organisation's name, from its signed statement. Show it with {@link #fingerprint} at join. */
    public final @NotNull String organisation;
    /** The first address. */
    public final @NotNull String url;
    /** The server's Ed25519 key (32 bytes): answers and receipts are verified against it. */
    public final @NotNull byte[] serverKey;
    public final boolean enrolled;
    /** What went wrong at the last contact; "" when it went well. */
    public final @NotNull String lastError;
    /** The organisation's root key as 6 groups of 5 digits, to compare in person; "" for a 0.1 server. */
    public final @NotNull String fingerprint;
    /** The organisation's root key (32 bytes); all zero for a server joined with a 0.1 invite. */
    public final @NotNull byte[] organisationKey;

    Server(String destination, String organisation, String url, byte[] serverKey, boolean enrolled, String lastError,
           String fingerprint, byte[] organisationKey) {
        this.destination = destination;
        this.organisation = organisation;
        this.url = url;
        this.serverKey = serverKey;
        this.enrolled = enrolled;
        this.lastError = lastError;
        this.fingerprint = fingerprint;
        this.organisationKey = organisationKey;
    }

    static Server of(byte[] destination, byte[] organisation, byte[] url, byte[] serverKey, boolean enrolled,
                     byte[] lastError, byte[] fingerprint, byte[] organisationKey) {
        return new Server(Native.string(destination), Native.string(organisation), Native.string(url), serverKey,
                          enrolled, Native.string(lastError), Native.string(fingerprint), organisationKey);
    }
}
