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
} dala_desk_options;

/* Any thread. Sets every field to its default. */
DALA_API void dala_desk_options_init(dala_desk_options *options) DALA_NOEXCEPT;

/* Any thread. Writes a new organisation key file at `path` (DALA_ERR_EXISTS if anything is there): an
   X25519 secret key wrapped under `credential`. Sets out_public_key to the recipient public key, which
   dala-server init takes. options may be NULL. */
DALA_API dala_status dala_desk_keygen(const char *path, const dala_credential *credential,
                                      const dala_desk_options *options, uint8_t out_public_key[32],
                                      dala_error **out_error) DALA_NOEXCEPT;

/* A desk handle may be used from any thread. */
typedef struct dala_desk dala_desk;

/* Any thread. Opens an organisation key file. DALA_ERR_NOT_FOUND: no such file; DALA_ERR_WRONG_KEY: wrong
   credential. */
DALA_API dala_status dala_desk_open(const char *path, const dala_credential *credential, dala_desk **out_desk,
                                    dala_error **out_error) DALA_NOEXCEPT;
/* Any thread, once no other call on the desk is running. Accepts NULL. */
DALA_API void dala_desk_close(dala_desk *desk) DALA_NOEXCEPT;
/* Any thread. The recipient public key. */
DALA_API dala_status dala_desk_get_public_key(dala_desk *desk, uint8_t out_public_key[32],
                                          dala_error **out_error) DALA_NOEXCEPT;

typedef struct dala_desk_summary {
    uint64_t reports;
    uint64_t verified;   /* every check passed */
    uint64_t failed;     /* listed with their problems in OUT_DIR/summary.json */
} dala_desk_summary;

/* Any thread. Opens a dala-server export: for each report verifies the device's outer signature, decrypts,
   verifies the inner signature, the version chain (each version names the previous one's hash) and the
   server's receipt, and writes OUT_DIR/<id>-v<version>.json plus OUT_DIR/summary.json. Reports that fail a
   check are written with their problems, not dropped. */
DALA_API dala_status dala_desk_open_export(dala_desk *desk, const char *export_path, const char *out_dir,
                                           dala_desk_summary *out_summary, dala_error **out_error) DALA_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* DALA_DESK_H */
