// The C API as an app sees it: libdala.so and libdala_desk.so through their headers (dala.h, desk.h, and the
// header-only dala.hh for ownership), nothing else. Built with DALA_CAPI_PHONE_ONLY (tests/phone, the cross
// builds): libdala alone, without the tests that need the desk's library and a dala-server.
#include <dala/dala.h>
#include <dala/dala.hh>
#ifndef DALA_CAPI_PHONE_ONLY
#include <dala/desk.h>
#include <dala/desk.hh>
#endif
#include <gtest/gtest.h>
#include <chrono>
#include <thread>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "dala-capi-XXXXXX").string();
    path = mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

dala_credential Pass(const char* p) {
  return {DALA_CREDENTIAL_PASSPHRASE, reinterpret_cast<const uint8_t*>(p), strlen(p), nullptr, 0};
}

#ifndef DALA_CAPI_PHONE_ONLY
dala_desk_options FastDesk() {
  dala_desk_options o;
  dala_desk_options_init(&o);
  o.kdf_opslimit = 1;
  o.kdf_memlimit = 8u << 20;
  return o;
}
#endif

dala_store_options Fast() {
  dala_store_options o;
  dala_store_options_init(&o);
  o.kdf_opslimit = 1;
  o.kdf_memlimit = 8u << 20;
  return o;
}

// Keeps a call's error and reports it in assertion messages (dala.hh's ErrorSlot).
struct Err : dala::ErrorSlot {
  std::string msg() { return message(); }
};

struct StoreFixture : ::testing::Test {
  TempDir dir;
  std::string path = dir.path + "/store";
  dala_store* store = nullptr;
  dala_credential cred = Pass("correct horse");
  dala_store_options opts = Fast();
  void SetUp() override {
    Err e;
    ASSERT_EQ(dala_store_create(path.c_str(), &cred, &opts, &store, e.out()), DALA_OK) << e.msg();
  }
  void TearDown() override { dala_store_close(store); }
};

TEST(CApi, DefaultsAndNames) {
  dala_store_options o;
  std::memset(&o, 0xff, sizeof o);
  dala_store_options_init(&o);
  EXPECT_EQ(o.kdf_opslimit, 3u);
  EXPECT_EQ(o.kdf_memlimit, 64u << 20);
  EXPECT_EQ(o.delete_after_delivery, 0);
  EXPECT_STREQ(dala_status_name(DALA_ERR_WRONG_KEY), "DALA_ERR_WRONG_KEY");
  EXPECT_STREQ(dala_status_name(static_cast<dala_status>(999)), "DALA_ERR_UNKNOWN");
  EXPECT_STREQ(dala_report_state_name(DALA_REPORT_QUEUED), "queued");
  EXPECT_STRNE(dala_version(), "");
}

TEST(CApi, FreesAcceptNull) {
  dala_error_free(nullptr);
  dala_store_close(nullptr);
  dala_report_free(nullptr);
  dala_report_list_free(nullptr);
#ifndef DALA_CAPI_PHONE_ONLY
  dala_desk_close(nullptr);
#endif
  dala_string_free(nullptr);
  dala_sync_session_free(nullptr);
}

