package org.dala;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

import java.io.IOException;

/**
 * The app's own HTTP stack (OkHttp, HttpURLConnection, Cronet) instead of the library's built-in one.
 * Called on the thread running the sync (the caller of {@link Sync#runOnce}, or a session's own thread).
 * Throw IOException when the server cannot be reached; return any HTTP answer, even 5xx.
 */
public interface Transport {
    /** An HTTP answer: status and body. */
    final class Response {
        public final int status;
        public final @NotNull byte[] body;

        public Response(int status, @Nullable byte[] body) {
            this.status = status;
            this.body = body == null ? new byte[0] : body;
        }
    }

    /** POST body (Content-Type application/x-protobuf) to url. tlsPin, when not empty, is the SHA-256 of
     *  the server certificate's SubjectPublicKeyInfo that the invite pins. */
    @NotNull Response post(@NotNull String url, @NotNull byte[] body, long timeoutMs, @NotNull byte[] tlsPin)
        throws IOException;

    /** POST bytes [offset, offset + length) of the file at filePath, as they are, to url, with the headers
     *  "Authorization: requestHeader" and "Content-Type: application/octet-stream". */
    @NotNull Response upload(@NotNull String url, @NotNull String requestHeader, @NotNull String filePath, long offset,
                             long length, long timeoutMs, @NotNull byte[] tlsPin) throws IOException;
}
