// The C API: argument checks, conversion, and the one boundary helper (Guard) that turns Status and
// exceptions into dala_status + dala_error. Nothing here holds logic of its own.
#include "dala/dala.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "attachment.h"
#include "background_sync.h"
#include "desk.h"
#include "fsutil.h"
#include "http_transport.h"
#include "protocol.h"
#include "sync_engine.h"
#include "keyfile.h"
#include "store.h"

struct dala_error {
  dala_status status;
  std::string message;
};
struct dala_store {
  std::unique_ptr<dala::Store> impl;
};
struct dala_report {
  dala::Report r;
  std::string form;  // "name/version", kept for dala_report_form
};
struct dala_report_list {
  std::vector<dala::ReportInfo> items;
};
struct dala_attachment_writer {
  std::unique_ptr<dala::AttachmentCapture> impl;
};
struct dala_attachment_reader {
  std::unique_ptr<dala::media::Reader> impl;
};
struct dala_attachment_list {
  std::vector<dala::AttachmentInfo> items;
};
struct dala_outbox_batch {
  std::vector<dala::OutboxItem> items;
};
struct dala_server_list {
  std::vector<dala::ServerInfo> items;
};
struct dala_receipt_list {
  struct Item {
    dala::ReceiptRow row;
    uint64_t sequence = 0;
    int64_t server_time_ms = 0;
    bool verified = false;
  };
  std::vector<Item> items;
};
struct dala_sync_session {
  std::unique_ptr<dala::sync::BackgroundSync> impl;
};
struct dala_http_response {
  int status = 0;
  std::string body;
  bool set = false;
};
struct dala_desk {
  dala::crypto::BoxKeyPair keys;
};

namespace {

using dala::Code;
using dala::Result;
using dala::Status;

Status Invalid(const char* what) { return {Code::kInvalidArgument, what}; }

// A C caller may store any int in an enum; in C++ loading an out-of-range enum is undefined. Enum inputs
// are therefore read as their raw integer.
template <typename E>
int RawEnum(const E& e) {
  static_assert(sizeof(E) == sizeof(int));
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

template <typename F>
dala_status Guard(dala_error** out_error, F&& body) noexcept {
  if (out_error != nullptr) *out_error = nullptr;
  Status st;
  try {
    st = dala::InitSodium() ? body() : Status(Code::kInternal, "libsodium could not start (no randomness?)");
  } catch (const std::bad_alloc&) {
    st = Status(Code::kNoMemory, "out of memory");
  } catch (...) {
    st = Status(Code::kInternal, "unexpected internal error");
  }
  if (st.ok()) return DALA_OK;
  auto status = static_cast<dala_status>(st.code());
  if (out_error != nullptr) *out_error = new (std::nothrow) dala_error{status, st.message()};
  return status;
}

Result<dala::Credential> ToCredential(const dala_credential* c) {
  if (c == nullptr) return Invalid("a credential (passphrase or key) is required");
  if (c->bytes == nullptr && c->length > 0) return Invalid("credential bytes are NULL");
  dala::Credential out;
  int kind = RawEnum(c->kind);
  if (kind == DALA_CREDENTIAL_PASSPHRASE) out.kind = dala::CredentialKind::kPassphrase;
  else if (kind == DALA_CREDENTIAL_RAW_KEY) out.kind = dala::CredentialKind::kRawKey;
  else return Invalid("unknown credential kind");
  if (c->length > 4096) return Invalid("the credential is too long");
  out.bytes = dala::SecretBuffer(c->bytes, c->length);
  DALA_RETURN_IF_ERROR(dala::ValidateCredential(out));
  return out;
}

dala::StoreOptions ToOptions(const dala_store_options* o) {
  dala_store_options d;
  dala_store_options_init(&d);
  if (o == nullptr) o = &d;
  dala::StoreOptions s;
  s.kdf.opslimit = o->kdf_opslimit;
  s.kdf.memlimit = o->kdf_memlimit;
  s.delete_after_delivery = o->delete_after_delivery != 0;
  s.backoff_base_ms = o->backoff_base_ms;
  s.backoff_max_ms = o->backoff_max_ms;
  return s;
}

Status CheckDir(const char* dir) {
  if (dir == nullptr || dir[0] == '\0') return Invalid("the store directory is NULL or empty");
  return Status::Ok();
}

Status CheckString(const char* s, const char* what) {
  if (s == nullptr) return {Code::kInvalidArgument, std::string(what) + " is NULL"};
  return Status::Ok();
}

dala::ReportId ToId(const dala_report_id* id) {
  dala::ReportId out;
  std::memcpy(out.data(), id->bytes, out.size());
  return out;
}

dala_report* NewReport(dala::Report r) {
  auto* h = new dala_report{std::move(r), {}};
  h->form = h->r.form();
  return h;
}

char* CopyString(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

#define DALA_CHECK_ARG(cond, msg) \
  do {                            \
    if (!(cond)) return Invalid(msg); \
  } while (0)

}  // namespace

/* Definitions take C linkage from their declarations in dala.h. */

/* ---- errors ---- */

dala_status dala_error_status(const dala_error* e) noexcept { return e ? e->status : DALA_ERR_INTERNAL; }
const char* dala_error_message(const dala_error* e) noexcept { return e ? e->message.c_str() : "no error object"; }
void dala_error_free(dala_error* e) noexcept { delete e; }
void dala_string_free(char* s) noexcept { std::free(s); }
void dala_bytes_free(uint8_t* b) noexcept { std::free(b); }
const char* dala_version(void) noexcept { return DALA_VERSION_STRING; }

const char* dala_status_name(dala_status status) noexcept {
  switch (RawEnum(status)) {
    case DALA_OK: return "DALA_OK";
    case DALA_ERR_INTERNAL: return "DALA_ERR_INTERNAL";
    case DALA_ERR_INVALID_ARGUMENT: return "DALA_ERR_INVALID_ARGUMENT";
    case DALA_ERR_WRONG_KEY: return "DALA_ERR_WRONG_KEY";
    case DALA_ERR_NOT_FOUND: return "DALA_ERR_NOT_FOUND";
    case DALA_ERR_EXISTS: return "DALA_ERR_EXISTS";
    case DALA_ERR_CORRUPT: return "DALA_ERR_CORRUPT";
    case DALA_ERR_IO: return "DALA_ERR_IO";
    case DALA_ERR_PERMISSION: return "DALA_ERR_PERMISSION";
    case DALA_ERR_STATE: return "DALA_ERR_STATE";
    case DALA_ERR_TOO_LARGE: return "DALA_ERR_TOO_LARGE";
    case DALA_ERR_VERIFY: return "DALA_ERR_VERIFY";
    case DALA_ERR_BUSY: return "DALA_ERR_BUSY";
    case DALA_ERR_NOT_ENCRYPTED: return "DALA_ERR_NOT_ENCRYPTED";
    case DALA_ERR_NO_MEMORY: return "DALA_ERR_NO_MEMORY";
    case DALA_ERR_NO_SPACE: return "DALA_ERR_NO_SPACE";
  }
  return "DALA_ERR_UNKNOWN";
}

/* ---- stores ---- */

void dala_store_options_init(dala_store_options* o) noexcept {
  if (o == nullptr) return;
  dala::StoreOptions d;
  o->kdf_opslimit = d.kdf.opslimit;
  o->kdf_memlimit = d.kdf.memlimit;
  o->delete_after_delivery = d.delete_after_delivery ? 1 : 0;
  o->backoff_base_ms = d.backoff_base_ms;
  o->backoff_max_ms = d.backoff_max_ms;
}

static dala_status OpenOrCreate(bool create, const char* dir, const dala_credential* credential,
                                const dala_store_options* options, dala_store** out_store,
                                dala_error** out_error) noexcept {
  if (out_store != nullptr) *out_store = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(out_store != nullptr, "out_store is NULL");
    DALA_RETURN_IF_ERROR(CheckDir(dir));
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, ToCredential(credential));
    auto opts = ToOptions(options);
    DALA_ASSIGN_OR_RETURN(auto store, create ? dala::Store::Create(dir, cred, opts) : dala::Store::Open(dir, cred, opts));
    *out_store = new dala_store{std::move(store)};
    return Status::Ok();
  });
}

