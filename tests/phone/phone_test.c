/* libdala as a phone app links it: the store works, and sync without an app transport is refused with
   DALA_ERR_STATE when the library was built without its own (DALA_HTTP_TRANSPORT=OFF). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <dala/dala.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                       \
    do {                                                                                  \
        dala_status st_ = (call);                                                         \
        if (st_ != DALA_OK) {                                                             \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, dala_status_name(st_));     \
            return 1;                                                                     \
        }                                                                                 \
    } while (0)

static int posts = 0;
static dala_status refuse(void *ctx, const char *url, const uint8_t *body, size_t body_length,
                          int64_t timeout_ms, const uint8_t *tls_pin, size_t tls_pin_length,
                          dala_http_response *response) {
    (void)ctx; (void)url; (void)body; (void)body_length; (void)timeout_ms; (void)tls_pin;
    (void)tls_pin_length; (void)response;
    ++posts;
    return DALA_ERR_IO;
}

int main(void) {
    char dir[] = "/tmp/dala-phone-XXXXXX";
    char path[64];
    uint8_t key[32];
    dala_credential cred;
    dala_store *store = NULL;
    dala_report *report = NULL;
    dala_report_list *list = NULL;
    dala_sync_options sync;
    dala_sync_result result;
    dala_error *error = NULL;
    dala_status st;

    if (mkdtemp(dir) == NULL) return 1;
    snprintf(path, sizeof path, "%s/store", dir);
    memset(key, 7, sizeof key);
    memset(&cred, 0, sizeof cred);
    cred.kind = DALA_CREDENTIAL_RAW_KEY;
    cred.bytes = key;
    cred.length = sizeof key;
    CHECK(dala_store_create(path, &cred, NULL, &store, NULL));
    CHECK(dala_report_create(store, "detention/1", &report, NULL));
    CHECK(dala_report_set_text(report, "place", "Oral", NULL));
    CHECK(dala_report_seal(store, report, NULL));
    dala_report_free(report);
    CHECK(dala_store_list_reports(store, &list, NULL));
    if (dala_report_list_count(list) != 1) return 1;
    dala_report_list_free(list);

    dala_sync_options_init(&sync);
    st = dala_sync_run_once(store, &sync, &result, &error);
#ifdef HAS_HTTP_TRANSPORT
    if (st != DALA_OK) {
        fprintf(stderr, "the built-in transport: %s\n", dala_status_name(st));
        return 1;
    }
#else
    if (st != DALA_ERR_STATE || error == NULL || strstr(dala_error_message(error), "transport") == NULL) {
        fprintf(stderr, "without a transport: %s (expected DALA_ERR_STATE naming the transport)\n",
                dala_status_name(st));
        return 1;
    }
    dala_error_free(error);
    error = NULL;
#endif
#ifndef HAS_HTTP_TRANSPORT
    {
        dala_sync_session *session = (dala_sync_session *)1;
        if (dala_sync_session_start(store, &sync, &session, NULL) != DALA_ERR_STATE || session != NULL) {
            fprintf(stderr, "a session without a transport was not refused\n");
            return 1;
        }
    }
#endif
    sync.transport = refuse;
    CHECK(dala_sync_run_once(store, &sync, &result, NULL));  /* nothing joined: nothing to send */
    if (posts != 0) return 1;

    dala_store_close(store);
    CHECK(dala_store_wipe(path, NULL));
    rmdir(dir);
    puts("phone library ok");
    return 0;
}
