/* The public header compiles as strict C99 (-pedantic -Werror) and the library works from C. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp; the header itself needs nothing beyond C99 */
#include <dala/dala.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                             \
    do {                                                                                        \
        dala_error *err_ = NULL;                                                                \
        dala_status st_ = (call);                                                               \
        (void)err_;                                                                             \
        if (st_ != DALA_OK) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, dala_status_name(st_));           \
            return 1;                                                                           \
        }                                                                                       \
    } while (0)

int main(void) {
    char dir[] = "/tmp/dala-c99-XXXXXX";
    char path[64];
    const char *pass = "c99 passphrase";
    dala_credential cred;
    dala_store_options opts;
    dala_store *store = NULL;
    dala_report *report = NULL;
    dala_report_list *list = NULL;
    dala_report_info info;
    dala_error *error = NULL;

    if (mkdtemp(dir) == NULL) return 1;
    snprintf(path, sizeof path, "%s/store", dir);
    cred.kind = DALA_CREDENTIAL_PASSPHRASE;
    cred.bytes = (const uint8_t *)pass;
    cred.length = strlen(pass);
    dala_store_options_init(&opts);
    opts.kdf_opslimit = 1;
    opts.kdf_memlimit = 8u << 20;

    CHECK(dala_store_create(path, &cred, &opts, &store, NULL));
    CHECK(dala_report_create(store, "detention/1", &report, NULL));
    CHECK(dala_report_set_text(report, "place", "Almaty", NULL));
    CHECK(dala_report_seal(store, report, NULL));
    dala_report_free(report);
    CHECK(dala_store_list_reports(store, &list, NULL));
    if (dala_report_list_count(list) != 1) return 1;
    CHECK(dala_report_list_get(list, 0, &info, NULL));
    if (info.state != DALA_REPORT_SEALED || strcmp(info.form, "detention/1") != 0) return 1;
    dala_report_list_free(list);
    dala_store_close(store);

    if (dala_store_open(path, NULL, NULL, &store, &error) != DALA_ERR_INVALID_ARGUMENT || store != NULL) return 1;
    if (dala_error_status(error) != DALA_ERR_INVALID_ARGUMENT) return 1;
    dala_error_free(error);

    CHECK(dala_store_wipe(path, NULL));
    rmdir(dir);
    puts("c99 ok");
    return 0;
}