dala_status dala_store_create(const char* dir, const dala_credential* credential, const dala_store_options* options,
                              dala_store** out_store, dala_error** out_error) noexcept {
  return OpenOrCreate(true, dir, credential, options, out_store, out_error);
}

dala_status dala_store_open(const char* dir, const dala_credential* credential, const dala_store_options* options,
                            dala_store** out_store, dala_error** out_error) noexcept {
  return OpenOrCreate(false, dir, credential, options, out_store, out_error);
}

void dala_store_close(dala_store* store) noexcept { delete store; }

dala_status dala_store_change_credential(const char* dir, const dala_credential* old_credential,
                                         const dala_credential* new_credential, const dala_store_options* options,
                                         dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_RETURN_IF_ERROR(CheckDir(dir));
    DALA_ASSIGN_OR_RETURN(dala::Credential old_cred, ToCredential(old_credential));
    DALA_ASSIGN_OR_RETURN(dala::Credential new_cred, ToCredential(new_credential));
    return dala::Store::ChangeCredential(dir, old_cred, new_cred, ToOptions(options).kdf);
  });
}

dala_status dala_store_wipe(const char* dir, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_RETURN_IF_ERROR(CheckDir(dir));
    return dala::Store::Wipe(dir);
  });
}

dala_status dala_store_device_key(dala_store* store, uint8_t out_key[32], dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_key != nullptr, "store or out_key is NULL");
    auto pk = store->impl->device_key();
    std::memcpy(out_key, pk.data(), pk.size());
    return Status::Ok();
  });
}

dala_status dala_store_set_recipients(dala_store* store, const char* destination, const uint8_t* keys, size_t count,
                                      dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr, "store is NULL");
    DALA_RETURN_IF_ERROR(CheckString(destination, "destination"));
    DALA_CHECK_ARG(count == 0 || keys != nullptr, "keys is NULL");
    DALA_CHECK_ARG(count <= 64, "at most 64 recipients per destination");
    std::vector<dala::crypto::PublicKey> pks(count);
    for (size_t i = 0; i < count; ++i) std::memcpy(pks[i].data(), keys + 32 * i, 32);
    return store->impl->SetRecipients(destination, pks);
  });
}

dala_status dala_store_set_delete_after_delivery(dala_store* store, int enabled, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr, "store is NULL");
    return store->impl->SetDeleteAfterDelivery(enabled != 0);
  });
}

dala_status dala_store_check(dala_store* store, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr, "store is NULL");
    return store->impl->Check();
  });
}

/* ---- report ids ---- */

void dala_report_id_to_string(const dala_report_id* id, char out[33]) noexcept {
  if (out == nullptr) return;
  out[0] = '\0';
  if (id == nullptr) return;
  std::string hex = dala::crypto::ToHex({id->bytes, sizeof id->bytes});
  std::memcpy(out, hex.c_str(), 33);
}

dala_status dala_report_id_parse(const char* text, dala_report_id* out_id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(text != nullptr && out_id != nullptr, "text or out_id is NULL");
    dala_report_id id;
    if (!dala::crypto::FromHex(text, {id.bytes, sizeof id.bytes}))
      return Invalid("a report id is 32 hexadecimal characters");
    *out_id = id;
    return Status::Ok();
  });
}

/* ---- reports ---- */

dala_status dala_report_create(dala_store* store, const char* form, dala_report** out_report,
                               dala_error** out_error) noexcept {
  if (out_report != nullptr) *out_report = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_report != nullptr, "store or out_report is NULL");
    DALA_RETURN_IF_ERROR(CheckString(form, "form"));
    DALA_ASSIGN_OR_RETURN(dala::Report r, store->impl->CreateDraft(form));
    *out_report = NewReport(std::move(r));
    return Status::Ok();
  });
}

static dala_status GetReport(dala_store* store, const dala_report_id* id, std::optional<uint32_t> version, bool edit,
                             dala_report** out_report, dala_error** out_error) noexcept {
  if (out_report != nullptr) *out_report = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr && out_report != nullptr, "store, id or out_report is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Report r, edit ? store->impl->Edit(ToId(id)) : store->impl->Get(ToId(id), version));
    *out_report = NewReport(std::move(r));
    return Status::Ok();
  });
}

