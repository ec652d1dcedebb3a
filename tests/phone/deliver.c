/* A phone built for another architecture (arm64, armhf; run under qemu-user) delivers to a dala-server built
   for this machine: tests/phone/cross_delivery_test.py checks at the desk what arrived. Every value below is
   one that a size, byte-order or time_t assumption would change on its way: the driver expects exactly them.

       dala_phone_deliver STORE_DIR INVITE ATTACHMENT_FILE
   Prints "report <id>", then "receipts <n> verified <m>". Exit 0 once both versions hold verified receipts. */
#define _POSIX_C_SOURCE 200809L
#include <dala/dala.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                                   \
    do {                                                                                              \
        dala_status st_ = (call);                                                                     \
        if (st_ != DALA_OK) {                                                                         \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, dala_status_name(st_));                 \
            return 1;                                                                                 \
        }                                                                                             \
    } while (0)

int main(int argc, char **argv) {
    uint8_t key[32];
    dala_credential cred;
    dala_store *store = NULL;
    dala_report *report = NULL;
    dala_report_id id;
    dala_attachment_id attachment;
    char text[33];
    dala_sync_options sync;
    dala_sync_result result;
    dala_receipt_list *receipts = NULL;
    size_t i, verified = 0;
    int round;
    /* Beyond 2038 (a 32-bit time_t), the extremes of int64, and values whose bytes are not symmetric. */
    const dala_geo where = {43.238949, 76.889709, 12.5};
    const dala_geo location = {-33.868820, 151.209295, 0};
    const dala_person people[2] = {{"Айгерим Ж.", "detained"}, {"Nurlan K.", NULL}};

    if (argc != 4) {
        fprintf(stderr, "usage: %s STORE_DIR INVITE ATTACHMENT_FILE\n", argv[0]);
        return 2;
    }
    memset(key, 0x5a, sizeof key);
    memset(&cred, 0, sizeof cred);
    cred.kind = DALA_CREDENTIAL_RAW_KEY;
    cred.bytes = key;
    cred.length = sizeof key;
    CHECK(dala_store_create(argv[1], &cred, NULL, &store, NULL));
    CHECK(dala_store_join(store, argv[2], NULL, NULL, NULL));

    CHECK(dala_report_create(store, "detention/1", &report, NULL));
    CHECK(dala_report_set_text(report, "place", "Алматы, Republic Square", NULL));
    CHECK(dala_report_set_integer(report, "count_min", INT64_MIN, NULL));
    CHECK(dala_report_set_integer(report, "count_max", INT64_MAX, NULL));
    CHECK(dala_report_set_integer(report, "detained", 0x01020304050607LL, NULL));
    CHECK(dala_report_set_decimal(report, "fine", "-12345678901234567.891", NULL));
    CHECK(dala_report_set_boolean(report, "released", 0, NULL));
    CHECK(dala_report_set_timestamp(report, "seen", 4102444800123LL, NULL));  /* 2100-01-01T00:00:00.123Z */
    CHECK(dala_report_set_timestamp(report, "before", -86400000LL, NULL));   /* 1969-12-31 */
    CHECK(dala_report_set_geo(report, "where", &where, NULL));
    CHECK(dala_report_set_people(report, "detained_people", people, 2, NULL));
    CHECK(dala_report_set_narrative(report, "Six runners stopped at 07:40; CANARY-CROSS-ARCH-7f3a.", NULL));
    CHECK(dala_report_set_location(report, &location, NULL));
    CHECK(dala_report_set_priority(report, -7, NULL));
    dala_report_get_id(report, &id);
    CHECK(dala_attachment_import_file(store, &id, argv[3], "video/mp4", &attachment, NULL));
    CHECK(dala_report_seal(store, report, NULL));
    dala_report_free(report);
    report = NULL;

    /* Version 2: one field changed. */
    CHECK(dala_report_edit(store, &id, &report, NULL));
    CHECK(dala_report_set_boolean(report, "released", 1, NULL));
    CHECK(dala_report_seal(store, report, NULL));
    dala_report_free(report);

    dala_report_id_to_string(&id, text);
    printf("report %s\n", text);
    dala_sync_options_init(&sync);
    sync.timeout_ms = 120000;  /* qemu runs the phone several times slower */
    for (round = 0; round < 10; ++round) {
        CHECK(dala_sync_run_once(store, &sync, &result, NULL));
        if (result.remaining == 0) break;
        CHECK(dala_store_retry_now(store, NULL));
    }
    CHECK(dala_store_list_receipts(store, &receipts, NULL));
    for (i = 0; i < dala_receipt_list_count(receipts); ++i) {
        dala_receipt_info info;
        CHECK(dala_receipt_list_get(receipts, i, &info, NULL));
        if (info.verified && memcmp(info.id.bytes, id.bytes, sizeof id.bytes) == 0) ++verified;
    }
    printf("receipts %zu verified %zu\n", dala_receipt_list_count(receipts), verified);
    dala_receipt_list_free(receipts);
    dala_store_close(store);
    return verified == 2 ? 0 : 1;
}
