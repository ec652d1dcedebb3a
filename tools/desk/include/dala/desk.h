/*
 * Dala desk: the organisation's side. Opens what phones sealed to the organisation, as a dala-server
 * export, with the organisation's key, and verifies it. libdala_desk; a phone app does
 * not link it. Conventions as in dala.h (errors, NULL outputs on failure, thread safety per function);
 * errors and strings are freed with libdala's dala_error_free and dala_string_free.
 */
#ifndef DALA_DESK_H
#define DALA_DESK_H

#include <dala/dala.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dala_desk_options {
    /* Argon2id cost used when a passphrase wraps the key (keygen). Minimum 1 and 8 MiB; maximum 16 and 1 GiB. */
    uint64_t kdf_opslimit;          /* default 3 */
    uint64_t kdf_memlimit;          /* bytes, default 64 MiB */
    const char *name;               /* keygen: the organisation's display name (at most 256 bytes); NULL = "" */
} dala_desk_options;

/* Any thread. Sets every field to its default. */
DALA_API void dala_desk_options_init(dala_desk_options *options) DALA_NOEXCEPT;

/* Any thread. Writes a new organisation key file at `path` (DALA_ERR_EXISTS if anything is there): the
   organisation's master secret, wrapped under `credential`, from which its root signing key and recipient
   keys come, and its first statement. Sets *out_identity (free with dala_string_free) to the
   organisation's public identity, "DALA-ORG1-...", which dala-server init takes. options may be NULL. */
DALA_API dala_status dala_desk_keygen(const char *path, const dala_credential *credential,
                                      const dala_desk_options *options, char **out_identity,
                                      dala_error **out_error) DALA_NOEXCEPT;

/* A desk handle may be used from any thread, one call at a time (calls that make invites write the key
   file). */
typedef struct dala_desk dala_desk;

/* Any thread. Opens an organisation key file. DALA_ERR_NOT_FOUND: no such file; DALA_ERR_WRONG_KEY: wrong
   credential; DALA_ERR_INVALID_ARGUMENT: a key file of Dala 0.1 or of a store. */
DALA_API dala_status dala_desk_open(const char *path, const dala_credential *credential, dala_desk **out_desk,
                                    dala_error **out_error) DALA_NOEXCEPT;