dala_status dala_report_get(dala_store* store, const dala_report_id* id, dala_report** out_report,
                            dala_error** out_error) noexcept {
  return GetReport(store, id, std::nullopt, false, out_report, out_error);
}

dala_status dala_report_get_version(dala_store* store, const dala_report_id* id, uint32_t version,
                                    dala_report** out_report, dala_error** out_error) noexcept {
  return GetReport(store, id, version, false, out_report, out_error);
}

dala_status dala_report_edit(dala_store* store, const dala_report_id* id, dala_report** out_report,
                             dala_error** out_error) noexcept {
  return GetReport(store, id, std::nullopt, true, out_report, out_error);
}

dala_status dala_report_delete_draft(dala_store* store, const dala_report_id* id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr, "store or id is NULL");
    return store->impl->DeleteDraft(ToId(id));
  });
}

void dala_report_free(dala_report* report) noexcept { delete report; }

template <typename MakeValue>
static dala_status SetField(dala_report* report, const char* key, dala_error** out_error, MakeValue make) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr, "report is NULL");
    DALA_RETURN_IF_ERROR(CheckString(key, "key"));
    dala::v1::FieldValue v;
    DALA_RETURN_IF_ERROR(make(v));
    return report->r.SetValue(key, std::move(v));
  });
}

dala_status dala_report_set_text(dala_report* report, const char* key, const char* value,
                                 dala_error** out_error) noexcept {
  return SetField(report, key, out_error, [&](dala::v1::FieldValue& v) -> Status {
    DALA_RETURN_IF_ERROR(CheckString(value, "value"));
    v.set_text(value);
    return Status::Ok();
  });
}

dala_status dala_report_set_integer(dala_report* report, const char* key, int64_t value,
                                    dala_error** out_error) noexcept {
  return SetField(report, key, out_error, [&](dala::v1::FieldValue& v) {
    v.set_integer(value);
    return Status::Ok();
  });
}

dala_status dala_report_set_decimal(dala_report* report, const char* key, const char* value,
                                    dala_error** out_error) noexcept {
  return SetField(report, key, out_error, [&](dala::v1::FieldValue& v) -> Status {
    DALA_RETURN_IF_ERROR(CheckString(value, "value"));
    v.set_decimal(value);
    return Status::Ok();
  });
}

dala_status dala_report_set_boolean(dala_report* report, const char* key, int value, dala_error** out_error) noexcept {
  return SetField(report, key, out_error, [&](dala::v1::FieldValue& v) {
    v.set_boolean(value != 0);
    return Status::Ok();
  });
}

dala_status dala_report_set_timestamp(dala_report* report, const char* key, int64_t unix_ms,
                                      dala_error** out_error) noexcept {
  return SetField(report, key, out_error, [&](dala::v1::FieldValue& v) {
    v.set_timestamp_ms(unix_ms);
    return Status::Ok();
  });
}

static dala::v1::GeoPoint ToGeo(const dala_geo& g) {
  dala::v1::GeoPoint p;
  p.set_latitude(g.latitude);
  p.set_longitude(g.longitude);
  p.set_accuracy_m(g.accuracy_m);
  return p;
}

dala_status dala_report_set_geo(dala_report* report, const char* key, const dala_geo* value,
                                dala_error** out_error) noexcept {
  return SetField(report, key, out_error, [&](dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(value != nullptr, "value is NULL");
    *v.mutable_geo() = ToGeo(*value);
    return Status::Ok();
  });
}

dala_status dala_report_set_people(dala_report* report, const char* key, const dala_person* people, size_t count,
                                   dala_error** out_error) noexcept {
  return SetField(report, key, out_error, [&](dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(count == 0 || people != nullptr, "people is NULL");
    DALA_CHECK_ARG(count <= dala::Limits::kPeople, "a people field holds at most 1000 people");
    auto* list = v.mutable_people();
    for (size_t i = 0; i < count; ++i) {
      DALA_RETURN_IF_ERROR(CheckString(people[i].name, "a person's name"));
      auto* p = list->add_people();
      p->set_name(people[i].name);
      p->set_role(people[i].role != nullptr ? people[i].role : "");
    }
    return Status::Ok();
  });
}

dala_status dala_report_remove_field(dala_report* report, const char* key, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr, "report is NULL");
    DALA_RETURN_IF_ERROR(CheckString(key, "key"));
    return report->r.RemoveField(key);
  });
}

dala_status dala_report_set_narrative(dala_report* report, const char* text, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr, "report is NULL");
    DALA_RETURN_IF_ERROR(CheckString(text, "text"));
    return report->r.SetNarrative(text);
  });
}

dala_status dala_report_set_location(dala_report* report, const dala_geo* location, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr, "report is NULL");
    if (location == nullptr) return report->r.SetLocation(nullptr);
    auto g = ToGeo(*location);
    return report->r.SetLocation(&g);
  });
}

dala_status dala_report_set_priority(dala_report* report, int32_t priority, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr, "report is NULL");
    if (report->r.sealed()) return {Code::kState, "this version is sealed and cannot change"};
    report->r.priority = priority;
    return Status::Ok();
  });
}

dala_status dala_report_save(dala_store* store, dala_report* report, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr, "store or report is NULL");
    return store->impl->SaveDraft(report->r);
  });
}

dala_status dala_report_seal(dala_store* store, dala_report* report, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr, "store or report is NULL");
    return store->impl->Seal(report->r);
  });
}

dala_status dala_store_seal_reports(dala_store* store, const dala_report_id* ids, size_t count,
                                    dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && (count == 0 || ids != nullptr), "store or ids is NULL");
    std::vector<dala::ReportId> v(count);
    for (size_t i = 0; i < count; ++i) v[i] = ToId(&ids[i]);
    return store->impl->SealMany(v);
  });
}

/* ---- report getters ---- */

