/* The symbol clash of docs/platform.md: this program links plain libsqlite3 before libdala/SQLCipher, so the process's
   sqlite3_* symbols are plain SQLite's. Dala must refuse to create a store rather than write plaintext. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp; the header itself needs nothing beyond C99 */
#include <dala/dala.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char dir[] = "/tmp/dala-clash-XXXXXX";
    char path[64], file[128];
    const char *pass = "pw";
    dala_credential cred = {DALA_CREDENTIAL_PASSPHRASE, (const uint8_t *)"pw", 2, NULL, 0};
    dala_store_options opts;
    dala_store *store = NULL;
    dala_error *error = NULL;
    dala_status st;
    FILE *f;
    char head[16];

    (void)pass;
    if (mkdtemp(dir) == NULL) return 1;
    snprintf(path, sizeof path, "%s/store", dir);
    dala_store_options_init(&opts);
    opts.kdf_opslimit = 1;
    opts.kdf_memlimit = 8u << 20;
    st = dala_store_create(path, &cred, &opts, &store, &error);
    if (st != DALA_ERR_NOT_ENCRYPTED || store != NULL) {
        fprintf(stderr, "expected DALA_ERR_NOT_ENCRYPTED, got %s\n", dala_status_name(st));
        return 1;
    }
    printf("refused: %s\n", dala_error_message(error));
    dala_error_free(error);
    /* No plaintext database was written, and no key file marks a store as existing. */
    snprintf(file, sizeof file, "%s/dala.db", path);
    f = fopen(file, "rb");
    if (f != NULL) {
        size_t n = fread(head, 1, sizeof head, f);
        fclose(f);
        if (n == sizeof head && memcmp(head, "SQLite format 3", 16) == 0) {
            fprintf(stderr, "a plaintext database was written\n");
            return 1;
        }
    }
    snprintf(file, sizeof file, "%s/dala.key", path);
    if (access(file, F_OK) == 0) {
        fprintf(stderr, "a key file was written\n");
        return 1;
    }
    snprintf(file, sizeof file, "rm -rf '%s'", dir);
    return system(file) == 0 ? 0 : 1;
}
