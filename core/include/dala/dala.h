/*
 * Dala: an offline-first, encrypted store for field reports. This is the library's one public ABI.
 *
 * Conventions (see docs/c-api.md):
 * - Functions that can fail return a dala_status and take `dala_error **out_error` last. out_error may
 *   be NULL. On failure *out_error gets a new error (free it with dala_error_free) and every other output
 *   pointer is set to NULL; on success *out_error is set to NULL.
 * - Each owned type has one free function; every free function accepts NULL.
 * - Options structs are set up by their dala_*_options_init function before fields are changed.
 * - Strings are NUL-terminated UTF-8. Invalid UTF-8 is refused with DALA_ERR_INVALID_ARGUMENT.
 * - Error messages never contain secrets or report contents.
 * - Thread safety is stated on each function. "Any thread" means the function may be called from any
 *   thread concurrently with other calls on the same object.
 */
#ifndef DALA_DALA_H
#define DALA_DALA_H

#include <stddef.h>
#include <stdint.h>

/* The version of this header. CMake reads it from here (the one place it is written); dala_version() and
   dala_version_number() give the library's, which may be newer. docs/c-api.md says what changes with each. */
#define DALA_VERSION_MAJOR 0
#define DALA_VERSION_MINOR 2
#define DALA_VERSION_PATCH 0
#define DALA_VERSION_NUMBER (DALA_VERSION_MAJOR * 10000 + DALA_VERSION_MINOR * 100 + DALA_VERSION_PATCH)

#if defined(__GNUC__)
#define DALA_API __attribute__((visibility("default")))
#else
#define DALA_API
#endif