void dala_report_get_id(const dala_report* report, dala_report_id* out_id) noexcept {
  if (report == nullptr || out_id == nullptr) return;
  auto id = report->r.id();
  std::memcpy(out_id->bytes, id.data(), id.size());
}
uint32_t dala_report_version(const dala_report* report) noexcept { return report ? report->r.content.version() : 0; }
dala_report_state dala_report_state_of(const dala_report* report) noexcept {
  return report ? static_cast<dala_report_state>(report->r.state) : DALA_REPORT_DRAFT;
}
const char* dala_report_form(const dala_report* report) noexcept { return report ? report->form.c_str() : ""; }
int64_t dala_report_created_ms(const dala_report* report) noexcept {
  return report ? report->r.content.created_ms() : 0;
}
const char* dala_report_narrative(const dala_report* report) noexcept {
  return report ? report->r.content.narrative().c_str() : "";
}
int dala_report_is_purged(const dala_report* report) noexcept { return report && report->r.purged ? 1 : 0; }
size_t dala_report_field_count(const dala_report* report) noexcept {
  return report ? static_cast<size_t>(report->r.content.fields_size()) : 0;
}
const char* dala_report_field_key(const dala_report* report, size_t index) noexcept {
  if (report == nullptr || index >= dala_report_field_count(report)) return nullptr;
  return report->r.content.fields(static_cast<int>(index)).key().c_str();
}
dala_field_type dala_report_field_type(const dala_report* report, size_t index) noexcept {
  if (report == nullptr || index >= dala_report_field_count(report)) return static_cast<dala_field_type>(0);
  // FieldValue's oneof numbers are the dala_field_type numbers.
  return static_cast<dala_field_type>(report->r.content.fields(static_cast<int>(index)).value().value_case());
}

template <typename Read>
static dala_status GetField(const dala_report* report, const char* key, dala::v1::FieldValue::ValueCase want,
                            dala_error** out_error, Read read) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr, "report is NULL");
    DALA_RETURN_IF_ERROR(CheckString(key, "key"));
    const dala::v1::FieldValue* v = report->r.Find(key);
    if (v == nullptr) return {Code::kNotFound, "the report has no field with that key"};
    if (v->value_case() != want) return {Code::kState, "the field holds a value of another type"};
    return read(*v);
  });
}

dala_status dala_report_get_text(const dala_report* report, const char* key, const char** out_value,
                                 dala_error** out_error) noexcept {
  if (out_value != nullptr) *out_value = nullptr;
  return GetField(report, key, dala::v1::FieldValue::kText, out_error, [&](const dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(out_value != nullptr, "out_value is NULL");
    *out_value = v.text().c_str();
    return Status::Ok();
  });
}

dala_status dala_report_get_integer(const dala_report* report, const char* key, int64_t* out_value,
                                    dala_error** out_error) noexcept {
  return GetField(report, key, dala::v1::FieldValue::kInteger, out_error, [&](const dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(out_value != nullptr, "out_value is NULL");
    *out_value = v.integer();
    return Status::Ok();
  });
}

dala_status dala_report_get_decimal(const dala_report* report, const char* key, const char** out_value,
                                    dala_error** out_error) noexcept {
  if (out_value != nullptr) *out_value = nullptr;
  return GetField(report, key, dala::v1::FieldValue::kDecimal, out_error, [&](const dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(out_value != nullptr, "out_value is NULL");
    *out_value = v.decimal().c_str();
    return Status::Ok();
  });
}

dala_status dala_report_get_boolean(const dala_report* report, const char* key, int* out_value,
                                    dala_error** out_error) noexcept {
  return GetField(report, key, dala::v1::FieldValue::kBoolean, out_error, [&](const dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(out_value != nullptr, "out_value is NULL");
    *out_value = v.boolean() ? 1 : 0;
    return Status::Ok();
  });
}

dala_status dala_report_get_timestamp(const dala_report* report, const char* key, int64_t* out_unix_ms,
                                      dala_error** out_error) noexcept {
  return GetField(report, key, dala::v1::FieldValue::kTimestampMs, out_error,
                  [&](const dala::v1::FieldValue& v) -> Status {
                    DALA_CHECK_ARG(out_unix_ms != nullptr, "out_unix_ms is NULL");
                    *out_unix_ms = v.timestamp_ms();
                    return Status::Ok();
                  });
}

dala_status dala_report_get_geo(const dala_report* report, const char* key, dala_geo* out_value,
                                dala_error** out_error) noexcept {
  return GetField(report, key, dala::v1::FieldValue::kGeo, out_error, [&](const dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(out_value != nullptr, "out_value is NULL");
    *out_value = dala_geo{v.geo().latitude(), v.geo().longitude(), v.geo().accuracy_m()};
    return Status::Ok();
  });
}

dala_status dala_report_get_people(const dala_report* report, const char* key, dala_person* out_people,
                                   size_t capacity, size_t* out_count, dala_error** out_error) noexcept {
  return GetField(report, key, dala::v1::FieldValue::kPeople, out_error, [&](const dala::v1::FieldValue& v) -> Status {
    DALA_CHECK_ARG(out_count != nullptr && (capacity == 0 || out_people != nullptr), "out_count or out_people is NULL");
    const auto& people = v.people().people();
    *out_count = static_cast<size_t>(people.size());
    for (size_t i = 0; i < capacity && i < *out_count; ++i)
      out_people[i] = dala_person{people[static_cast<int>(i)].name().c_str(), people[static_cast<int>(i)].role().c_str()};
    return Status::Ok();
  });
}

dala_status dala_report_seal_info(const dala_report* report, uint8_t out_device_key[32], uint8_t out_content_hash[32],
                                  uint8_t out_previous_hash[32], dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr, "report is NULL");
    if (!report->r.sealed()) return {Code::kState, "a draft has no seal yet"};
    const auto& c = report->r.content;
    if (out_device_key != nullptr) {
      std::memset(out_device_key, 0, 32);
      if (c.device_key().size() == 32) std::memcpy(out_device_key, c.device_key().data(), 32);
    }
    if (out_content_hash != nullptr) std::memcpy(out_content_hash, report->r.content_hash.data(), 32);
    if (out_previous_hash != nullptr) {
      std::memset(out_previous_hash, 0, 32);
      if (c.previous_hash().size() == 32) std::memcpy(out_previous_hash, c.previous_hash().data(), 32);
    }
    return Status::Ok();
  });
}

dala_status dala_report_to_json(const dala_report* report, char** out_json, dala_error** out_error) noexcept {
  if (out_json != nullptr) *out_json = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(report != nullptr && out_json != nullptr, "report or out_json is NULL");
    *out_json = CopyString(dala::ReportToJson(report->r));
    return Status::Ok();
  });
}

