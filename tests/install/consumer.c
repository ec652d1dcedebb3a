/* A C program built against an installed Dala (find_package and pkg-config): opens a store, seals a
   report, lists it, and checks the library's version against the header's. */
#include <dala/dala.h>
#include <dala/desk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, dala_error *e) {
    fprintf(stderr, "%s: %s\n", what, e ? dala_error_message(e) : "?");
    dala_error_free(e);
    return 1;
}

int main(int argc, char **argv) {
    dala_error *e = NULL;
    dala_store *s = NULL;
    dala_report *r = NULL;
    dala_report_list *l = NULL;
    dala_desk_options dopts;
    uint8_t key[32];
    dala_credential c;
    if (argc != 2) return 2;
    if (dala_version_number() != DALA_VERSION_NUMBER) return fail("version mismatch", NULL);
    memset(key, 7, sizeof key);
    c.kind = DALA_CREDENTIAL_RAW_KEY;
    c.bytes = key;
    c.length = sizeof key;
    if (dala_store_create(argv[1], &c, NULL, &s, &e) != DALA_OK) return fail("create", e);
    if (dala_report_create(s, "detention/1", &r, &e) != DALA_OK) return fail("report", e);
    if (dala_report_set_narrative(r, "installed", &e) != DALA_OK) return fail("narrative", e);
    if (dala_report_save(s, r, &e) != DALA_OK) return fail("save", e);
    dala_report_free(r);
    if (dala_store_list_reports(s, &l, &e) != DALA_OK) return fail("list", e);
    printf("C: Dala %s, %zu report, desk kdf %llu\n", dala_version(), dala_report_list_count(l),
           (dala_desk_options_init(&dopts), (unsigned long long)dopts.kdf_opslimit));
    dala_report_list_free(l);
    dala_store_close(s);
    return 0;
}