#ifdef __cplusplus
#define DALA_NOEXCEPT noexcept
extern "C" {
#else
#define DALA_NOEXCEPT
#endif

/* ---------------------------------------------------------------------------------------------------
 * Status and errors
 * ------------------------------------------------------------------------------------------------- */

/* The numbers never change; new codes get new numbers. Bindings map each one (a test checks). */
typedef enum dala_status {
    DALA_OK = 0,
    DALA_ERR_INTERNAL = 1,          /* a bug or an unexpected library failure */
    DALA_ERR_INVALID_ARGUMENT = 2,  /* NULL, empty, malformed, invalid UTF-8, out of range */
    DALA_ERR_WRONG_KEY = 3,         /* wrong passphrase or key */
    DALA_ERR_NOT_FOUND = 4,         /* no such store, report or item */
    DALA_ERR_EXISTS = 5,            /* a store already exists there */
    DALA_ERR_CORRUPT = 6,           /* a damaged key file or database */
    DALA_ERR_IO = 7,                /* a file system error */
    DALA_ERR_PERMISSION = 8,        /* access refused: by the file system, or a server refusing a desk */
    DALA_ERR_STATE = 9,             /* not allowed in the object's current state (e.g. editing a sealed version) */
    DALA_ERR_TOO_LARGE = 10,        /* over a documented limit */
    DALA_ERR_VERIFY = 11,           /* a signature, hash or authentication tag did not verify */
    DALA_ERR_BUSY = 12,             /* the store is locked by another writer for too long */
    DALA_ERR_NOT_ENCRYPTED = 13,    /* encryption could not be confirmed: refused to continue */
    DALA_ERR_NO_MEMORY = 14,
    DALA_ERR_NO_SPACE = 15          /* the disk is full */
} dala_status;

typedef struct dala_error dala_error;

/* Any thread. The status of an error (DALA_ERR_INTERNAL for NULL). */
DALA_API dala_status dala_error_status(const dala_error *error) DALA_NOEXCEPT;
/* Any thread. A message for people: what went wrong and what to do. Valid until the error is freed. */
DALA_API const char *dala_error_message(const dala_error *error) DALA_NOEXCEPT;
/* Any thread. Accepts NULL. */
DALA_API void dala_error_free(dala_error *error) DALA_NOEXCEPT;
/* Any thread. The enumerator's name, e.g. "DALA_ERR_WRONG_KEY"; "DALA_ERR_UNKNOWN" for unknown values. */
DALA_API const char *dala_status_name(dala_status status) DALA_NOEXCEPT;
/* Any thread. The library's version, e.g. "0.2.0". */
DALA_API const char *dala_version(void) DALA_NOEXCEPT;
/* Any thread. The library's version as DALA_VERSION_NUMBER computes it (0.2.0: 200). */
DALA_API int dala_version_number(void) DALA_NOEXCEPT;
/* Any thread. Frees a string the library returned. Accepts NULL. */
DALA_API void dala_string_free(char *string) DALA_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------------
 * Credentials and options
 * ------------------------------------------------------------------------------------------------- */

typedef enum dala_credential_kind {
    DALA_CREDENTIAL_PASSPHRASE = 1, /* bytes of a passphrase (1 to 1024 bytes); Argon2id derives the key */
    DALA_CREDENTIAL_RAW_KEY = 2,    /* 32 random bytes from the platform keystore (Android Keystore, Keychain) */
    /* Both, and both are needed: `bytes` is the passphrase, `key` the 32-byte platform key. Deleting the
       platform key (hardware-backed keystores delete for real) makes the store unreadable even with the
       passphrase and old copies of the key file. docs/keystores.md says what to call on each platform. */
    DALA_CREDENTIAL_PASSPHRASE_AND_KEY = 3
} dala_credential_kind;

/* The library copies the bytes into locked, zeroed-on-release memory; the caller should wipe its copy.
   `key` and `key_length` are read only for DALA_CREDENTIAL_PASSPHRASE_AND_KEY. */
typedef struct dala_credential {
    dala_credential_kind kind;
    const uint8_t *bytes;
    size_t length;
    const uint8_t *key;
    size_t key_length;
} dala_credential;

typedef struct dala_store_options {
    /* Argon2id cost of the passphrase. The key file does not record it (it records nothing readable), so
       every open must pass the cost the store was created with: another cost reads as a wrong passphrase.
       Minimum 1 and 8 MiB; maximum 16 and 1 GiB. */
    uint64_t kdf_opslimit;          /* default 3 */
    uint64_t kdf_memlimit;          /* bytes, default 64 MiB */
    /* At create: delete a report's content once every destination has delivered it. Later changes:
       dala_store_set_delete_after_delivery. */
    int delete_after_delivery;      /* default 0 */
    /* Outbox retry backoff: base * 2^(attempts-1), capped at max, with jitter down to half. */
    uint32_t backoff_base_ms;       /* default 5000 */
    uint32_t backoff_max_ms;        /* default 3600000 */
    /* The names of the store's files inside its directory, chosen by the app (nothing in them needs to
       name Dala): plain names, no '/'. NULL for the defaults "dala.key", "dala.db" and "media". Every
       call on the same store must pass the same names. */
    const char *key_file_name;
    const char *database_file_name;
    const char *media_dir_name;
    /* Called first by dala_store_wipe_with_options: destroy the platform key here (KeyStore.deleteEntry,
       SecItemDelete). Return 0 on success; the wipe goes on either way and then reports the failure. */
    int (*destroy_platform_key)(void *context);
    void *destroy_platform_key_context;
} dala_store_options;

/* Any thread. Sets every field to its default. */
DALA_API void dala_store_options_init(dala_store_options *options) DALA_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------------
 * Stores
 * ------------------------------------------------------------------------------------------------- */

/* A store handle may be used from any thread; calls are serialised inside. */
typedef struct dala_store dala_store;

/* Any thread. Creates a store in `dir` (created if missing, mode 0700): a fresh database key wrapped
   under `credential`, an encrypted database and a device identity (Ed25519). Fails with DALA_ERR_EXISTS
   when `dir` already holds a store. options may be NULL for defaults. */
DALA_API dala_status dala_store_create(const char *dir, const dala_credential *credential,
                                       const dala_store_options *options, dala_store **out_store,
                                       dala_error **out_error) DALA_NOEXCEPT;

/* Any thread. Opens an existing store. DALA_ERR_NOT_FOUND: no store in dir; DALA_ERR_WRONG_KEY: wrong
   credential (nothing is written); DALA_ERR_CORRUPT: a damaged key file or database;
   DALA_ERR_NOT_ENCRYPTED: the SQLCipher codec is not active in this process. Reports that were in flight
   when a previous process died become pending again. options may be NULL. */
DALA_API dala_status dala_store_open(const char *dir, const dala_credential *credential,
                                     const dala_store_options *options, dala_store **out_store,
                                     dala_error **out_error) DALA_NOEXCEPT;

/* Any thread, once no other call on the store is running. Closes and frees. Accepts NULL. */
DALA_API void dala_store_close(dala_store *store) DALA_NOEXCEPT;

/* Any thread. Re-wraps the store's key under a new credential (any kind to any kind). The database is
   not rewritten (instant); the old key file's bytes are overwritten. The change is atomic: after a crash
   either credential works, never neither. options (may be NULL) gives the Argon2id cost of both and the
   file names. A duress passphrase stays set unless the kind of credential changes; the new passphrase
   may not be the duress one (DALA_ERR_INVALID_ARGUMENT). */
DALA_API dala_status dala_store_change_credential(const char *dir, const dala_credential *old_credential,
                                                  const dala_credential *new_credential,
                                                  const dala_store_options *options,
                                                  dala_error **out_error) DALA_NOEXCEPT;

/* Re-key progress: phase 1 = the database (0 of 1 when its copy under the new key starts, 1 of 1 when it
   is done), phase 2 = the drafts' attachments (`done` of `total` plaintext bytes encrypted again). The two
   run at the same time, so calls for them interleave; each phase's `done` only grows. */
typedef void (*dala_rekey_progress_fn)(void *context, int phase, uint64_t done, uint64_t total);

/* Any thread, with no handle open on the store (DALA_ERR_BUSY otherwise). Re-keys: the database is
   copied under a new key, in the copy every attachment file that no signature binds (those of drafts) is
   encrypted again under a new file key, and the key file then wraps the new key under new_credential (the commit point; the old key file's bytes are
   overwritten, and so are the old database's). Killed at any point, the store
   opens with one credential or the other and loses nothing; called again, it starts over and finishes
   (nothing is ever written under the old key, so an interrupted copy is not kept).
   Afterwards an old key file with the old credential opens none of the store's files. It uses up to 4
   threads, and one more of the library's own frees the old attachment files after it returns; its time is mostly re-encrypting the drafts' attachments (1 GiB and 100,000 reports: about 2.5
   to 3 s on a 2-core x86-64 machine; docs/threat-model.md); use dala_store_change_credential for an instant
   change of passphrase. progress may be NULL; it is called on this thread only. */
DALA_API dala_status dala_store_rekey(const char *dir, const dala_credential *old_credential,
                                      const dala_credential *new_credential, const dala_store_options *options,
                                      dala_rekey_progress_fn progress, void *progress_context,
                                      dala_error **out_error) DALA_NOEXCEPT;

/* Any thread. Panic wipe, no credential needed: destroys the wrapped key first (overwritten, synced and
   removed: from then on the data cannot be decrypted), then removes the store's files and, if empty,
   the directory. The files are first moved into a directory of the wipe's own inside dir; if removing
   them takes more than about 60 ms (a large store), the call returns and a thread of the library's own
   finishes, leaving dir in place; the next dala_store_create in dir removes what an ended process left. Close open handles on the store first. DALA_ERR_NOT_FOUND when there is no store. */
DALA_API dala_status dala_store_wipe(const char *dir, dala_error **out_error) DALA_NOEXCEPT;

/* Any thread. dala_store_wipe for a store with its own file names, and which first calls the app's
   options->destroy_platform_key (if set). Everything is attempted even if a step fails; the first failure
   is returned (DALA_ERR_IO if the platform key could not be destroyed). */
DALA_API dala_status dala_store_wipe_with_options(const char *dir, const dala_store_options *options,
                                                  dala_error **out_error) DALA_NOEXCEPT;

/* Any thread, with no handle open on the store. Sets (or replaces) a duress passphrase. Opening the store
   with it destroys the store's key and data, and opens a new, empty store under that passphrase: it takes
   the same time and returns the same as any open, and nothing on disk shows that a duress passphrase is
   set. The store's credential must include a passphrase (with DALA_CREDENTIAL_PASSPHRASE_AND_KEY the
   duress passphrase is used with the same platform key). DALA_ERR_INVALID_ARGUMENT if it is the store's
   own passphrase. Read docs/duress.md before offering it: in some places destroying data during an
   investigation is itself a crime, and a coercer may know the feature exists. */
DALA_API dala_status dala_store_set_duress(const char *dir, const dala_credential *credential,
                                           const uint8_t *duress_passphrase, size_t duress_passphrase_length,
                                           const dala_store_options *options, dala_error **out_error) DALA_NOEXCEPT;

/* Any thread, with no handle open on the store. Removes the duress passphrase, if any. */
DALA_API dala_status dala_store_clear_duress(const char *dir, const dala_credential *credential,
                                             const dala_store_options *options, dala_error **out_error) DALA_NOEXCEPT;

/* Any thread. This store's device public key (Ed25519, 32 bytes). */
DALA_API dala_status dala_store_get_device_key(dala_store *store, uint8_t out_key[32],
                                           dala_error **out_error) DALA_NOEXCEPT;

/* Any thread. Turns the delete-after-delivery policy on (1) or off (0). Turning it on also deletes the
   content of reports already delivered everywhere. */
DALA_API dala_status dala_store_set_delete_after_delivery(dala_store *store, int enabled,
                                                          dala_error **out_error) DALA_NOEXCEPT;

/* Any thread. Checks every database page (slow on large stores). DALA_ERR_CORRUPT when damaged;
   DALA_ERR_INTERNAL when the store's commits are not being synced to disk (docs/storage-format.md). */
DALA_API dala_status dala_store_check(dala_store *store, dala_error **out_error) DALA_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------------
 * Reports
 * ------------------------------------------------------------------------------------------------- */

typedef struct dala_report_id {
    uint8_t bytes[16];
} dala_report_id;

/* Any thread. Writes 32 lowercase hex characters and a NUL. */
DALA_API void dala_report_id_to_string(const dala_report_id *id, char out[33]) DALA_NOEXCEPT;
/* Any thread. Parses 32 hex characters. */
DALA_API dala_status dala_report_id_parse(const char *text, dala_report_id *out_id,
                                          dala_error **out_error) DALA_NOEXCEPT;

typedef enum dala_report_state {
    DALA_REPORT_DRAFT = 0,      /* editable */
    DALA_REPORT_SEALED = 1,     /* signed and immutable; waiting for recipients */
    DALA_REPORT_QUEUED = 2,     /* sealed to recipients and in the outbox */
    DALA_REPORT_DELIVERED = 3,  /* every destination holds a receipt */
    DALA_REPORT_REJECTED = 4    /* a destination refused it for good */
} dala_report_state;

typedef enum dala_field_type {
    DALA_FIELD_TEXT = 1,
    DALA_FIELD_INTEGER = 2,
    DALA_FIELD_DECIMAL = 3,     /* decimal text such as "-12.50" */
    DALA_FIELD_BOOLEAN = 4,
    DALA_FIELD_TIMESTAMP = 5,   /* milliseconds since the Unix epoch, UTC */
    DALA_FIELD_GEO = 6,
    DALA_FIELD_PEOPLE = 7
} dala_field_type;

typedef struct dala_geo {
    double latitude;   /* -90..90 */
    double longitude;  /* -180..180 */
    double accuracy_m; /* >= 0; 0 = unknown */
} dala_geo;

typedef struct dala_person {
    const char *name;  /* 1..256 bytes */
    const char *role;  /* 0..64 bytes; NULL = "" */
} dala_person;

/* A report handle is an in-memory snapshot of one version. Not thread-safe: use it from one thread
   at a time. Setters change drafts only, in memory, until dala_report_save or dala_report_seal. */
typedef struct dala_report dala_report;

/* Any thread. Creates and saves a new draft. form is "name/version", e.g. "detention/1". */
DALA_API dala_status dala_report_create(dala_store *store, const char *form, dala_report **out_report,
                                        dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. The latest version of a report. Sealed versions are verified (signature and hash) on read:
   DALA_ERR_VERIFY if the stored bytes were altered. */
DALA_API dala_status dala_report_load(dala_store *store, const dala_report_id *id, dala_report **out_report,
                                      dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. One version of a report. */
DALA_API dala_status dala_report_load_version(dala_store *store, const dala_report_id *id, uint32_t version,
                                              dala_report **out_report, dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. The editable draft of a report: the existing draft, or a new version created from the
   latest sealed one that links to it by hash. */
DALA_API dala_status dala_report_edit(dala_store *store, const dala_report_id *id, dala_report **out_report,
                                      dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. Deletes a report's draft version (a report with no sealed version disappears). */
DALA_API dala_status dala_report_delete_draft(dala_store *store, const dala_report_id *id,
                                              dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. Queues a rejected report again: each rejected version is pending and due at once, exactly as it
   was sealed (a rejection keeps everything). DALA_ERR_NOT_FOUND if no version of it was rejected. */
DALA_API dala_status dala_report_retry(dala_store *store, const dala_report_id *id,
                                       dala_error **out_error) DALA_NOEXCEPT;
/* The thread using the report, once no other call uses it. Accepts NULL. */
DALA_API void dala_report_free(dala_report *report) DALA_NOEXCEPT;

/* Draft setters: the thread using the report (one thread at a time). Limits (docs/c-api.md): keys 1..64 bytes of [A-Za-z0-9_.-]; text 64 KiB; narrative
   1 MiB; 256 fields; 1000 people per field; 4 MiB serialized. Setting a key replaces its value. */
DALA_API dala_status dala_report_set_text(dala_report *report, const char *key, const char *value,
                                          dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_set_integer(dala_report *report, const char *key, int64_t value,
                                             dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_set_decimal(dala_report *report, const char *key, const char *value,
                                             dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_set_boolean(dala_report *report, const char *key, int value,
                                             dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_set_timestamp(dala_report *report, const char *key, int64_t unix_ms,
                                               dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_set_geo(dala_report *report, const char *key, const dala_geo *value,
                                         dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_set_people(dala_report *report, const char *key, const dala_person *people,
                                            size_t count, dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_remove_field(dala_report *report, const char *key,
                                              dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_set_narrative(dala_report *report, const char *text,
                                               dala_error **out_error) DALA_NOEXCEPT;
/* location NULL clears it. */
DALA_API dala_status dala_report_set_location(dala_report *report, const dala_geo *location,
                                              dala_error **out_error) DALA_NOEXCEPT;
/* Outbox priority; higher goes first. Default 0. */
DALA_API dala_status dala_report_set_priority(dala_report *report, int32_t priority,
                                              dala_error **out_error) DALA_NOEXCEPT;

/* Any thread (the report handle from one thread). Saves a draft. */
DALA_API dala_status dala_report_save(dala_store *store, dala_report *report,
                                      dala_error **out_error) DALA_NOEXCEPT;
/* Any thread (the report handle from one thread). Saves and seals the draft in one durable transaction:
   signed, immutable, and queued for every destination with recipients. The handle then shows the
   sealed version. After a crash the report is either still a draft or fully sealed and queued. */
DALA_API dala_status dala_report_seal(dala_store *store, dala_report *report,
                                      dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. Seals the drafts of `count` reports in one transaction (all or none). Signs and seals them
   on the calling thread and up to 3 threads of the library's own, started for each window of up to 256
   reports and joined before the call returns. */
DALA_API dala_status dala_store_seal_reports(dala_store *store, const dala_report_id *ids, size_t count,
                                             dala_error **out_error) DALA_NOEXCEPT;

/* Getters: the thread using the report; valid while the handle lives; never fail. */
DALA_API void dala_report_get_id(const dala_report *report, dala_report_id *out_id) DALA_NOEXCEPT;
DALA_API uint32_t dala_report_get_version(const dala_report *report) DALA_NOEXCEPT;
DALA_API dala_report_state dala_report_get_state(const dala_report *report) DALA_NOEXCEPT;
DALA_API const char *dala_report_get_form(const dala_report *report) DALA_NOEXCEPT;  /* "name/version" */
DALA_API int64_t dala_report_get_created_ms(const dala_report *report) DALA_NOEXCEPT;
DALA_API const char *dala_report_get_narrative(const dala_report *report) DALA_NOEXCEPT;
/* 1 when the content was deleted after delivery (only id, form, state and hashes remain). */
DALA_API int dala_report_is_purged(const dala_report *report) DALA_NOEXCEPT;
DALA_API size_t dala_report_get_field_count(const dala_report *report) DALA_NOEXCEPT;
/* Fields are in key order. Index out of range: NULL / 0. */
DALA_API const char *dala_report_get_field_key(const dala_report *report, size_t index) DALA_NOEXCEPT;
DALA_API dala_field_type dala_report_get_field_type(const dala_report *report, size_t index) DALA_NOEXCEPT;
/* Typed reads by key, on the thread using the report: DALA_ERR_NOT_FOUND when absent, DALA_ERR_STATE when of another type. Strings
   stay valid while the handle lives and is not changed. */
DALA_API dala_status dala_report_get_text(const dala_report *report, const char *key, const char **out_value,
                                          dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_get_integer(const dala_report *report, const char *key, int64_t *out_value,
                                             dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_get_decimal(const dala_report *report, const char *key,
                                             const char **out_value, dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_get_boolean(const dala_report *report, const char *key, int *out_value,
                                             dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_get_timestamp(const dala_report *report, const char *key,
                                               int64_t *out_unix_ms, dala_error **out_error) DALA_NOEXCEPT;
DALA_API dala_status dala_report_get_geo(const dala_report *report, const char *key, dala_geo *out_value,
                                         dala_error **out_error) DALA_NOEXCEPT;
/* Fills out_people[0..min(capacity, count)) and sets *out_count to the number of people. */
DALA_API dala_status dala_report_get_people(const dala_report *report, const char *key, dala_person *out_people,
                                            size_t capacity, size_t *out_count,
                                            dala_error **out_error) DALA_NOEXCEPT;
/* The thread using the report. Sealed versions: the signing device key, the content hash (BLAKE2b-256 of the signed bytes) and the
   previous version's hash (all zero for version 1). DALA_ERR_STATE for drafts. */
DALA_API dala_status dala_report_get_seal_info(const dala_report *report, uint8_t out_device_key[32],
                                          uint8_t out_content_hash[32], uint8_t out_previous_hash[32],
                                          dala_error **out_error) DALA_NOEXCEPT;
/* The thread using the report. The whole report as a JSON object (docs/c-api.md shows it). Free with dala_string_free. */
DALA_API dala_status dala_report_to_json(const dala_report *report, char **out_json,
                                         dala_error **out_error) DALA_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------------
 * Attachments: photos, audio, video. Encrypted as they are written (no plaintext on disk), each under its
 * own key kept in the store's database; sealed into the report; uploaded in verified, resumable chunks.
 * Free every writer and reader before closing their store.
 * ------------------------------------------------------------------------------------------------- */

typedef struct dala_attachment_id {
    uint8_t bytes[16];
} dala_attachment_id;

/* Any thread. 32 lowercase hex characters and a NUL. */
DALA_API void dala_attachment_id_to_string(const dala_attachment_id *id, char out[33]) DALA_NOEXCEPT;
/* Any thread. */
DALA_API dala_status dala_attachment_id_parse(const char *text, dala_attachment_id *out_id,
                                              dala_error **out_error) DALA_NOEXCEPT;

typedef struct dala_attachment_info {
    dala_attachment_id id;
    uint32_t version;              /* the draft version it was added to; later versions carry it on */
    const char *mime_type;         /* valid while the list lives */
    uint64_t size;                 /* plaintext bytes */
    uint64_t ciphertext_size;      /* bytes of the encrypted file (what is uploaded) */
    uint8_t plaintext_hash[32];    /* BLAKE2b-256 */
    uint8_t ciphertext_hash[32];   /* chunk-tree root (docs/protocol.md) */
    int64_t created_ms;
} dala_attachment_info;

/* A capture in progress. Use from one thread at a time. */
typedef struct dala_attachment_writer dala_attachment_writer;

/* Any thread. Starts an attachment of the report's draft (the latest version must be a draft:
   DALA_ERR_STATE otherwise). mime_type looks like "video/mp4". */
DALA_API dala_status dala_attachment_writer_open(dala_store *store, const dala_report_id *report,
                                                 const char *mime_type, dala_attachment_writer **out_writer,
                                                 dala_error **out_error) DALA_NOEXCEPT;
/* The writer's thread. Encrypts and writes size bytes (any amount, e.g. one camera buffer). */
DALA_API dala_status dala_attachment_writer_write(dala_attachment_writer *writer, const uint8_t *data, size_t size,
                                                  dala_error **out_error) DALA_NOEXCEPT;
/* The writer's thread. Ends the capture, makes the file durable and records it in the draft. After it (success or not) the
   writer only accepts dala_attachment_writer_free. */
DALA_API dala_status dala_attachment_writer_finish(dala_attachment_writer *writer, dala_attachment_id *out_id,
                                                   dala_error **out_error) DALA_NOEXCEPT;
/* The writer's thread, once no other call uses it. An unfinished capture is discarded (its file removed). Accepts NULL. */
DALA_API void dala_attachment_writer_free(dala_attachment_writer *writer) DALA_NOEXCEPT;

/* Any thread. Streams an existing file into a new attachment of the draft (never read whole). */
DALA_API dala_status dala_attachment_import_file(dala_store *store, const dala_report_id *report, const char *path,
                                                 const char *mime_type, dala_attachment_id *out_id,
                                                 dala_error **out_error) DALA_NOEXCEPT;

/* Reads an attachment back, decrypting as it goes. Use from one thread at a time. */
typedef struct dala_attachment_reader dala_attachment_reader;

/* Any thread. DALA_ERR_NOT_FOUND when the attachment is unknown or was deleted after delivery. */
DALA_API dala_status dala_attachment_reader_open(dala_store *store, const dala_attachment_id *id,
                                                 dala_attachment_reader **out_reader,
                                                 dala_error **out_error) DALA_NOEXCEPT;
/* The reader's thread. Fills up to capacity bytes; *out_size 0 means the end was reached and size and hash verified.
   DALA_ERR_VERIFY when the file was truncated, reordered or altered. */
DALA_API dala_status dala_attachment_reader_read(dala_attachment_reader *reader, uint8_t *buffer, size_t capacity,
                                                 size_t *out_size, dala_error **out_error) DALA_NOEXCEPT;
/* The reader's thread, once no other call uses it. Accepts NULL. */
DALA_API void dala_attachment_reader_free(dala_attachment_reader *reader) DALA_NOEXCEPT;

/* Any thread. Removes an attachment of the draft (sealed ones stay: DALA_ERR_NOT_FOUND). */
DALA_API dala_status dala_attachment_remove(dala_store *store, const dala_attachment_id *id,
                                            dala_error **out_error) DALA_NOEXCEPT;

/* Not thread-safe; one thread at a time. */
typedef struct dala_attachment_list dala_attachment_list;
/* Any thread. The attachments of the report's latest version, oldest first. */
DALA_API dala_status dala_store_list_attachments(dala_store *store, const dala_report_id *report,
                                                 dala_attachment_list **out_list,
                                                 dala_error **out_error) DALA_NOEXCEPT;
/* The list's thread (one at a time). count accepts NULL (0); get refuses an index out of range; free
   accepts NULL and must be the last call. */
DALA_API size_t dala_attachment_list_count(const dala_attachment_list *list) DALA_NOEXCEPT;
DALA_API dala_status dala_attachment_list_get(const dala_attachment_list *list, size_t index,
                                              dala_attachment_info *out_info, dala_error **out_error) DALA_NOEXCEPT;
DALA_API void dala_attachment_list_free(dala_attachment_list *list) DALA_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------------
 * Listing
 * ------------------------------------------------------------------------------------------------- */

typedef struct dala_report_info {
    dala_report_id id;
    uint32_t version;          /* the latest version */
    dala_report_state state;   /* of the latest version */
    int64_t created_ms;        /* when version 1 was created */
    int64_t updated_ms;        /* last change of the latest version */
    const char *form;          /* "name/version"; valid while the list lives */
} dala_report_info;

/* Not thread-safe; one thread at a time. */
typedef struct dala_report_list dala_report_list;

/* Any thread. Every report's latest version, newest first. */
DALA_API dala_status dala_store_list_reports(dala_store *store, dala_report_list **out_list,
                                             dala_error **out_error) DALA_NOEXCEPT;

/* Which reports a page lists (dala_store_list_reports_page). */
typedef struct dala_report_list_options {
    uint32_t limit;     /* the most reports on the page, 1 to 1000; default 50 */
    const char *after;  /* NULL (default): from the newest; else the cursor the page before returned
                           (dala_report_list_next), passed back unchanged */
    uint32_t states;    /* 0 (default): any; else reports whose latest version is in one of these:
                           DALA_REPORT_STATE_BIT(DALA_REPORT_DRAFT) | ... */
    const char *form;   /* NULL or "" (default): any; "name": every version of that form; "name/version": that one */
} dala_report_list_options;
#define DALA_REPORT_STATE_BIT(state) (1u << (unsigned)(state))

/* Any thread. Sets every field to its default. */
DALA_API void dala_report_list_options_init(dala_report_list_options *options) DALA_NOEXCEPT;
/* Any thread. A page of the reports' latest versions, newest first, by (created_ms, report id): a report
   keeps its place through all its versions, so paging while reports are edited neither skips nor repeats
   one; a report created later is on no later page (unless in the same millisecond as the cursor, or after
   the device clock was set back). options NULL: the defaults; its strings are read during the call only.
   DALA_ERR_INVALID_ARGUMENT for a limit of 0 or over 1000, a cursor that is not the 48 hex digits a page
   returned, a state bit outside DALA_REPORT_STATE_BIT(DALA_REPORT_DRAFT .. DALA_REPORT_REJECTED) or a
   malformed form. Past the end: an empty page. Unfiltered, a page costs the same however many reports the
   store holds; a state filter passes over the reports in other states, and costs what it reads. */
DALA_API dala_status dala_store_list_reports_page(dala_store *store, const dala_report_list_options *options,
                                                  dala_report_list **out_list, dala_error **out_error) DALA_NOEXCEPT;
/* The list's thread. The cursor to pass as `after` for the next page; NULL when no more reports match
   (and always for dala_store_list_reports). Valid while the list lives. */
DALA_API const char *dala_report_list_next(const dala_report_list *list) DALA_NOEXCEPT;
/* The list's thread (one at a time). count accepts NULL (0); get refuses an index out of range; free
   accepts NULL and must be the last call. */
DALA_API size_t dala_report_list_count(const dala_report_list *list) DALA_NOEXCEPT;
/* DALA_ERR_INVALID_ARGUMENT when index is out of range. */
DALA_API dala_status dala_report_list_get(const dala_report_list *list, size_t index, dala_report_info *out_info,
                                          dala_error **out_error) DALA_NOEXCEPT;
DALA_API void dala_report_list_free(dala_report_list *list) DALA_NOEXCEPT;
/* Any thread. "draft", "sealed", "queued", "delivered", "rejected"; "unknown" otherwise. */
DALA_API const char *dala_report_state_name(dala_report_state state) DALA_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------------
 * Outbox: a durable queue per destination, driven by the sync engine
 * ------------------------------------------------------------------------------------------------- */

typedef struct dala_outbox_stats {
    uint64_t pending;
    uint64_t in_flight;
    uint64_t delivered;
    uint64_t rejected;
    int64_t next_attempt_ms;   /* earliest pending retry time (Unix ms), 0 when nothing waits */
} dala_outbox_stats;

/* Any thread. Counts of the destination's outbox (a destination is a joined server: dala_server_info). */
DALA_API dala_status dala_outbox_get_stats(dala_store *store, const char *destination,
                                           dala_outbox_stats *out_stats, dala_error **out_error) DALA_NOEXCEPT;
/* ---------------------------------------------------------------------------------------------------
 * Delivery: joining an organisation's server and syncing (docs/protocol.md)
 * ------------------------------------------------------------------------------------------------- */

typedef struct dala_join_options {
    /* 1: seal every report this store already holds to the organisation as well (the user confirmed that
       this organisation may have them). Default 0: it gets only what is sealed from now on. Reports queued
       for a server joined with a Dala 0.1 invite reach their organisation this way. */
    int include_existing;
} dala_join_options;

/* Any thread. Sets every field to its default. */
DALA_API void dala_join_options_init(dala_join_options *options) DALA_NOEXCEPT;

/* Any thread. Joins the organisation server named by an invite ("DALA2-..."), which the organisation's root
   key signed: records the server's addresses, its key (answers and receipts are verified against it) and
   the organisation's recipient keys. Works offline; the device enrols at the first contact. The destination
   is the organisation's ("org-" and 16 hex digits of its root key): another invite of the same organisation
   updates its server; an invite of another root is another organisation. Show the user the organisation's
   name and fingerprint (dala_server_info) to compare with the organisation's own. Sets *out_destination
   (free with dala_string_free); may be NULL. options may be NULL (defaults).
   DALA_ERR_VERIFY: the invite was altered or names a server its organisation does not authorise;
   DALA_ERR_STATE: it has expired; DALA_ERR_INVALID_ARGUMENT: not an invite, or a Dala 0.1 invite. */
DALA_API dala_status dala_store_join(dala_store *store, const char *invite, const dala_join_options *options,
                                     char **out_destination, dala_error **out_error) DALA_NOEXCEPT;

typedef struct dala_server_info {
    const char *destination;   /* valid while the list lives */
    const char *organisation;  /* the organisation's name (from its signed statement) */
    const char *url;           /* the first address */
    uint8_t server_key[32];
    int enrolled;
    const char *last_error;    /* "" when the last contact went well */
    const char *fingerprint;   /* of the organisation's root key: 6 groups of 5 digits; "" for a 0.1 server */
    uint8_t organisation_key[32];  /* the root key; all zero for a server joined with a 0.1 invite */
} dala_server_info;

typedef struct dala_server_list dala_server_list;
/* Any thread. The servers this store delivers to. */
DALA_API dala_status dala_store_list_servers(dala_store *store, dala_server_list **out_list,
                                             dala_error **out_error) DALA_NOEXCEPT;
/* The list's thread (one at a time). count accepts NULL (0); get refuses an index out of range; free
   accepts NULL and must be the last call. */
DALA_API size_t dala_server_list_count(const dala_server_list *list) DALA_NOEXCEPT;
DALA_API dala_status dala_server_list_get(const dala_server_list *list, size_t index, dala_server_info *out_info,
                                          dala_error **out_error) DALA_NOEXCEPT;
DALA_API void dala_server_list_free(dala_server_list *list) DALA_NOEXCEPT;

/* An app's own transport (iOS background URLSession, OkHttp) fills the response with this. */
typedef struct dala_http_response dala_http_response;
/* The thread the library called the transport on, before the transport returns. Copies body. Call once per
   request. */
DALA_API void dala_http_response_set(dala_http_response *response, int http_status, const uint8_t *body,
                                     size_t body_size) DALA_NOEXCEPT;

/* POSTs body (Content-Type application/x-protobuf) to url and fills response. Return DALA_OK when any HTTP
   answer came back (even 5xx), or DALA_ERR_IO when the server could not be reached. tls_pin (may be empty)
   is the SHA-256 of the server certificate's SubjectPublicKeyInfo that the invite pins. Called on the thread
   that called dala_sync_run_once. */
typedef dala_status (*dala_transport_post_fn)(void *context, const char *url, const uint8_t *body,
                                              size_t body_size, int64_t timeout_ms, const uint8_t *tls_pin,
                                              size_t tls_pin_size, dala_http_response *response);

/* Attachment uploads. POSTs to url with the headers "Authorization: <request_header>" and "Content-Type:
   application/octet-stream"; the body is bytes [offset, offset + length) of the file at file_path, sent as
   they are (an iOS background upload can send the file directly; for a range, a copy of that range). Same
   return rules and thread as dala_transport_post_fn. */
typedef dala_status (*dala_transport_upload_fn)(void *context, const char *url, const char *request_header,
                                                const char *file_path, uint64_t offset, uint64_t length,
                                                int64_t timeout_ms, const uint8_t *tls_pin, size_t tls_pin_size,
                                                dala_http_response *response);

typedef struct dala_sync_progress {
    const char *destination;
    uint64_t delivered;        /* in this run */
    uint64_t rejected;
    uint64_t remaining;        /* pending + in flight for this destination */
    uint64_t upload_done;      /* attachment bytes the server holds, of the reports uploading in this run */
    uint64_t upload_total;     /* their total */
} dala_sync_progress;

/* Called on the thread that called dala_sync_run_once, after each request. Must not call back into the
   same store's sync. */
typedef void (*dala_progress_fn)(void *context, const dala_sync_progress *progress);

typedef struct dala_sync_options {
    int64_t timeout_ms;                   /* run_once returns by then; default 30000 */
    dala_transport_post_fn transport;     /* NULL: the built-in HTTP/HTTPS transport (DALA_ERR_STATE from a
                                             library built without it, DALA_HTTP_TRANSPORT=OFF) */
    void *transport_context;
    dala_progress_fn progress;            /* may be NULL */
    void *progress_context;
    dala_transport_upload_fn transport_upload;  /* with an app transport: how it uploads attachments
                                                  (NULL: reports with attachments wait, with an error) */
    /* The built-in transport only: every connection through this SOCKS5 proxy, "socks5h://HOST:PORT"
       (Orbot, or Tor in the app: socks5h://127.0.0.1:9050). Server names are resolved by the proxy, never
       locally. NULL: direct connections, and an .onion address is refused (never looked up).
       DALA_ERR_INVALID_ARGUMENT for a malformed URL, or with an app transport. */
    const char *proxy_url;
    /* dala_sync_run_once only: a token another thread may trigger to stop the run (dala_sync_cancel_*).
       NULL: the run ends by itself. A session has its own (dala_sync_session_cancel): DALA_ERR_INVALID_ARGUMENT
       for a token given to dala_sync_session_start. */
    struct dala_sync_cancel *cancel;
} dala_sync_options;

/* Any thread. */
DALA_API void dala_sync_options_init(dala_sync_options *options) DALA_NOEXCEPT;

typedef struct dala_sync_result {
    uint64_t delivered;        /* receipts verified and kept in this run */
    uint64_t rejected;         /* refused for good by a server in this run */
    uint64_t remaining;        /* still queued: for a later run (offline, backoff, server down) */
    int unreachable;           /* 1 when some server could not be reached */
} dala_sync_result;

/* Any thread; one run per store handle at a time (a second call waits for the first to end). Sends what is due to every joined server until nothing is
   due, the timeout passes, or a server cannot be reached (for OS background schedulers: give it the
   time the OS grants). No store lock is held during network I/O. A receipt counts only if a log head the
   server key from the invite signed holds it (docs/protocol.md, "Receipts are proven by the log"); then
   the report is marked delivered. */
DALA_API dala_status dala_sync_run_once(dala_store *store, const dala_sync_options *options,
                                        dala_sync_result *out_result, dala_error **out_error) DALA_NOEXCEPT;
/* Stopping a dala_sync_run_once from another thread: a "Stop" button, a background task the OS is about to
   end (BGTask's expiration handler, WorkManager's onStopped), Swift Task cancellation, Java's Future.cancel.
   Create a token, put it in dala_sync_options.cancel, trigger it from any thread. The run then stops
   promptly: a request of the built-in transport in flight is cut off (an app transport's request in flight
   finishes first), nothing more is sent, and run_once returns DALA_OK with what it recorded. Nothing is
   lost: what was not acknowledged stays queued and a later run sends it again (requests are idempotent;
   an upload resumes where the server's signed answer says it stopped). A request cut off by the token
   counts as never sent: no attempt, no backoff, no error recorded; the next run sends it at once. A token
   triggered before the run makes it send nothing. A token serves one run (DALA_ERR_INVALID_ARGUMENT for a
   second): create another for the next. */
typedef struct dala_sync_cancel dala_sync_cancel;
/* Any thread. */
DALA_API dala_status dala_sync_cancel_create(dala_sync_cancel **out_cancel, dala_error **out_error) DALA_NOEXCEPT;
/* Any thread, any number of times (also before the run starts, or after it ended). Accepts NULL. */
DALA_API void dala_sync_cancel_trigger(dala_sync_cancel *cancel) DALA_NOEXCEPT;
/* Any thread, once the run that was given the token has returned and no thread can still trigger it.
   Accepts NULL. */
DALA_API void dala_sync_cancel_free(dala_sync_cancel *cancel) DALA_NOEXCEPT;

/* Any thread. Connectivity is back (or the user asked to sync now): reports that waited only because no
   server could be reached are due at once, without waiting out their backoff. Call before run_once. */
DALA_API dala_status dala_store_notify_online(dala_store *store, dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. The user asked to send now ("Send now" in the app): every queued report is due at once,
   whatever its backoff (a report that failed on a garbled answer, say, waits for nothing). Not for
   automatic retries: backoff protects a struggling server. Call before run_once. */
DALA_API dala_status dala_store_retry_now(dala_store *store, dala_error **out_error) DALA_NOEXCEPT;

/* Background mode: a thread of the session's own runs the sync at start, whenever the app calls
   dala_sync_session_notify_online, and when the earliest retry falls due. options->timeout_ms bounds each
   run; progress callbacks run on the session's thread. The store must outlive the session. */
typedef struct dala_sync_session dala_sync_session;
/* Any thread. Starts the session's thread; DALA_ERR_INVALID_ARGUMENT for a timeout_ms under 1, DALA_ERR_STATE
   without a transport from a library built without its own (DALA_HTTP_TRANSPORT=OFF), the session NULL. */
DALA_API dala_status dala_sync_session_start(dala_store *store, const dala_sync_options *options,
                                             dala_sync_session **out_session, dala_error **out_error) DALA_NOEXCEPT;
/* Any thread. Connectivity is back (or the user asked to sync now): run at once; reports that waited only
   because no server could be reached are due now. */
DALA_API void dala_sync_session_notify_online(dala_sync_session *session) DALA_NOEXCEPT;
/* Any thread. Stops a run in progress promptly. A request cut off is sent again later (requests are
   idempotent). The session keeps running and syncs again on the next notify or due retry. */
DALA_API void dala_sync_session_cancel(dala_sync_session *session) DALA_NOEXCEPT;
/* Any thread. The last finished run's result; DALA_ERR_NOT_FOUND before the first run ended. */
DALA_API dala_status dala_sync_session_get_last_result(dala_sync_session *session, dala_sync_result *out_result,
                                                   dala_error **out_error) DALA_NOEXCEPT;
/* Any thread but the session's own (not from a progress callback). Cancels, waits for the thread and
   frees. Accepts NULL. */
DALA_API void dala_sync_session_free(dala_sync_session *session) DALA_NOEXCEPT;

typedef struct dala_receipt_info {
    dala_report_id id;
    uint32_t version;
    const char *destination;   /* valid while the list lives */
    uint64_t sequence;         /* the server's sequence number */
    int64_t server_time_ms;
    int verified;              /* 1: proven under the server key from the invite (its log head, or a signature) */
    const uint8_t *receipt;    /* the complete SignedReceipt (docs/protocol.md), valid while the list lives: */
    size_t receipt_size;       /* anyone can check it, the desk cross-checks it with an export */
} dala_receipt_info;

typedef struct dala_receipt_list dala_receipt_list;
/* Any thread. Every receipt kept, oldest first. */
DALA_API dala_status dala_store_list_receipts(dala_store *store, dala_receipt_list **out_list,
                                              dala_error **out_error) DALA_NOEXCEPT;
/* The list's thread (one at a time). count accepts NULL (0); get refuses an index out of range; free
   accepts NULL and must be the last call. */
DALA_API size_t dala_receipt_list_count(const dala_receipt_list *list) DALA_NOEXCEPT;
DALA_API dala_status dala_receipt_list_get(const dala_receipt_list *list, size_t index, dala_receipt_info *out_info,
                                           dala_error **out_error) DALA_NOEXCEPT;
DALA_API void dala_receipt_list_free(dala_receipt_list *list) DALA_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* DALA_DALA_H */