/* ---- listing ---- */

dala_status dala_store_list_reports(dala_store* store, dala_report_list** out_list, dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_list != nullptr, "store or out_list is NULL");
    DALA_ASSIGN_OR_RETURN(auto items, store->impl->List());
    *out_list = new dala_report_list{std::move(items)};
    return Status::Ok();
  });
}

size_t dala_report_list_count(const dala_report_list* list) noexcept { return list ? list->items.size() : 0; }

dala_status dala_report_list_get(const dala_report_list* list, size_t index, dala_report_info* out_info,
                                 dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(list != nullptr && out_info != nullptr, "list or out_info is NULL");
    DALA_CHECK_ARG(index < list->items.size(), "index is out of range");
    const auto& it = list->items[index];
    std::memcpy(out_info->id.bytes, it.id.data(), it.id.size());
    out_info->version = it.version;
    out_info->state = static_cast<dala_report_state>(it.state);
    out_info->created_ms = it.created_ms;
    out_info->updated_ms = it.updated_ms;
    out_info->form = it.form.c_str();
    return Status::Ok();
  });
}

void dala_report_list_free(dala_report_list* list) noexcept { delete list; }

const char* dala_report_state_name(dala_report_state state) noexcept {
  int v = RawEnum(state);
  if (v < DALA_REPORT_DRAFT || v > DALA_REPORT_REJECTED) return "unknown";
  return dala::ReportStateName(static_cast<dala::ReportState>(v));
}

/* ---- attachments ---- */

namespace {
dala::AttachmentId ToAttachmentId(const dala_attachment_id* id) {
  dala::AttachmentId r;
  std::memcpy(r.data(), id->bytes, r.size());
  return r;
}
}  // namespace

void dala_attachment_id_to_string(const dala_attachment_id* id, char out[33]) noexcept {
  if (out == nullptr) return;
  if (id == nullptr) {
    out[0] = '\0';
    return;
  }
  sodium_bin2hex(out, 33, id->bytes, sizeof id->bytes);
}

dala_status dala_attachment_id_parse(const char* text, dala_attachment_id* out_id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(text != nullptr && out_id != nullptr, "text or out_id is NULL");
    dala_attachment_id id;
    if (!dala::crypto::FromHex(text, {id.bytes, sizeof id.bytes}))
      return Invalid("an attachment id is 32 hexadecimal characters");
    *out_id = id;
    return Status::Ok();
  });
}

dala_status dala_attachment_writer_open(dala_store* store, const dala_report_id* report, const char* mime_type,
                                        dala_attachment_writer** out_writer, dala_error** out_error) noexcept {
  if (out_writer != nullptr) *out_writer = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr && out_writer != nullptr, "store, report or out_writer is NULL");
    DALA_CHECK_ARG(mime_type != nullptr, "mime_type is NULL");
    DALA_ASSIGN_OR_RETURN(auto capture, store->impl->CaptureAttachment(ToId(report), mime_type));
    *out_writer = new dala_attachment_writer{std::move(capture)};
    return Status::Ok();
  });
}

dala_status dala_attachment_writer_write(dala_attachment_writer* writer, const uint8_t* data, size_t size,
                                         dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(writer != nullptr, "writer is NULL");
    DALA_CHECK_ARG(data != nullptr || size == 0, "data is NULL");
    if (!writer->impl) return {Code::kState, "this attachment writer is finished"};
    return writer->impl->Write({data, size});
  });
}

dala_status dala_attachment_writer_finish(dala_attachment_writer* writer, dala_attachment_id* out_id,
                                          dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(writer != nullptr && out_id != nullptr, "writer or out_id is NULL");
    if (!writer->impl) return {Code::kState, "this attachment writer is finished"};
    auto info = writer->impl->Finish();
    writer->impl.reset();
    if (!info.ok()) return info.status();
    std::memcpy(out_id->bytes, info->id.data(), info->id.size());
    return Status::Ok();
  });
}

void dala_attachment_writer_free(dala_attachment_writer* writer) noexcept { delete writer; }

dala_status dala_attachment_import_file(dala_store* store, const dala_report_id* report, const char* path,
                                        const char* mime_type, dala_attachment_id* out_id,
                                        dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr && out_id != nullptr, "store, report or out_id is NULL");
    DALA_CHECK_ARG(path != nullptr && mime_type != nullptr, "path or mime_type is NULL");
    DALA_ASSIGN_OR_RETURN(auto info, store->impl->ImportAttachment(ToId(report), path, mime_type));
    std::memcpy(out_id->bytes, info.id.data(), info.id.size());
    return Status::Ok();
  });
}

dala_status dala_attachment_reader_open(dala_store* store, const dala_attachment_id* id,
                                        dala_attachment_reader** out_reader, dala_error** out_error) noexcept {
  if (out_reader != nullptr) *out_reader = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr && out_reader != nullptr, "store, id or out_reader is NULL");
    DALA_ASSIGN_OR_RETURN(auto reader, store->impl->OpenAttachment(ToAttachmentId(id)));
    *out_reader = new dala_attachment_reader{std::move(reader)};
    return Status::Ok();
  });
}

dala_status dala_attachment_reader_read(dala_attachment_reader* reader, uint8_t* buffer, size_t capacity,
                                        size_t* out_size, dala_error** out_error) noexcept {
  if (out_size != nullptr) *out_size = 0;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(reader != nullptr && buffer != nullptr && out_size != nullptr, "reader, buffer or out_size is NULL");
    DALA_CHECK_ARG(capacity > 0, "capacity must be positive");
    DALA_ASSIGN_OR_RETURN(size_t n, reader->impl->Read({buffer, capacity}));
    *out_size = n;
    return Status::Ok();
  });
}

void dala_attachment_reader_free(dala_attachment_reader* reader) noexcept { delete reader; }

dala_status dala_attachment_remove(dala_store* store, const dala_attachment_id* id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr, "store or id is NULL");
    return store->impl->RemoveAttachment(ToAttachmentId(id));
  });
}

dala_status dala_store_list_attachments(dala_store* store, const dala_report_id* report, dala_attachment_list** out_list,
                                        dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr && out_list != nullptr, "store, report or out_list is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Report latest, store->impl->Get(ToId(report)));
    DALA_ASSIGN_OR_RETURN(auto items, store->impl->Attachments(ToId(report), latest.content.version()));
    *out_list = new dala_attachment_list{std::move(items)};
    return Status::Ok();
  });
}