TEST(CApi, FailureSetsOutputsToNullAndErrorOptional) {
  TempDir d;
  dala_credential c = Pass("x");
  dala_store* s = reinterpret_cast<dala_store*>(0x1);
  Err e;
  EXPECT_EQ(dala_store_open((d.path + "/none").c_str(), &c, nullptr, &s, e.out()), DALA_ERR_NOT_FOUND);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(e.status(), DALA_ERR_NOT_FOUND);
  EXPECT_NE(e.msg().find("no Dala store"), std::string::npos);
  s = reinterpret_cast<dala_store*>(0x1);
  EXPECT_EQ(dala_store_open((d.path + "/none").c_str(), &c, nullptr, &s, nullptr), DALA_ERR_NOT_FOUND);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(dala_store_open(nullptr, &c, nullptr, &s, nullptr), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(dala_store_open(d.path.c_str(), nullptr, nullptr, &s, nullptr), DALA_ERR_INVALID_ARGUMENT);
  dala_credential empty = {DALA_CREDENTIAL_PASSPHRASE, nullptr, 0, nullptr, 0};
  EXPECT_EQ(dala_store_create(d.path.c_str(), &empty, nullptr, &s, nullptr), DALA_ERR_INVALID_ARGUMENT);
  dala_credential bogus = {static_cast<dala_credential_kind>(7), reinterpret_cast<const uint8_t*>("k"), 1, nullptr, 0};
  EXPECT_EQ(dala_store_create(d.path.c_str(), &bogus, nullptr, &s, nullptr), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(s, nullptr);
}

TEST_F(StoreFixture, ReportLifecycleThroughTheCApi) {
  dala_report* r = nullptr;
  Err e;
  ASSERT_EQ(dala_report_create(store, "detention/1", &r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(dala_report_get_state(r), DALA_REPORT_DRAFT);
  EXPECT_STREQ(dala_report_get_form(r), "detention/1");
  ASSERT_EQ(dala_report_set_text(r, "place", "Oral", e.out()), DALA_OK);
  ASSERT_EQ(dala_report_set_integer(r, "hours", 3, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_set_decimal(r, "fine", "12.50", e.out()), DALA_OK);
  ASSERT_EQ(dala_report_set_boolean(r, "released", 1, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_set_timestamp(r, "when", 1755421200000, e.out()), DALA_OK);
  dala_geo g = {51.23, 51.37, 15};
  ASSERT_EQ(dala_report_set_geo(r, "where", &g, e.out()), DALA_OK);
  dala_person people[] = {{"Roza Kariyeva", "detained"}, {"Marua Eskendirova", nullptr}};
  ASSERT_EQ(dala_report_set_people(r, "detained", people, 2, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_set_narrative(r, "Detained during a run.", e.out()), DALA_OK);
  ASSERT_EQ(dala_report_set_location(r, &g, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_seal(store, r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(dala_report_get_state(r), DALA_REPORT_SEALED);
  EXPECT_EQ(dala_report_set_text(r, "place", "x", e.out()), DALA_ERR_STATE);

  dala_report_id id;
  dala_report_get_id(r, &id);
  dala_report_free(r);
  r = nullptr;
  ASSERT_EQ(dala_report_load(store, &id, &r, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_get_field_count(r), 7u);
  EXPECT_STREQ(dala_report_get_field_key(r, 0), "detained");  // key order
  EXPECT_EQ(dala_report_get_field_type(r, 0), DALA_FIELD_PEOPLE);
  EXPECT_EQ(dala_report_get_field_key(r, 99), nullptr);
  const char* text = nullptr;
  ASSERT_EQ(dala_report_get_text(r, "place", &text, e.out()), DALA_OK);
  EXPECT_STREQ(text, "Oral");
  int64_t hours = 0;
  ASSERT_EQ(dala_report_get_integer(r, "hours", &hours, e.out()), DALA_OK);
  EXPECT_EQ(hours, 3);
  EXPECT_EQ(dala_report_get_integer(r, "place", &hours, e.out()), DALA_ERR_STATE);
  EXPECT_EQ(dala_report_get_text(r, "absent", &text, e.out()), DALA_ERR_NOT_FOUND);
  EXPECT_EQ(text, nullptr);
  dala_person out[4];
  size_t n = 0;
  ASSERT_EQ(dala_report_get_people(r, "detained", out, 4, &n, e.out()), DALA_OK);
  ASSERT_EQ(n, 2u);
  EXPECT_STREQ(out[1].name, "Marua Eskendirova");
  EXPECT_STREQ(out[1].role, "");
  dala_geo g2;
  ASSERT_EQ(dala_report_get_geo(r, "where", &g2, e.out()), DALA_OK);
  EXPECT_DOUBLE_EQ(g2.latitude, 51.23);
  uint8_t dev[32], hash[32], prev[32], mine[32];
  ASSERT_EQ(dala_report_get_seal_info(r, dev, hash, prev, e.out()), DALA_OK);
  ASSERT_EQ(dala_store_get_device_key(store, mine, e.out()), DALA_OK);
  EXPECT_EQ(std::memcmp(dev, mine, 32), 0);
  char* json = nullptr;
  ASSERT_EQ(dala_report_to_json(r, &json, e.out()), DALA_OK);
  std::string js = json;
  dala_string_free(json);
  EXPECT_NE(js.find("\"state\":\"sealed\""), std::string::npos);
  EXPECT_NE(js.find("\"Roza Kariyeva\""), std::string::npos);
  dala_report_free(r);

  // A new version through edit, linked by hash.
  ASSERT_EQ(dala_report_edit(store, &id, &r, e.out()), DALA_OK);
  EXPECT_EQ(dala_report_get_version(r), 2u);
  ASSERT_EQ(dala_report_seal(store, r, e.out()), DALA_OK);
  uint8_t prev2[32];
  ASSERT_EQ(dala_report_get_seal_info(r, nullptr, nullptr, prev2, e.out()), DALA_OK);
  EXPECT_EQ(std::memcmp(prev2, hash, 32), 0);
  dala_report_free(r);

  dala_report_list* list = nullptr;
  ASSERT_EQ(dala_store_list_reports(store, &list, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_list_count(list), 1u);
  dala_report_info info;
  ASSERT_EQ(dala_report_list_get(list, 0, &info, e.out()), DALA_OK);
  EXPECT_EQ(info.version, 2u);
  EXPECT_EQ(info.state, DALA_REPORT_SEALED);
  EXPECT_STREQ(info.form, "detention/1");
  EXPECT_EQ(dala_report_list_get(list, 1, &info, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_report_list_free(list);
}

// Paged listing: pages of 3 walk the same list as the whole listing, newest first, each report once even
// when one is edited between pages; filters by state and form; every bad option refused.
TEST_F(StoreFixture, ListsAPageAtATime) {
  Err e;
  auto add = [&](const char* form, bool seal) {
    dala_report* r = nullptr;
    EXPECT_EQ(dala_report_create(store, form, &r, e.out()), DALA_OK) << e.msg();
    EXPECT_EQ(dala_report_save(store, r, e.out()), DALA_OK) << e.msg();
    if (seal) {
      EXPECT_EQ(dala_report_seal(store, r, e.out()), DALA_OK) << e.msg();
    }
    dala_report_id id;
    dala_report_get_id(r, &id);
    dala_report_free(r);
    return std::string(reinterpret_cast<const char*>(id.bytes), 16);
  };
  for (int i = 0; i < 4; ++i) add("detention/1", i % 2 == 0);
  for (int i = 0; i < 3; ++i) add("incident/2", false);
  add("detention/2", true);
  auto ids = [&](const dala_report_list* l) {
    std::vector<std::string> out;
    for (size_t i = 0; i < dala_report_list_count(l); ++i) {
      dala_report_info info;
      EXPECT_EQ(dala_report_list_get(l, i, &info, e.out()), DALA_OK);
      out.emplace_back(reinterpret_cast<const char*>(info.id.bytes), 16);
    }
    return out;
  };
  // Newest first: (created_ms, id) descending, checked here rather than trusted.
  auto sorted_newest_first = [&](const dala_report_list* l) {
    for (size_t i = 1; i < dala_report_list_count(l); ++i) {
      dala_report_info a, b;
      EXPECT_EQ(dala_report_list_get(l, i - 1, &a, e.out()), DALA_OK);
      EXPECT_EQ(dala_report_list_get(l, i, &b, e.out()), DALA_OK);
      if (a.created_ms != b.created_ms ? a.created_ms < b.created_ms : std::memcmp(a.id.bytes, b.id.bytes, 16) < 0)
        return false;
    }
    return true;
  };
  dala_report_list* whole = nullptr;
  ASSERT_EQ(dala_store_list_reports(store, &whole, e.out()), DALA_OK);
  const std::vector<std::string> all = ids(whole);
  EXPECT_TRUE(sorted_newest_first(whole));
  EXPECT_EQ(dala_report_list_next(whole), nullptr);
  dala_report_list_free(whole);
  ASSERT_EQ(all.size(), 8u);

  dala_report_list_options o;
  std::memset(&o, 0xff, sizeof o);
  dala_report_list_options_init(&o);
  EXPECT_EQ(o.limit, 50u);
  EXPECT_EQ(o.after, nullptr);
  EXPECT_EQ(o.states, 0u);
  EXPECT_EQ(o.form, nullptr);
  o.limit = 3;
  std::vector<std::string> walked;
  std::string cursor, newest;
  int pages = 0;
  for (;;) {
    o.after = cursor.empty() ? nullptr : cursor.c_str();
    dala_report_list* page = nullptr;
    ASSERT_EQ(dala_store_list_reports_page(store, &o, &page, e.out()), DALA_OK) << e.msg();
    auto got = ids(page);
    EXPECT_LE(got.size(), 3u);
    EXPECT_TRUE(sorted_newest_first(page));
    walked.insert(walked.end(), got.begin(), got.end());
    ++pages;
    ASSERT_LE(pages, 4) << "the pages do not end";
    if (pages == 1) {
      // Between pages: the last report of the next page gets a new version, and a new report is created.
      dala_report_id id;
      std::memcpy(id.bytes, all[5].data(), 16);
      dala_report* r = nullptr;
      ASSERT_EQ(dala_report_load(store, &id, &r, e.out()), DALA_OK);
      if (dala_report_get_state(r) == DALA_REPORT_DRAFT) {
        ASSERT_EQ(dala_report_seal(store, r, e.out()), DALA_OK) << e.msg();
      }
      dala_report_free(r);
      ASSERT_EQ(dala_report_edit(store, &id, &r, e.out()), DALA_OK) << e.msg();
      dala_report_free(r);
      std::this_thread::sleep_for(std::chrono::milliseconds(3));  // a later millisecond than every cursor
      newest = add("incident/2", false);
    }
    const char* next = dala_report_list_next(page);
    if (next == nullptr) {
      dala_report_list_free(page);
      break;
    }
    cursor = next;
    EXPECT_EQ(cursor.size(), 48u);
    dala_report_list_free(page);
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(walked, all);  // each once, in the same order, the edit and the newer report notwithstanding
  {
    dala_report_list_options top;
    dala_report_list_options_init(&top);
    top.limit = 1;
    dala_report_list* page = nullptr;
    ASSERT_EQ(dala_store_list_reports_page(store, &top, &page, e.out()), DALA_OK);
    EXPECT_EQ(ids(page), std::vector<std::string>{newest});  // the report made last comes first
    dala_report_list_free(page);
  }

  // The last page: the one report left, and no cursor after it.
  {
    dala_report_list_options first;
    dala_report_list_options_init(&first);
    dala_report_list* page = nullptr;
    ASSERT_EQ(dala_store_list_reports_page(store, nullptr, &page, e.out()), DALA_OK);  // NULL: the defaults
    EXPECT_EQ(dala_report_list_count(page), 9u);
    EXPECT_EQ(dala_report_list_next(page), nullptr);
    dala_report_list_free(page);
    first.limit = 8;
    ASSERT_EQ(dala_store_list_reports_page(store, &first, &page, e.out()), DALA_OK);
    ASSERT_NE(dala_report_list_next(page), nullptr);
    std::string last = dala_report_list_next(page);
    dala_report_list_free(page);
    first.after = last.c_str();
    ASSERT_EQ(dala_store_list_reports_page(store, &first, &page, e.out()), DALA_OK);
    EXPECT_EQ(dala_report_list_next(page), nullptr);
    auto rest = ids(page);
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0], all.back());
    dala_report_list_free(page);
  }

  // Filters, against the whole list filtered here.
  dala_report_list* final_list = nullptr;
  ASSERT_EQ(dala_store_list_reports(store, &final_list, e.out()), DALA_OK);
  auto count = [&](uint32_t states, const char* form) {
    size_t expected = 0;
    for (size_t i = 0; i < dala_report_list_count(final_list); ++i) {
      dala_report_info info;
      EXPECT_EQ(dala_report_list_get(final_list, i, &info, e.out()), DALA_OK);
      std::string f = info.form, name = f.substr(0, f.find('/'));
      std::string want = form == nullptr ? "" : form, want_name = want.substr(0, want.find('/'));
      bool form_ok = form == nullptr || (want.find('/') != std::string::npos
                                             ? name == want_name && std::stoul(f.substr(f.find('/') + 1)) ==
                                                                        std::stoul(want.substr(want.find('/') + 1))
                                             : name == want);
      if (form_ok && (states == 0 || (states & DALA_REPORT_STATE_BIT(info.state)) != 0)) ++expected;
    }
    dala_report_list_options f;
    dala_report_list_options_init(&f);
    f.limit = 1000;
    f.states = states;
    f.form = form;
    dala_report_list* page = nullptr;
    EXPECT_EQ(dala_store_list_reports_page(store, &f, &page, e.out()), DALA_OK) << e.msg();
    size_t n = dala_report_list_count(page);
    dala_report_list_free(page);
    EXPECT_EQ(n, expected) << "states " << states << " form " << (form ? form : "(any)");
    return n;
  };
  EXPECT_EQ(count(0, nullptr), 9u);
  EXPECT_EQ(count(0, "detention"), 5u);  // detention/1 x4, detention/2
  EXPECT_EQ(count(0, "detention/2"), 1u);
  EXPECT_EQ(count(0, "detention/02"), 1u);  // the same form, spelt otherwise
  EXPECT_EQ(count(0, "incident"), 4u);
  EXPECT_EQ(count(0, "incident/1"), 0u);
  EXPECT_EQ(count(0, "detent"), 0u);  // a name, not a prefix
  EXPECT_GE(count(DALA_REPORT_STATE_BIT(DALA_REPORT_SEALED), nullptr), 2u);
  EXPECT_GE(count(DALA_REPORT_STATE_BIT(DALA_REPORT_DRAFT), nullptr), 6u);
  count(DALA_REPORT_STATE_BIT(DALA_REPORT_SEALED) | DALA_REPORT_STATE_BIT(DALA_REPORT_DRAFT), "detention");
  count(DALA_REPORT_STATE_BIT(DALA_REPORT_SEALED), "detention/1");
  EXPECT_EQ(count(DALA_REPORT_STATE_BIT(DALA_REPORT_DELIVERED), nullptr), 0u);
  dala_report_list_free(final_list);

  // Refused, with the output NULL.
  auto refused = [&](dala_report_list_options bad) {
    dala_report_list* page = reinterpret_cast<dala_report_list*>(0x1);
    EXPECT_EQ(dala_store_list_reports_page(store, &bad, &page, e.out()), DALA_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(page, nullptr);
  };
  dala_report_list_options bad;
  dala_report_list_options_init(&bad);
  bad.limit = 0;
  refused(bad);
  bad.limit = 1001;
  refused(bad);
  dala_report_list_options_init(&bad);
  bad.after = "not a cursor";
  refused(bad);
  std::string short_cursor(46, '0');
  bad.after = short_cursor.c_str();
  refused(bad);
  dala_report_list_options_init(&bad);
  bad.states = 1u << 5;
  refused(bad);
  dala_report_list_options_init(&bad);
  bad.form = "Detention/1";
  refused(bad);
  bad.form = "detention/0";
  refused(bad);
  EXPECT_EQ(dala_store_list_reports_page(nullptr, nullptr, nullptr, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(dala_report_list_next(nullptr), nullptr);
}

TEST_F(StoreFixture, InvalidInputIsClear) {
  dala_report* r = nullptr;
  Err e;
  EXPECT_EQ(dala_report_create(store, "no-version", &r, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(r, nullptr);
  ASSERT_EQ(dala_report_create(store, "detention/1", &r, e.out()), DALA_OK);
  EXPECT_EQ(dala_report_set_text(r, "k", "\xff\xfe", e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_NE(e.msg().find("UTF-8"), std::string::npos);
  EXPECT_EQ(dala_report_set_text(r, "k", nullptr, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(dala_report_set_text(r, nullptr, "v", e.out()), DALA_ERR_INVALID_ARGUMENT);
  std::string big(70000, 'x');
  EXPECT_EQ(dala_report_set_text(r, "k", big.c_str(), e.out()), DALA_ERR_TOO_LARGE);
  EXPECT_EQ(e.msg().find("xxxx"), std::string::npos);  // contents never in messages
  dala_geo bad = {0, 200, 0};
  EXPECT_EQ(dala_report_set_geo(r, "g", &bad, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_person nameless = {nullptr, "x"};
  EXPECT_EQ(dala_report_set_people(r, "p", &nameless, 1, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_report_id id;
  EXPECT_EQ(dala_report_id_parse("xyz", &id, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_report_get_id(r, &id);
  EXPECT_EQ(dala_report_retry(store, &id, e.out()), DALA_ERR_NOT_FOUND);  // a draft was never rejected
  EXPECT_EQ(dala_report_retry(store, nullptr, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_report_free(r);
}

#ifndef DALA_CAPI_PHONE_ONLY  // the desk's library and a dala-server
TEST_F(StoreFixture, DeskKeysThroughTheDeskApi) {
  TempDir d;
  std::string keyfile = d.path + "/org.key";
  dala_credential desk_pass = Pass("desk passphrase");
  dala_desk_options dopts;
  dala_desk_options_init(&dopts);
  EXPECT_EQ(dopts.kdf_opslimit, 3u);
  dopts = FastDesk();
  char* identity = nullptr;
  Err e;
  ASSERT_EQ(dala_desk_keygen(keyfile.c_str(), &desk_pass, &dopts, &identity, e.out()), DALA_OK) << e.msg();
  std::string org_id = dala::TakeString(identity);
  EXPECT_EQ(org_id.rfind("DALA-ORG1-", 0), 0u);
  EXPECT_EQ(dala_desk_keygen(keyfile.c_str(), &desk_pass, &dopts, &identity, e.out()), DALA_ERR_EXISTS);
  EXPECT_EQ(identity, nullptr);
  dala::Ref<dala_desk> desk;
  dala_credential wrong = Pass("nope");
  EXPECT_EQ(dala_desk_open(keyfile.c_str(), &wrong, dala::Out(desk), e.out()), DALA_ERR_WRONG_KEY);
  EXPECT_EQ(desk, nullptr);
  EXPECT_EQ(e.msg().find("nope"), std::string::npos);
  EXPECT_EQ(dala_desk_open((d.path + "/none").c_str(), &desk_pass, dala::Out(desk), e.out()), DALA_ERR_NOT_FOUND);
  dala::Call(dala_desk_open, keyfile.c_str(), &desk_pass, dala::Out(desk));
  char* got = nullptr;
  dala::Call(dala_desk_get_identity, desk.get(), &got);
  EXPECT_EQ(dala::TakeString(got), org_id);
  dala::Call(dala_desk_get_fingerprint, desk.get(), &got);
  std::string fp = dala::TakeString(got);
  EXPECT_EQ(fp.size(), 35u);  // 6 groups of 5 digits
  // An invite needs a server key and an address; a malformed address is refused.
  dala_desk_invite_options io;
  dala_desk_invite_options_init(&io);
  EXPECT_EQ(io.uses, 1u);
  EXPECT_EQ(dala_desk_create_invite(desk.get(), &io, &got, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(got, nullptr);
  const char* bad[] = {"ftp://x"};
  io.urls = bad;
  io.url_count = 1;
  std::memset(io.server_key, 7, 32);
  EXPECT_EQ(dala_desk_create_invite(desk.get(), &io, &got, e.out()), DALA_ERR_INVALID_ARGUMENT);
  const char* good[] = {"http://127.0.0.1:9"};
  io.urls = good;
  dala::Call(dala_desk_create_invite, desk.get(), &io, &got);
  EXPECT_EQ(dala::TakeString(got).rfind("DALA2-", 0), 0u);
  EXPECT_EQ(dala_desk_create_invite(desk.get(), nullptr, &got, e.out()), DALA_ERR_INVALID_ARGUMENT);
  // dala.hh turns a failed call into dala::Error with the status and message.
  try {
    dala::Call(dala_desk_open_export, desk.get(), (d.path + "/no-export").c_str(), d.path.c_str(), nullptr,
               static_cast<dala_desk_summary*>(nullptr));
    ADD_FAILURE() << "no error";
  } catch (const dala::Error& err) {
    EXPECT_EQ(err.status(), DALA_ERR_INVALID_ARGUMENT);
  }
}

// A real organisation and server: the desk's key through the desk API, `dala-server init --organisation`
// (ctest passes its path in DALA_SERVER_BIN), and an invite to `url` signed at the desk.
std::string OrganisationInvite(const std::string& dir, const std::string& url, uint32_t uses) {
  const char* server_bin = getenv("DALA_SERVER_BIN");
  EXPECT_NE(server_bin, nullptr) << "DALA_SERVER_BIN is not set";
  if (server_bin == nullptr) return "";
  Err e;
  dala_credential dp = Pass("desk");
  dala_desk_options dopts = FastDesk();
  char* identity = nullptr;
  EXPECT_EQ(dala_desk_keygen((dir + "/org.key").c_str(), &dp, &dopts, &identity, e.out()), DALA_OK) << e.msg();
  std::string org = dala::TakeString(identity);
  std::string cmd = std::string(server_bin) + " init --data " + dir + "/srv --organisation " + org + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  char line[256] = {0};
  std::string last;
  while (p && fgets(line, sizeof line, p) != nullptr) last = line;
  if (p) pclose(p);
  last.erase(last.find_last_not_of('\n') + 1);
  EXPECT_EQ(last.size(), 64u) << last;
  dala_desk_invite_options io;
  dala_desk_invite_options_init(&io);
  for (size_t i = 0; i < 32 && last.size() == 64; ++i) io.server_key[i] = static_cast<uint8_t>(std::stoi(last.substr(2 * i, 2), nullptr, 16));
  const char* urls[] = {url.c_str()};
  io.urls = urls;
  io.url_count = 1;
  io.uses = uses;
  dala::Ref<dala_desk> desk;
  dala::Call(dala_desk_open, (dir + "/org.key").c_str(), &dp, dala::Out(desk));
  char* invite = nullptr;
  dala::Call(dala_desk_create_invite, desk.get(), &io, &invite);
  return dala::TakeString(invite);
}

// The app's own transport: what it is asked to send, and what happens when it cannot reach the server.
struct FakeNet {
  int calls = 0;
  std::string last_url;
  dala_status reach = DALA_ERR_IO;
  int http = 503;
};

dala_status FakePost(void* ctx, const char* url, const uint8_t* body, size_t size, int64_t timeout_ms,
                     const uint8_t*, size_t, dala_http_response* response) {
  auto* n = static_cast<FakeNet*>(ctx);
  ++n->calls;
  n->last_url = url;
  EXPECT_GT(size, 0u);
  EXPECT_NE(body, nullptr);
  EXPECT_GT(timeout_ms, 0);
  if (n->reach != DALA_OK) return n->reach;
  dala_http_response_set(response, n->http, nullptr, 0);
  return DALA_OK;
}

TEST_F(StoreFixture, AppTransportAndSessionsThroughTheCApi) {
  Err e;
  dala_sync_result r;
  dala_sync_options o;
  dala_sync_options_init(&o);
  EXPECT_EQ(o.timeout_ms, 30000);
  FakeNet net;
  o.transport = FakePost;
  o.transport_context = &net;
  // Not joined: nothing to do.
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(net.calls, 0);
  EXPECT_EQ(dala_store_join(store, "DALA2-not-an-invite", nullptr, nullptr, e.out()), DALA_ERR_VERIFY);
  EXPECT_EQ(dala_store_join(store, "hello", nullptr, nullptr, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(dala_store_join(store, "DALA1-a-0.1-invite", nullptr, nullptr, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_join_options jo;
  dala_join_options_init(&jo);
  EXPECT_EQ(jo.include_existing, 0);

  TempDir d;
  std::string invite = OrganisationInvite(d.path, "http://127.0.0.1:9", 1);
  char* dest = nullptr;
  ASSERT_EQ(dala_store_join(store, invite.c_str(), &jo, &dest, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(std::string(dest).rfind("org-", 0), 0u);
  dala_string_free(dest);
  dala_report* rep = nullptr;
  ASSERT_EQ(dala_report_create(store, "detention/1", &rep, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_seal(store, rep, e.out()), DALA_OK);
  EXPECT_EQ(dala_report_get_state(rep), DALA_REPORT_QUEUED);
  dala_report_free(rep);

  // Offline: the app's transport is asked to enrol first; nothing is lost.
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(net.calls, 1);
  EXPECT_EQ(net.last_url, "http://127.0.0.1:9/v2/enrol");
  EXPECT_EQ(r.unreachable, 1);
  EXPECT_EQ(r.remaining, 1u);
  EXPECT_EQ(r.delivered, 0u);
  // The server answers 503: try again later.
  net.reach = DALA_OK;
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK);
  EXPECT_EQ(net.calls, 2);
  EXPECT_EQ(r.remaining, 1u);
  dala_server_list* joined = nullptr;
  ASSERT_EQ(dala_store_list_servers(store, &joined, e.out()), DALA_OK);
  ASSERT_EQ(dala_server_list_count(joined), 1u);
  dala_server_info si;
  ASSERT_EQ(dala_server_list_get(joined, 0, &si, e.out()), DALA_OK);
  EXPECT_EQ(si.enrolled, 0);
  EXPECT_STRNE(si.last_error, "");
  dala_server_list_free(joined);
  dala_sync_session* session = reinterpret_cast<dala_sync_session*>(0x1);
  o.timeout_ms = 0;
  EXPECT_EQ(dala_sync_session_start(store, &o, &session, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(session, nullptr);
  dala_sync_session_free(nullptr);
  dala_sync_session_notify_online(nullptr);
  dala_sync_session_cancel(nullptr);
  o.timeout_ms = 1000;
  ASSERT_EQ(dala_sync_session_start(store, &o, &session, e.out()), DALA_OK);
  dala_sync_session_notify_online(session);
  for (int i = 0; i < 200 && dala_sync_session_get_last_result(session, &r, nullptr) != DALA_OK; ++i) usleep(10000);
  ASSERT_EQ(dala_sync_session_get_last_result(session, &r, e.out()), DALA_OK);
  EXPECT_EQ(r.remaining, 1u);
  EXPECT_GE(net.calls, 3);  // the session ran and used the app's transport
  dala_sync_session_free(session);
  dala_receipt_list* receipts = nullptr;
  ASSERT_EQ(dala_store_list_receipts(store, &receipts, e.out()), DALA_OK);
  EXPECT_EQ(dala_receipt_list_count(receipts), 0u);
  dala_receipt_list_free(receipts);
}

// A stop token cuts off a request of the built-in transport in flight (a server that accepts the connection
// and never answers), from another thread; the cut counts as never sent: no error recorded, no backoff.
TEST_F(StoreFixture, AStopTokenCutsOffARequestInFlight) {
  TempDir d;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(ls, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(ls, 8), 0);
  ASSERT_EQ(getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len), 0);
  std::string invite = OrganisationInvite(d.path, "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)), 1);
  Err e;
  ASSERT_EQ(dala_store_join(store, invite.c_str(), nullptr, nullptr, e.out()), DALA_OK) << e.msg();
  dala_report* rep = nullptr;
  ASSERT_EQ(dala_report_create(store, "detention/1", &rep, e.out()), DALA_OK);
  ASSERT_EQ(dala_report_seal(store, rep, e.out()), DALA_OK);
  dala_report_free(rep);
  dala_sync_cancel* stop = nullptr;
  ASSERT_EQ(dala_sync_cancel_create(&stop, e.out()), DALA_OK);
  dala_sync_options o;
  dala_sync_options_init(&o);
  o.timeout_ms = 60000;
  o.cancel = stop;
  std::thread stopper([stop] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    dala_sync_cancel_trigger(stop);
  });
  dala_sync_result r{};
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK) << e.msg();
  const auto took = std::chrono::steady_clock::now() - start;
  stopper.join();
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::seconds(10)) << "the request in flight was left to its 60 s timeout";
  EXPECT_EQ(r.remaining, 1u);
  EXPECT_EQ(r.unreachable, 0);
  dala_server_list* servers = nullptr;
  ASSERT_EQ(dala_store_list_servers(store, &servers, e.out()), DALA_OK);
  dala_server_info si;
  ASSERT_EQ(dala_server_list_get(servers, 0, &si, e.out()), DALA_OK);
  EXPECT_STREQ(si.last_error, "") << "a stop is not a failed contact";
  dala_server_list_free(servers);
  EXPECT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_ERR_INVALID_ARGUMENT) << "a token serves one run";
  dala_sync_cancel_free(stop);
  close(ls);
}

// --- Attachments through the C API, delivered by an app's own transport (here: a Python HTTP client
// standing in for OkHttp or URLSession) to a real dala-server ---

struct Forward {
  std::string tmp;     // where request bodies are written for the helper
  std::string helper;  // http_forward.py
  int posts = 0, uploads = 0;
  uint64_t uploaded = 0;
  dala_sync_cancel* stop_after_upload = nullptr;  // triggered once an upload has been answered
};

dala_status RunHelper(const std::string& cmd, dala_http_response* response) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return DALA_ERR_IO;
  char status[16] = {0};
  std::string hex;
  if (fgets(status, sizeof status, p) == nullptr) {
    pclose(p);
    return DALA_ERR_IO;
  }
  char buf[65536];
  while (fgets(buf, sizeof buf, p) != nullptr) hex += buf;
  if (pclose(p) != 0) return DALA_ERR_IO;
  while (!hex.empty() && hex.back() == '\n') hex.pop_back();
  std::string body(hex.size() / 2, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  dala_http_response_set(response, atoi(status), reinterpret_cast<const uint8_t*>(body.data()), body.size());
  return DALA_OK;
}

dala_status ForwardPost(void* ctx, const char* url, const uint8_t* body, size_t size, int64_t, const uint8_t*, size_t,
                        dala_http_response* response) {
  auto* f = static_cast<Forward*>(ctx);
  ++f->posts;
  FILE* out = fopen(f->tmp.c_str(), "wb");
  fwrite(body, 1, size, out);
  fclose(out);
  return RunHelper("python3 " + f->helper + " " + url + " application/x-protobuf " + f->tmp + " 0 " +
                       std::to_string(size),
                   response);
}

dala_status ForwardUpload(void* ctx, const char* url, const char* request_header, const char* file_path,
                          uint64_t offset, uint64_t length, int64_t, const uint8_t*, size_t,
                          dala_http_response* response) {
  auto* f = static_cast<Forward*>(ctx);
  ++f->uploads;
  f->uploaded += length;
  // The body comes straight from the encrypted file the library names (as an iOS background upload would).
  struct StopAfter {  // as a Stop button on another thread would, while this upload is in flight
    dala_sync_cancel* c;
    ~StopAfter() { dala_sync_cancel_trigger(c); }
  } stop{f->stop_after_upload};
  return RunHelper("python3 " + f->helper + " " + url + " application/octet-stream " + file_path + " " +
                       std::to_string(offset) + " " + std::to_string(length) + " 'Authorization: " +
                       request_header + "'",
                   response);
}

TEST_F(StoreFixture, AttachmentsThroughTheCApiAndAnAppTransport) {
  Err e;
  dala_report* rep = nullptr;
  ASSERT_EQ(dala_report_create(store, "detention/1", &rep, e.out()), DALA_OK);
  dala_report_id id;
  dala_report_get_id(rep, &id);
  // Capture in camera-sized buffers; read back verified.
  std::string clip;
  for (uint32_t i = 0; i < 300000; ++i) clip += static_cast<char>((i * 7919u) >> 3);
  dala_attachment_writer* w = nullptr;
  ASSERT_EQ(dala_attachment_writer_open(store, &id, "video/mp4", &w, e.out()), DALA_OK) << e.msg();
  for (size_t off = 0; off < clip.size(); off += 40000)
    ASSERT_EQ(dala_attachment_writer_write(w, reinterpret_cast<const uint8_t*>(clip.data()) + off,
                                           std::min<size_t>(40000, clip.size() - off), e.out()), DALA_OK);
  dala_attachment_id aid;
  ASSERT_EQ(dala_attachment_writer_finish(w, &aid, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(dala_attachment_writer_finish(w, &aid, e.out()), DALA_ERR_STATE);
  EXPECT_EQ(dala_attachment_writer_write(w, reinterpret_cast<const uint8_t*>("x"), 1, e.out()), DALA_ERR_STATE);
  dala_attachment_writer_free(w);
  dala_attachment_reader* rd = nullptr;
  ASSERT_EQ(dala_attachment_reader_open(store, &aid, &rd, e.out()), DALA_OK) << e.msg();
  std::string back;
  uint8_t buf[5000];
  for (size_t n = 1; n > 0;) {
    ASSERT_EQ(dala_attachment_reader_read(rd, buf, sizeof buf, &n, e.out()), DALA_OK) << e.msg();
    back.append(reinterpret_cast<char*>(buf), n);
  }
  dala_attachment_reader_free(rd);
  EXPECT_EQ(back, clip);
  // An abandoned capture and a removed attachment leave only the clip.
  ASSERT_EQ(dala_attachment_writer_open(store, &id, "audio/ogg", &w, e.out()), DALA_OK);
  ASSERT_EQ(dala_attachment_writer_write(w, reinterpret_cast<const uint8_t*>("abc"), 3, e.out()), DALA_OK);
  dala_attachment_writer_free(w);
  std::string photo = dir.path + "/photo.jpg";
  { FILE* f = fopen(photo.c_str(), "wb"); fputs("not really a jpeg", f); fclose(f); }
  dala_attachment_id pid;
  ASSERT_EQ(dala_attachment_import_file(store, &id, photo.c_str(), "image/jpeg", &pid, e.out()), DALA_OK) << e.msg();
  dala_attachment_list* list = nullptr;
  ASSERT_EQ(dala_store_list_attachments(store, &id, &list, e.out()), DALA_OK);
  ASSERT_EQ(dala_attachment_list_count(list), 2u);
  dala_attachment_info info;
  ASSERT_EQ(dala_attachment_list_get(list, 0, &info, e.out()), DALA_OK);
  EXPECT_STREQ(info.mime_type, "video/mp4");
  EXPECT_EQ(info.size, clip.size());
  EXPECT_GT(info.ciphertext_size, info.size);
  EXPECT_EQ(dala_attachment_list_get(list, 2, &info, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_attachment_list_free(list);
  ASSERT_EQ(dala_attachment_remove(store, &pid, e.out()), DALA_OK);
  EXPECT_EQ(dala_attachment_remove(store, &pid, e.out()), DALA_ERR_NOT_FOUND);
  char text[33];
  dala_attachment_id_to_string(&aid, text);
  dala_attachment_id parsed;
  ASSERT_EQ(dala_attachment_id_parse(text, &parsed, e.out()), DALA_OK);
  EXPECT_EQ(0, memcmp(parsed.bytes, aid.bytes, 16));
  // Bad input: clear errors, outputs NULL.
  w = reinterpret_cast<dala_attachment_writer*>(0x1);
  EXPECT_EQ(dala_attachment_writer_open(store, &id, nullptr, &w, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w, nullptr);
  EXPECT_EQ(dala_attachment_writer_open(store, &id, "not a mime", &w, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(dala_attachment_import_file(store, &id, (dir.path + "/missing.mp4").c_str(), "video/mp4", &pid, e.out()),
            DALA_ERR_NOT_FOUND);
  EXPECT_EQ(dala_attachment_id_parse("xyz", &parsed, e.out()), DALA_ERR_INVALID_ARGUMENT);
  dala_attachment_reader_free(nullptr);
  dala_attachment_writer_free(nullptr);
  dala_attachment_list_free(nullptr);

  // Deliver through a real dala-server, over the app's own transport.
  const char* server_bin = getenv("DALA_SERVER_BIN");
  ASSERT_NE(server_bin, nullptr);
  TempDir d;
  std::string data = d.path + "/srv";
  int port = 0;
  {  // a free loopback port
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
  }
  std::string url = "http://127.0.0.1:" + std::to_string(port);
  std::string invite = OrganisationInvite(d.path, url, 10);
  ASSERT_EQ(dala_store_join(store, invite.c_str(), nullptr, nullptr, e.out()), DALA_OK) << e.msg();
  FILE* p = nullptr;
  char line[4096] = {0};
  dala_credential dp = Pass("desk");
  ASSERT_EQ(dala_report_seal(store, rep, e.out()), DALA_OK) << e.msg();
  dala_report_free(rep);
  std::string run = std::string(server_bin) + " run --data " + data + " --listen 127.0.0.1:" + std::to_string(port) +
                    " --quiet > " + d.path + "/server.out 2>&1 & echo $!";
  p = popen(run.c_str(), "r");
  ASSERT_NE(fgets(line, sizeof line, p), nullptr);
  pclose(p);
  struct Killer {  // stops the server and waits until it has exited (it is not our child: poll)
    int pid;
    ~Killer() {
      if (pid <= 0) return;
      kill(pid, SIGTERM);
      for (int i = 0; i < 500 && kill(pid, 0) == 0; ++i) usleep(10000);
    }
  } server{atoi(line)};
  for (int i = 0; i < 200; ++i) {
    FILE* f = fopen((d.path + "/server.out").c_str(), "r");
    char l[256] = {0};
    bool up = f != nullptr && fgets(l, sizeof l, f) != nullptr;
    if (f) fclose(f);
    if (up) break;
    usleep(25000);
  }
  Forward fw{d.path + "/body", std::string(DALA_TEST_SOURCE_DIR) + "/capi/http_forward.py"};
  dala_sync_options o;
  dala_sync_options_init(&o);
  o.transport = ForwardPost;
  o.transport_context = &fw;
  o.timeout_ms = 60000;
  dala_sync_result r;
  // Without an upload function the report waits, with a clear error; nothing is lost.
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(r.remaining, 1u);
  EXPECT_EQ(fw.uploads, 0);
  o.transport_upload = ForwardUpload;
  ASSERT_EQ(dala_store_notify_online(store, e.out()), DALA_OK);
  // A run stopped before it starts sends nothing.
  dala_sync_cancel* stop = nullptr;
  EXPECT_EQ(dala_sync_cancel_create(nullptr, e.out()), DALA_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(dala_sync_cancel_create(&stop, e.out()), DALA_OK);
  dala_sync_cancel_trigger(stop);
  dala_sync_cancel_trigger(stop);  // any number of times
  o.cancel = stop;
  const int posts_before = fw.posts;
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(fw.posts, posts_before);
  EXPECT_EQ(fw.uploads, 0);
  EXPECT_EQ(r.remaining, 1u);
  dala_sync_cancel_free(stop);
  // Stopped while its first upload is in flight: that upload ends, nothing more is sent, nothing is lost.
  ASSERT_EQ(dala_sync_cancel_create(&stop, e.out()), DALA_OK);
  o.cancel = stop;
  fw.stop_after_upload = stop;
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(fw.uploads, 1);
  EXPECT_EQ(r.delivered, 0u);
  EXPECT_EQ(r.remaining, 1u);
  fw.stop_after_upload = nullptr;
  dala_sync_cancel_free(stop);
  o.cancel = nullptr;
  dala_sync_session* refused = reinterpret_cast<dala_sync_session*>(0x1);
  dala_sync_cancel* unused = nullptr;
  ASSERT_EQ(dala_sync_cancel_create(&unused, e.out()), DALA_OK);
  o.cancel = unused;  // a session is stopped its own way
  EXPECT_EQ(dala_sync_session_start(store, &o, &refused, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(refused, nullptr);
  o.cancel = nullptr;
  dala_sync_cancel_free(unused);
  dala_sync_cancel_free(nullptr);
  dala_sync_cancel_trigger(nullptr);
  // The next run finishes: the upload goes on from where the server holds it.
  ASSERT_EQ(dala_sync_run_once(store, &o, &r, e.out()), DALA_OK) << e.msg();
  EXPECT_EQ(r.delivered, 1u);
  EXPECT_EQ(r.remaining, 0u);
  EXPECT_GE(fw.uploads, 1);
  dala_attachment_list* l2 = nullptr;
  ASSERT_EQ(dala_store_list_attachments(store, &id, &l2, e.out()), DALA_OK);
  ASSERT_EQ(dala_attachment_list_get(l2, 0, &info, e.out()), DALA_OK);
  EXPECT_EQ(fw.uploaded, info.ciphertext_size);  // each byte of the encrypted file sent once
  dala_attachment_list_free(l2);
  dala_report* got = nullptr;
  ASSERT_EQ(dala_report_load(store, &id, &got, e.out()), DALA_OK);
  EXPECT_EQ(dala_report_get_state(got), DALA_REPORT_DELIVERED);
  dala_report_free(got);

  // The desk opens what the server exports and verifies it; a flipped byte in it is not "verified".
  std::string exported = d.path + "/export.dala";
  ASSERT_EQ(system((std::string(server_bin) + " export --data " + data + " --out " + exported + " >/dev/null").c_str()),
            0);
  dala::Ref<dala_desk> desk;
  dala::Call(dala_desk_open, (d.path + "/org.key").c_str(), &dp, dala::Out(desk));
  dala_desk_summary sum;
  dala::Call(dala_desk_open_export, desk.get(), exported.c_str(), (d.path + "/opened").c_str(), nullptr, &sum);
  EXPECT_EQ(sum.reports, 1u);
  EXPECT_EQ(sum.verified, 1u);
  EXPECT_EQ(sum.failed, 0u);
  std::string bytes;
  {
    FILE* f = fopen(exported.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    for (int c; (c = fgetc(f)) != EOF;) bytes += static_cast<char>(c);
    fclose(f);
  }
  size_t flips = 0;
  for (size_t at : {bytes.size() / 3, bytes.size() / 2, bytes.size() - 40}) {  // envelope, receipt, tail
    std::string bad = bytes;
    bad[at] ^= 0x20;
    std::string path = d.path + "/bad.dala";
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(bad.data(), 1, bad.size(), f);
    fclose(f);
    dala_desk_summary s2{};
    dala_status st = dala_desk_open_export(desk.get(), path.c_str(), (d.path + "/bad").c_str(), nullptr, &s2, e.out());
    EXPECT_EQ(st == DALA_OK ? s2.verified : 0u, 0u) << "flipped byte " << at << " still verified";
    ++flips;
  }
  EXPECT_EQ(flips, 3u);
}
#endif  // DALA_CAPI_PHONE_ONLY

TEST(CApi, WrongPassphraseThenWipe) {
  TempDir d;
  std::string path = d.path + "/s";
  dala_credential c = Pass("right"), w = Pass("wrong");
  dala_store_options o = Fast();
  dala_store* s = nullptr;
  Err e;
  ASSERT_EQ(dala_store_create(path.c_str(), &c, &o, &s, e.out()), DALA_OK);
  dala_store_close(s);
  EXPECT_EQ(dala_store_create(path.c_str(), &c, &o, &s, e.out()), DALA_ERR_EXISTS);
  EXPECT_EQ(dala_store_open(path.c_str(), &w, &o, &s, e.out()), DALA_ERR_WRONG_KEY);
  EXPECT_EQ(e.msg().find("wrong"), 0u);
  EXPECT_EQ(e.msg().find("right"), std::string::npos);
  ASSERT_EQ(dala_store_change_credential(path.c_str(), &c, &w, &o, e.out()), DALA_OK);
  ASSERT_EQ(dala_store_open(path.c_str(), &w, &o, &s, e.out()), DALA_OK);
  dala_store_close(s);
  ASSERT_EQ(dala_store_wipe(path.c_str(), e.out()), DALA_OK);
  EXPECT_EQ(dala_store_open(path.c_str(), &w, &o, &s, e.out()), DALA_ERR_NOT_FOUND);
}

// Issue 14 through the C API: file names the app chooses, a passphrase and a platform key together, the
// duress passphrase, and the wipe that calls the app to destroy its platform key first.
TEST(CApi, DuressPlatformKeyAndWipeCallback) {
  TempDir d;
  std::string path = d.path + "/s";
  uint8_t platform_key[32];
  for (int i = 0; i < 32; ++i) platform_key[i] = static_cast<uint8_t>(i * 7);
  const char* pw = "real passphrase";
  dala_credential both = {DALA_CREDENTIAL_PASSPHRASE_AND_KEY, reinterpret_cast<const uint8_t*>(pw), strlen(pw),
                          platform_key, sizeof platform_key};
  dala_store_options o = Fast();
  o.key_file_name = "a";
  o.database_file_name = "b";
  o.media_dir_name = "c";
  struct Calls {
    int n = 0;
    bool key_file_there = false;
    std::string key_path;
    int answer = 0;
  } calls;
  calls.key_path = path + "/a";
  o.destroy_platform_key = [](void* ctx) {
    auto* c = static_cast<Calls*>(ctx);
    ++c->n;
    c->key_file_there = std::filesystem::exists(c->key_path);
    return c->answer;
  };
  o.destroy_platform_key_context = &calls;
  dala_store* s = nullptr;
  Err e;
  ASSERT_EQ(dala_store_create(path.c_str(), &both, &o, &s, e.out()), DALA_OK) << e.msg();
  dala_store_close(s);
  EXPECT_TRUE(std::filesystem::exists(path + "/a") && std::filesystem::exists(path + "/b"));
  EXPECT_FALSE(std::filesystem::exists(path + "/dala.key"));

  // The platform key missing: a clear error; the passphrase alone is wrong.
  dala_credential no_key = both;
  no_key.key = nullptr;
  no_key.key_length = 0;
  EXPECT_EQ(dala_store_open(path.c_str(), &no_key, &o, &s, e.out()), DALA_ERR_INVALID_ARGUMENT);
  EXPECT_NE(e.msg().find("platform key"), std::string::npos);
  dala_credential pass_only = Pass(pw);
  EXPECT_EQ(dala_store_open(path.c_str(), &pass_only, &o, &s, e.out()), DALA_ERR_WRONG_KEY);

  // Duress: the same passphrase is refused; another one, once used, leaves an empty store.
  EXPECT_EQ(dala_store_set_duress(path.c_str(), &both, reinterpret_cast<const uint8_t*>(pw), strlen(pw), &o, e.out()),
            DALA_ERR_INVALID_ARGUMENT);
  const char* dp = "duress";
  ASSERT_EQ(dala_store_set_duress(path.c_str(), &both, reinterpret_cast<const uint8_t*>(dp), strlen(dp), &o, e.out()),
            DALA_OK) << e.msg();
  dala_credential duress = both;
  duress.bytes = reinterpret_cast<const uint8_t*>(dp);
  duress.length = strlen(dp);
  ASSERT_EQ(dala_store_open(path.c_str(), &duress, &o, &s, e.out()), DALA_OK) << e.msg();
  dala_store_close(s);
  EXPECT_EQ(dala_store_open(path.c_str(), &both, &o, &s, e.out()), DALA_ERR_WRONG_KEY);
  ASSERT_EQ(dala_store_clear_duress(path.c_str(), &duress, &o, e.out()), DALA_OK) << e.msg();

  // The wipe calls the app first, while the key file is still there; a failure is reported, and the
  // store is gone all the same.
  calls.answer = 1;
  EXPECT_EQ(dala_store_wipe_with_options(path.c_str(), &o, e.out()), DALA_ERR_IO);
  EXPECT_EQ(calls.n, 1);
  EXPECT_TRUE(calls.key_file_there);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