/* Any thread, once no other call on the desk is running. Accepts NULL. */
DALA_API void dala_desk_close(dala_desk *desk) DALA_NOEXCEPT;
/* Any thread. The organisation's public identity ("DALA-ORG1-..."); free with dala_string_free. */
DALA_API dala_status dala_desk_get_identity(dala_desk *desk, char **out_identity,
                                            dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. The fingerprint people compare: 30 digits in 6 groups of 5 ("12345 67890 ..."), the same
   that `dala join` prints; free with dala_string_free. */
DALA_API dala_status dala_desk_get_fingerprint(dala_desk *desk, char **out_fingerprint,
                                               dala_error **out_error) DALA_NOEXCEPT;

typedef struct dala_desk_invite_options {
    uint8_t server_key[32];         /* the server's public key (dala-server init prints it) */
    const char *const *urls;        /* its addresses, http(s)://HOST[:PORT][/PATH]; at least one */
    size_t url_count;
    uint32_t uses;                  /* devices that may enrol with it; default 1 */
    int64_t expires_ms;             /* Unix ms; default 0 = 7 days from now */
    const uint8_t *tls_pin;         /* NULL, or 32 bytes: SHA-256 of the certificate's SubjectPublicKeyInfo */
    /* 1: the addresses may stand in for one another (a phone falls back from an onion service to https
       or http). Default 0: a phone only falls back to addresses no weaker than the one it could not reach. */
    int addresses_equivalent;
} dala_desk_invite_options;

/* Any thread. Sets every field to its default (no server key, no address). */
DALA_API void dala_desk_invite_options_init(dala_desk_invite_options *options) DALA_NOEXCEPT;

/* One call at a time per desk. An invite to one server of the organisation ("DALA2-..."), signed by the
   root; free with dala_string_free. The first invite to a server authorises its key from now on (a new
   statement, written into the key file). DALA_ERR_STATE: the organisation revoked that server key. */
DALA_API dala_status dala_desk_create_invite(dala_desk *desk, const dala_desk_invite_options *options,
                                             char **out_invite, dala_error **out_error) DALA_NOEXCEPT;

/* One call at a time per desk. A new recipient key replaces the current one from now on (a new statement,
   written into the key file); envelopes sealed to older ones still open. Give the statement to the servers
   (dala_desk_write_statement, dala-server statement): phones take it up with their next answers and seal
   new reports to the new key. */
DALA_API dala_status dala_desk_rotate_recipients(dala_desk *desk, dala_error **out_error) DALA_NOEXCEPT;

/* One call at a time per desk. Revokes a server key from revoked_ms on (0: now): receipts it signs dated
   then or later are not the organisation's, and phones that hold the statement no longer join or send to
   it. DALA_ERR_NOT_FOUND: the organisation never authorised that key. */
DALA_API dala_status dala_desk_revoke_server(dala_desk *desk, const uint8_t server_key[32], int64_t revoked_ms,
                                             dala_error **out_error) DALA_NOEXCEPT;

/* Any thread. Writes the organisation's current SignedStatement to `path` (for dala-server statement). */
DALA_API dala_status dala_desk_write_statement(dala_desk *desk, const char *path, dala_error **out_error) DALA_NOEXCEPT;

typedef struct dala_desk_summary {
    uint64_t reports;    /* report versions in the export, each counted once */
    uint64_t verified;   /* every check passed */
    uint64_t failed;     /* listed with their problems in OUT_DIR/summary.json */
    /* About the export as a whole (summary.json "problems" says each): any of them non-zero means it was
       altered or is incomplete. */
    uint64_t duplicates;       /* entries repeating a report version (written and counted once) */
    uint64_t reordered;        /* entries listed out of the server's sequence order */
    uint64_t unknown_fields;   /* places holding fields this desk does not know: an entry may hide there */
    uint64_t missing;          /* versions the server received (its sequence numbers, a phone's receipt) that the
                                  export lacks or holds as other bytes */
    uint64_t phone_receipts_invalid;  /* given phone receipts that no authorised server key signed */
    uint64_t log_problems;     /* the server's log (docs/protocol.md, "The log") does not verify against its
                                  signed head, or an entry with a receipt or an enrolment is not in it */
    /* Trusted time (docs/protocol.md, "Trusted time"), when options->tsa_cert_path is set: */
    uint64_t timestamps;          /* time-stamps of the log that verified */
    uint64_t timestamp_problems;  /* time-stamps that did not (another head, an untrusted TSA), or none */
} dala_desk_summary;

typedef struct dala_desk_open_options {
    /* Receipts phones kept (the "receipt" of `dala receipts --json`, SignedReceipt bytes): each is checked,
       and the export must hold the version it names as the same bytes. */
    const uint8_t *const *receipts;
    const size_t *receipt_sizes;
    size_t receipt_count;
    /* Where to write summary.json (it holds no report contents). NULL: OUT_DIR/summary.json, or nowhere
       when out_dir is NULL. */
    const char *summary_path;
    /* Earlier exports of the same server (paths): this export's log must extend each one's, else a log
       problem (leaves removed or changed since: a server restored from a backup, or a fork). */
    const char *const *earlier_exports;
    size_t earlier_export_count;
    /* A PEM file of the certificates the organisation trusts for time (a TSA's own, or its CA's): the
       export's RFC 3161 time-stamps are checked against them. NULL: not checked, nothing claimed. */
    const char *tsa_cert_path;
} dala_desk_open_options;

/* Any thread. Sets every field to its default (no receipts, summary in OUT_DIR). */
DALA_API void dala_desk_open_options_init(dala_desk_open_options *options) DALA_NOEXCEPT;

/* Any thread. Opens a dala-server export trusting only the desk's key file, runs every check of
   docs/protocol.md ("What the desk checks") on each report version, and writes OUT_DIR/<id>-v<version>.json
   plus OUT_DIR/summary.json. Reports that fail a check are written with their problems, not dropped.
   out_dir NULL: every check is made and nothing decrypted is written anywhere (attachments are read
   through and checked); only options->summary_path, if set, is written. options may be NULL. The export is clean when failed, duplicates, reordered, unknown_fields, missing,
   phone_receipts_invalid, log_problems and timestamp_problems are all 0. */
DALA_API dala_status dala_desk_open_export(dala_desk *desk, const char *export_path, const char *out_dir,
                                           const dala_desk_open_options *options, dala_desk_summary *out_summary,
                                           dala_error **out_error) DALA_NOEXCEPT;

/* Verifying a server's log with the organisation's public identity alone (no desk key, no contents):
   docs/protocol.md, "Verifying the log with the public identity only". */
typedef struct dala_desk_log_options {
    const char *export_path;            /* a dala-server export; NULL: the phones' receipts only */
    const uint8_t *const *receipts;     /* SignedReceipt bytes phones kept (dala receipts --json) */
    const size_t *receipt_sizes;
    size_t receipt_count;
    const char *const *statement_paths; /* SignedStatement files the verifier holds (the newest is used,
                                           with the export's own) */
    size_t statement_count;
    const char *tsa_cert_path;          /* PEM certificates trusted for time; NULL: time-stamps not checked */
} dala_desk_log_options;

/* Any thread. Sets every field to its default (nothing to check). */
DALA_API void dala_desk_log_options_init(dala_desk_log_options *options) DALA_NOEXCEPT;

/* Any thread; no desk needed. Checks, trusting only `organisation_identity` (the line dala desk keygen
   prints): the statement's signature by the root; the export's log head signed by its server under a
   key the statement authorised at the head's time, and its leaves making exactly that head; each phone
   receipt signed by an authorised server key, at the place its inclusion proof gives in a head that key
   signed, and (for the export's server) that head a prefix of the export's log holding the same leaf;
   each time-stamp over a head of the log, by a trusted TSA. *out_json (free with dala_string_free):
   {server_key, leaves, head_size, head_time_ms, statement_version, receipts, receipts_in_log, timestamps,
   problems: [...], ok}. DALA_OK means the checks ran; the verdict is "ok". */
DALA_API dala_status dala_desk_verify_log(const char *organisation_identity, const dala_desk_log_options *options,
                                          char **out_json, dala_error **out_error) DALA_NOEXCEPT;

/* The desk store (docs/desk.md): the reports the organisation received, kept in DATA_DIR encrypted under a
   key that comes from the organisation's key (so the desk passphrase guards it), attachments still
   encrypted as exported, and a custody log of every import, view, annotation and export. A store handle
   may be used from any thread, one call at a time; its desk must stay open until it is closed. */
typedef struct dala_desk_store dala_desk_store;

/* Any thread. Opens the desk store in data_dir, creating it when missing. DALA_ERR_WRONG_KEY: the store
   belongs to another organisation. */
DALA_API dala_status dala_desk_store_open(dala_desk *desk, const char *data_dir, dala_desk_store **out_store,
                                          dala_error **out_error) DALA_NOEXCEPT;
/* Any thread, once no other call on the store is running. Accepts NULL. */
DALA_API void dala_desk_store_close(dala_desk_store *store) DALA_NOEXCEPT;

typedef struct dala_desk_import_result {
    dala_desk_summary summary;  /* every check of dala_desk_open_export, over the whole export */
    int imported;               /* 1: added; 0: refused, the store unchanged (*out_json says why) */
    uint64_t added;             /* report versions new to the store */
    uint64_t held;              /* report versions it held already */
    uint64_t reports_changed;   /* reports new to the store, or with a newer version */
} dala_desk_import_result;

/* One call at a time per store (a second process's import waits for the first). Verifies the export with
   every check of dala_desk_open_export and adds what is new, all or nothing. Refused, with the store
   unchanged: an export that is altered or incomplete, of a server the organisation never authorised, whose
   log does not extend the log of the store's last import from that server, or that holds report versions
   failing their own checks unless keep_failed (then those are kept, marked failed). *out_json (may be NULL;
   free with dala_string_free): {"imported", "added", "held", "reports_changed", "problems": [...],
   "summary": summary.json}. options may be NULL (its summary_path and earlier_exports are not used: the
   store keeps the earlier exports itself). */
DALA_API dala_status dala_desk_store_import(dala_desk_store *store, const char *export_path,
                                            const dala_desk_open_options *options, int keep_failed,
                                            dala_desk_import_result *out_result, char **out_json,
                                            dala_error **out_error) DALA_NOEXCEPT;

typedef struct dala_desk_pull_options {
    /* The server's addresses (http(s)://HOST[:PORT][/PATH]), tried in order for each request. None: every
       server this store pulled from before, at the addresses given then. */
    const char *const *urls;
    size_t url_count;
    /* NULL, or 32 bytes: the key of the server at those addresses. NULL: the one server the organisation
       authorises (DALA_ERR_INVALID_ARGUMENT if it authorises several). */
    const uint8_t *server_key;
    const uint8_t *tls_pin;     /* NULL, or 32 bytes: SHA-256 of the certificate's SubjectPublicKeyInfo */
    const char *proxy_url;      /* NULL, or "socks5h://HOST:PORT" (Tor): every connection through it */
    int64_t timeout_ms;         /* one request; default 120000 */
    const char *tsa_cert_path;  /* as in dala_desk_open_options */
} dala_desk_pull_options;

/* Any thread. Sets every field to its default (no address: the servers pulled from before). */
DALA_API void dala_desk_pull_options_init(dala_desk_pull_options *options) DALA_NOEXCEPT;

/* One call at a time per desk and store; `store` must have been opened on `desk`. Fetches what is new from
   the organisation's server (POST /v2/export, docs/protocol.md "Pulling exports"): the export's pages from
   where the store's last import of that server ended, and the attachment files the store lacks (an
   interrupted download resumes), signed with the desk's pull key; the first pull lists that key in the
   organisation's statement (a new version, written into the key file) and every request carries the
   statement, so the server learns it. Then imports it as dala_desk_store_import does (keep_failed 0);
   nothing decrypted is written. A refused import keeps nothing fetched but unfinished downloads. A second
   pull of the same store waits for the first. Each server is pulled even when another fails:
   *out_json (free with dala_string_free): {"servers": [{"server_key", "log_from", "log_size", "pages",
   "media_files", "media_bytes", "listed_desk", "error", "imported", "added", "held", "reports_changed",
   "problems": [...], "summary": summary.json}]}, where "error" is null, or why that server could not be
   pulled from (it refused this desk: "answered 403"; no address answered; what it sent was not an
   export). DALA_ERR_INVALID_ARGUMENT: no address given and none remembered. */
DALA_API dala_status dala_desk_store_pull(dala_desk *desk, dala_desk_store *store,
                                          const dala_desk_pull_options *options, char **out_json,
                                          dala_error **out_error) DALA_NOEXCEPT;

/* One call at a time per store. Writes the latest version of the reports whose ids (32 hex digits) are
   given, or of every report when report_count is 0, to out_path: format "csv" (UTF-8 with a byte-order
   mark, CRLF, a header row, a column per field) or "jsonl" (one JSON object a line), or "evidence": an
   evidence package (docs/evidence.md) of every version of those reports, which
   dala_desk_verify_package checks with the organisation's identity alone (DALA_ERR_EXISTS: out_path
   exists). Each export is
   recorded in the custody log. *out_rows: the reports written. DALA_ERR_NOT_FOUND: an id the store does
   not hold. */
DALA_API dala_status dala_desk_store_export(dala_desk_store *store, const char *format, const char *out_path,
                                            const char *const *report_ids, size_t report_count, uint64_t *out_rows,
                                            dala_error **out_error) DALA_NOEXCEPT;

/* Any thread; no desk needed. Checks an evidence package (docs/evidence.md) trusting only
   organisation_identity: the manifest signed by its root, every file against the manifest's hashes, the
   statement, each version opened with its disclosed content key, its receipt and log proof, each device's
   enrolment, the version chain, the media against the hashes the device signed, the custody log, and each
   version's time-stamp if the package carries one: over a head of the receipt's server that holds the
   version, and, with tsa_cert_path (a PEM file of the time-stamping authorities trusted: an authority's own
   certificate, or its CA's; NULL: times not claimed), signed by one of them ("checked" then says when each
   version was received at the latest).
   *out_json (free with dala_string_free): {"ok", "organisation", "reports", "versions", "attachments",
   "custody_entries", "timestamps", "timestamps_unchecked", "checked": [...], "problems": [...]}. DALA_OK
   means the checks ran; the verdict is "ok". DALA_ERR_NOT_FOUND: no such file; DALA_ERR_CORRUPT: not a ZIP
   package; DALA_ERR_INVALID_ARGUMENT: a tsa_cert_path with no PEM certificate. */
DALA_API dala_status dala_desk_verify_package(const char *organisation_identity, const char *package_path,
                                              const char *tsa_cert_path, char **out_json,
                                              dala_error **out_error) DALA_NOEXCEPT;

/* The web desk (docs/desk.md): reports, overview, devices and the custody log in a browser, served from
   the store. */
typedef struct dala_desk_serve_options {
    const char *listen;         /* "HOST:PORT" (IPv6 as "[::1]:PORT"); NULL = "127.0.0.1:0" (any free port) */
    const char *tls_cert_path;  /* PEM; with tls_key_path, serves HTTPS. Required unless listen is loopback */
    const char *tls_key_path;
    /* The name browsers use, "HOST" or "HOST:PORT" (the certificate's); requests must carry it. NULL: the
       listen address. Required when listen is 0.0.0.0 or [::]. */
    const char *name;
    /* A directory of the organisation's own map tiles, DIR/Z/X/Y.png (or .jpg, .webp: XYZ tiles, as
       gdal2tiles --xyz writes them), with an optional DIR/attribution.txt: maps are drawn on them, served
       from the desk itself. NULL: maps are drawn without tiles. DALA_ERR_NOT_FOUND / INVALID_ARGUMENT at
       start: no such directory, or no zoom level in it. */
    const char *tiles_dir;
} dala_desk_serve_options;

/* Any thread. Sets every field to its default. */
DALA_API void dala_desk_serve_options_init(dala_desk_serve_options *options) DALA_NOEXCEPT;

/* A running web desk. */
typedef struct dala_desk_server dala_desk_server;

/* Any thread. Starts serving `store` (which must stay open until the server stops) on its own threads.
   DALA_ERR_INVALID_ARGUMENT: an address that is not loopback without TLS, or a malformed address.
   The store is not to be used by other calls while the server runs. options may be NULL. */
DALA_API dala_status dala_desk_server_start(dala_desk_store *store, const dala_desk_serve_options *options,
                                            dala_desk_server **out_server, dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. The address to open in a browser, with its one-time login token (it works once: keep it
   to yourself); free with dala_string_free. */
DALA_API dala_status dala_desk_server_get_url(dala_desk_server *server, char **out_url,
                                              dala_error **out_error) DALA_NOEXCEPT;
/* Any thread, once. Stops accepting, closes every connection, waits for its threads and frees the
   server. Accepts NULL. */
DALA_API void dala_desk_server_stop(dala_desk_server *server) DALA_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* DALA_DESK_H */