size_t dala_attachment_list_count(const dala_attachment_list* list) noexcept {
  return list == nullptr ? 0 : list->items.size();
}

dala_status dala_attachment_list_get(const dala_attachment_list* list, size_t index, dala_attachment_info* out_info,
                                     dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(list != nullptr && out_info != nullptr, "list or out_info is NULL");
    DALA_CHECK_ARG(index < list->items.size(), "index is out of range");
    const auto& a = list->items[index];
    std::memcpy(out_info->id.bytes, a.id.data(), a.id.size());
    out_info->version = a.version;
    out_info->mime_type = a.mime.c_str();
    out_info->size = a.size;
    out_info->ciphertext_size = a.ciphertext_size;
    std::memcpy(out_info->plaintext_hash, a.plaintext_hash.data(), 32);
    std::memcpy(out_info->ciphertext_hash, a.ciphertext_hash.data(), 32);
    out_info->created_ms = a.created_ms;
    return Status::Ok();
  });
}

void dala_attachment_list_free(dala_attachment_list* list) noexcept { delete list; }

/* ---- outbox ---- */

dala_status dala_outbox_next_batch(dala_store* store, const char* destination, size_t max_items, size_t max_bytes,
                                   dala_outbox_batch** out_batch, dala_error** out_error) noexcept {
  if (out_batch != nullptr) *out_batch = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_batch != nullptr, "store or out_batch is NULL");
    DALA_RETURN_IF_ERROR(CheckString(destination, "destination"));
    DALA_ASSIGN_OR_RETURN(auto items, store->impl->NextBatch(destination, max_items, max_bytes));
    *out_batch = new dala_outbox_batch{std::move(items)};
    return Status::Ok();
  });
}

size_t dala_outbox_batch_count(const dala_outbox_batch* batch) noexcept { return batch ? batch->items.size() : 0; }

dala_status dala_outbox_batch_get(const dala_outbox_batch* batch, size_t index, dala_outbox_item* out_item,
                                  dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(batch != nullptr && out_item != nullptr, "batch or out_item is NULL");
    DALA_CHECK_ARG(index < batch->items.size(), "index is out of range");
    const auto& it = batch->items[index];
    std::memcpy(out_item->id.bytes, it.id.data(), it.id.size());
    out_item->version = it.version;
    out_item->priority = it.priority;
    out_item->attempts = it.attempts;
    out_item->envelope = it.envelope.data();
    out_item->envelope_size = it.envelope.size();
    return Status::Ok();
  });
}

void dala_outbox_batch_free(dala_outbox_batch* batch) noexcept { delete batch; }

dala_status dala_outbox_mark_delivered(dala_store* store, const char* destination, const dala_report_id* id,
                                       uint32_t version, const uint8_t* receipt, size_t receipt_size,
                                       dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr && receipt != nullptr, "store, id or receipt is NULL");
    DALA_RETURN_IF_ERROR(CheckString(destination, "destination"));
    return store->impl->MarkDelivered(destination, ToId(id), version, {receipt, receipt_size});
  });
}

dala_status dala_outbox_mark_retry(dala_store* store, const char* destination, const dala_report_id* id,
                                   uint32_t version, const char* reason, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr, "store or id is NULL");
    DALA_RETURN_IF_ERROR(CheckString(destination, "destination"));
    return store->impl->MarkRetry(destination, ToId(id), version, reason ? reason : "");
  });
}

dala_status dala_outbox_mark_rejected(dala_store* store, const char* destination, const dala_report_id* id,
                                      uint32_t version, const char* reason, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr, "store or id is NULL");
    DALA_RETURN_IF_ERROR(CheckString(destination, "destination"));
    return store->impl->MarkRejected(destination, ToId(id), version, reason ? reason : "");
  });
}

dala_status dala_outbox_get_stats(dala_store* store, const char* destination, dala_outbox_stats* out_stats,
                                  dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_stats != nullptr, "store or out_stats is NULL");
    DALA_RETURN_IF_ERROR(CheckString(destination, "destination"));
    DALA_ASSIGN_OR_RETURN(dala::OutboxStats s, store->impl->Stats(destination));
    *out_stats = dala_outbox_stats{s.pending, s.in_flight, s.delivered, s.rejected, s.next_attempt_ms};
    return Status::Ok();
  });
}

dala_status dala_outbox_get_receipt(dala_store* store, const char* destination, const dala_report_id* id,
                                    uint32_t version, uint8_t** out_receipt, size_t* out_size,
                                    dala_error** out_error) noexcept {
  if (out_receipt != nullptr) *out_receipt = nullptr;
  if (out_size != nullptr) *out_size = 0;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr && out_receipt != nullptr && out_size != nullptr,
                   "store, id, out_receipt or out_size is NULL");
    DALA_RETURN_IF_ERROR(CheckString(destination, "destination"));
    DALA_ASSIGN_OR_RETURN(auto bytes, store->impl->Receipt(destination, ToId(id), version));
    auto* p = static_cast<uint8_t*>(std::malloc(bytes.empty() ? 1 : bytes.size()));
    if (p == nullptr) throw std::bad_alloc();
    std::memcpy(p, bytes.data(), bytes.size());
    *out_receipt = p;
    *out_size = bytes.size();
    return Status::Ok();
  });
}

/* ---- desk ---- */

dala_status dala_desk_keygen(const char* path, const dala_credential* credential, const dala_store_options* options,
                             uint8_t out_public_key[32], dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(path != nullptr && path[0] != '\0' && out_public_key != nullptr, "path or out_public_key is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, ToCredential(credential));
    if (dala::fs::Exists(path)) return {Code::kExists, std::string("'") + path + "' already exists; not overwritten"};
    auto keys = dala::crypto::GenerateBoxKeyPair();
    DALA_ASSIGN_OR_RETURN(auto file, dala::WrapSecret(dala::KeyPurpose::kDeskSecret, keys.secret_key, cred,
                                                      ToOptions(options).kdf));
    DALA_RETURN_IF_ERROR(dala::fs::WriteFileAtomic(path, file));
    std::memcpy(out_public_key, keys.public_key.data(), 32);
    return Status::Ok();
  });
}

dala_status dala_desk_open(const char* path, const dala_credential* credential, dala_desk** out_desk,
                           dala_error** out_error) noexcept {
  if (out_desk != nullptr) *out_desk = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(path != nullptr && out_desk != nullptr, "path or out_desk is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, ToCredential(credential));
    auto file = dala::fs::ReadFile(path, 4096);
    if (!file.ok()) {
      if (file.status().code() == Code::kNotFound)
        return {Code::kNotFound, std::string("no organisation key file at '") + path + "'"};
      return file.status();
    }
    DALA_ASSIGN_OR_RETURN(dala::SecretBuffer sk, dala::UnwrapSecret(dala::KeyPurpose::kDeskSecret, *file, cred));
    auto* desk = new dala_desk{};
    desk->keys.public_key = dala::crypto::BoxPublicFromSecret(sk);
    desk->keys.secret_key = std::move(sk);
    *out_desk = desk;
    return Status::Ok();
  });
}

void dala_desk_close(dala_desk* desk) noexcept { delete desk; }

dala_status dala_desk_public_key(dala_desk* desk, uint8_t out_public_key[32], dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && out_public_key != nullptr, "desk or out_public_key is NULL");
    std::memcpy(out_public_key, desk->keys.public_key.data(), 32);
    return Status::Ok();
  });
}

dala_status dala_desk_open_envelope(dala_desk* desk, const uint8_t* envelope, size_t envelope_size,
                                    dala_report** out_report, dala_error** out_error) noexcept {
  if (out_report != nullptr) *out_report = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && envelope != nullptr && out_report != nullptr,
                   "desk, envelope or out_report is NULL");
    DALA_CHECK_ARG(envelope_size <= 64u * 1024 * 1024, "the envelope is larger than 64 MiB");
    dala::crypto::EnvelopeHeader h;
    DALA_ASSIGN_OR_RETURN(dala::SecretBuffer plain, dala::crypto::OpenEnvelope({envelope, envelope_size}, desk->keys, &h));
    DALA_ASSIGN_OR_RETURN(auto content, dala::VerifySignedReport(plain.span()));
    dala::Report r;
    r.content = std::move(content);
    if (r.id() != h.report_id || r.content.version() != h.version ||
        std::memcmp(r.content.device_key().data(), h.device_key.data(), 32) != 0)
      return {Code::kVerify, "the envelope and the report inside it disagree on id, version or device (altered)"};
    r.state = dala::ReportState::kSealed;
    r.content_hash = dala::crypto::Blake2b256(plain.span());
    r.updated_ms = r.content.sealed_ms();
    *out_report = NewReport(std::move(r));
    return Status::Ok();
  });
}


/* ---- delivery ---- */

dala_status dala_store_join(dala_store* store, const char* invite, char** out_destination,
                            dala_error** out_error) noexcept {
  if (out_destination != nullptr) *out_destination = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr, "store is NULL");
    DALA_RETURN_IF_ERROR(CheckString(invite, "invite"));
    DALA_ASSIGN_OR_RETURN(dala::ServerInfo info, store->impl->Join(invite));
    if (out_destination != nullptr) *out_destination = CopyString(info.destination);
    return Status::Ok();
  });
}

dala_status dala_store_list_servers(dala_store* store, dala_server_list** out_list, dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_list != nullptr, "store or out_list is NULL");
    DALA_ASSIGN_OR_RETURN(auto servers, store->impl->Servers());
    *out_list = new dala_server_list{std::move(servers)};
    return Status::Ok();
  });
}

size_t dala_server_list_count(const dala_server_list* list) noexcept { return list ? list->items.size() : 0; }

dala_status dala_server_list_get(const dala_server_list* list, size_t index, dala_server_info* out_info,
                                 dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(list != nullptr && out_info != nullptr, "list or out_info is NULL");
    DALA_CHECK_ARG(index < list->items.size(), "index is out of range");
    const auto& s = list->items[index];
    out_info->destination = s.destination.c_str();
    out_info->organisation = s.organisation.c_str();
    out_info->url = s.urls.empty() ? "" : s.urls[0].c_str();
    std::memcpy(out_info->server_key, s.server_key.data(), 32);
    out_info->enrolled = s.enrolled ? 1 : 0;
    out_info->last_error = s.last_error.c_str();
    return Status::Ok();
  });
}

void dala_server_list_free(dala_server_list* list) noexcept { delete list; }

void dala_http_response_set(dala_http_response* response, int http_status, const uint8_t* body,
                            size_t body_size) noexcept {
  if (response == nullptr) return;
  try {
    response->status = http_status;
    response->body.assign(body != nullptr ? reinterpret_cast<const char*>(body) : "", body != nullptr ? body_size : 0);
    response->set = true;
  } catch (...) {
    response->set = false;
  }
}

void dala_sync_options_init(dala_sync_options* options) noexcept {
  if (options == nullptr) return;
  *options = dala_sync_options{30000, nullptr, nullptr, nullptr, nullptr, nullptr};
}

namespace {
// Adapts an app's C transport callback to the engine's Transport.
class CallbackTransport : public dala::sync::Transport {
 public:
  CallbackTransport(dala_transport_post_fn fn, dala_transport_upload_fn upload, void* ctx)
      : fn_(fn), upload_(upload), ctx_(ctx) {}
  Result<dala::sync::HttpResponse> Post(const std::string& base_url, const dala::sync::HttpRequest& request,
                                        int64_t timeout_ms, const std::string& tls_pin) override {
    std::string url = base_url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    url += request.path;
    dala_http_response resp;
    const auto* pin = reinterpret_cast<const uint8_t*>(tls_pin.data());
    dala_status st;
    if (request.is_upload()) {
      if (upload_ == nullptr)  // a setup mistake, not the network: no point in retrying now
        return Status(Code::kState, "the app's transport has no upload function (dala_sync_options.transport_upload)");
      st = upload_(ctx_, url.c_str(), request.upload_header.c_str(), request.file_path.c_str(), request.file_offset,
                   request.file_length, timeout_ms, pin, tls_pin.size(), &resp);
    } else {
      st = fn_(ctx_, url.c_str(), reinterpret_cast<const uint8_t*>(request.body.data()), request.body.size(),
               timeout_ms, pin, tls_pin.size(), &resp);
    }
    if (st != DALA_OK) return Status(Code::kIo, "the app's transport could not reach the server");
    if (!resp.set) return Status(Code::kIo, "the app's transport gave no response");
    return dala::sync::HttpResponse{resp.status, std::move(resp.body)};
  }

 private:
  dala_transport_post_fn fn_;
  dala_transport_upload_fn upload_;
  void* ctx_;
};
}  // namespace

static std::unique_ptr<dala::sync::Transport> MakeTransport(const dala_sync_options& o) {
  if (o.transport != nullptr)
    return std::make_unique<CallbackTransport>(o.transport, o.transport_upload, o.transport_context);
  return std::make_unique<dala::sync::HttpTransport>();
}

static dala::sync::ProgressFn MakeProgress(const dala_sync_options& o) {
  if (o.progress == nullptr) return {};
  return [fn = o.progress, ctx = o.progress_context](const dala::sync::Progress& p) {
    dala_sync_progress cp{p.destination.c_str(), p.delivered, p.rejected, p.remaining, p.upload_done,
                          p.upload_total};
    fn(ctx, &cp);
  };
}

static dala_sync_result ToResult(const dala::sync::RunResult& r) {
  return dala_sync_result{r.delivered, r.rejected, r.remaining, r.unreachable ? 1 : 0};
}

dala_status dala_sync_run_once(dala_store* store, const dala_sync_options* options, dala_sync_result* out_result,
                               dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_result != nullptr, "store or out_result is NULL");
    dala_sync_options o;
    dala_sync_options_init(&o);
    if (options != nullptr) o = *options;
    DALA_CHECK_ARG(o.timeout_ms > 0, "timeout_ms must be positive");
    auto transport = MakeTransport(o);
    auto progress = MakeProgress(o);
    DALA_ASSIGN_OR_RETURN(auto r, dala::sync::RunOnce(*store->impl, *transport, dala::SystemNowMs() + o.timeout_ms,
                                                      progress));
    *out_result = ToResult(r);
    return Status::Ok();
  });
}

dala_status dala_sync_session_start(dala_store* store, const dala_sync_options* options, dala_sync_session** out_session,
                                    dala_error** out_error) noexcept {
  if (out_session != nullptr) *out_session = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_session != nullptr, "store or out_session is NULL");
    dala_sync_options o;
    dala_sync_options_init(&o);
    if (options != nullptr) o = *options;
    DALA_CHECK_ARG(o.timeout_ms > 0, "timeout_ms must be positive");
    *out_session = new dala_sync_session{
        std::make_unique<dala::sync::BackgroundSync>(*store->impl, MakeTransport(o), MakeProgress(o), o.timeout_ms)};
    return Status::Ok();
  });
}

dala_status dala_store_notify_online(dala_store* store, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr, "store is NULL");
    return store->impl->RetryOfflineNow();
  });
}

dala_status dala_store_retry_now(dala_store* store, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr, "store is NULL");
    return store->impl->RetryNow();
  });
}

void dala_sync_session_notify_online(dala_sync_session* session) noexcept {
  if (session != nullptr) session->impl->NotifyOnline();
}

void dala_sync_session_cancel(dala_sync_session* session) noexcept {
  if (session != nullptr) session->impl->Cancel();
}

dala_status dala_sync_session_last_result(dala_sync_session* session, dala_sync_result* out_result,
                                          dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(session != nullptr && out_result != nullptr, "session or out_result is NULL");
    DALA_ASSIGN_OR_RETURN(auto r, session->impl->LastResult());
    *out_result = ToResult(r);
    return Status::Ok();
  });
}

void dala_sync_session_stop(dala_sync_session* session) noexcept { delete session; }

dala_status dala_store_list_receipts(dala_store* store, dala_receipt_list** out_list, dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_list != nullptr, "store or out_list is NULL");
    DALA_ASSIGN_OR_RETURN(auto servers, store->impl->Servers());
    DALA_ASSIGN_OR_RETURN(auto rows, store->impl->Receipts());
    auto list = std::make_unique<dala_receipt_list>();
    for (auto& row : rows) {
      dala_receipt_list::Item item;
      for (const auto& s : servers) {
        if (s.destination != row.destination) continue;
        auto r = dala::protocol::VerifyReceipt(row.receipt, s.server_key);
        if (r.ok() && r->version() == row.version &&
            r->report_id() == std::string_view(reinterpret_cast<const char*>(row.id.data()), 16)) {
          item.verified = true;
          item.sequence = r->sequence();
          item.server_time_ms = r->server_time_ms();
        }
      }
      item.row = std::move(row);
      list->items.push_back(std::move(item));
    }
    *out_list = list.release();
    return Status::Ok();
  });
}

size_t dala_receipt_list_count(const dala_receipt_list* list) noexcept { return list ? list->items.size() : 0; }

dala_status dala_receipt_list_get(const dala_receipt_list* list, size_t index, dala_receipt_info* out_info,
                                  dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(list != nullptr && out_info != nullptr, "list or out_info is NULL");
    DALA_CHECK_ARG(index < list->items.size(), "index is out of range");
    const auto& it = list->items[index];
    std::memcpy(out_info->id.bytes, it.row.id.data(), 16);
    out_info->version = it.row.version;
    out_info->destination = it.row.destination.c_str();
    out_info->sequence = it.sequence;
    out_info->server_time_ms = it.server_time_ms;
    out_info->verified = it.verified ? 1 : 0;
    return Status::Ok();
  });
}

void dala_receipt_list_free(dala_receipt_list* list) noexcept { delete list; }

dala_status dala_desk_open_export(dala_desk* desk, const char* export_path, const char* out_dir,
                                  dala_desk_summary* out_summary, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && out_summary != nullptr, "desk or out_summary is NULL");
    DALA_RETURN_IF_ERROR(CheckString(export_path, "export_path"));
    DALA_RETURN_IF_ERROR(CheckString(out_dir, "out_dir"));
    DALA_ASSIGN_OR_RETURN(dala::desk::Summary s, dala::desk::OpenExport(desk->keys, export_path, out_dir));
    *out_summary = dala_desk_summary{s.reports, s.verified, s.failed};
    return Status::Ok();
  });
}
