// The C API of reports: ids, drafts, typed fields, sealing and reading (dala.h, "Reports").
#include "capi/handles.h"

#include <cstring>
#include <optional>

#include "base/encoding.h"

using dala::Code;
using dala::Result;
using dala::Status;
using dala::capi::CheckString;
using dala::capi::Guard;
using dala::capi::Invalid;
using dala::capi::RawEnum;
using dala::capi::ToId;

void dala_report_id_to_string(const dala_report_id* id, char out[33]) noexcept {
  dala::capi::IdToText(id ? id->bytes : nullptr, out);
}

dala_status dala_report_id_parse(const char* text, dala_report_id* out_id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(text != nullptr && out_id != nullptr, "text or out_id is NULL");
    return dala::capi::IdFromText(text, out_id->bytes, "a report id");
  });
}

dala_status dala_report_create(dala_store* store, const char* form, dala_report** out_report,
                               dala_error** out_error) noexcept {
  if (out_report != nullptr) *out_report = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_report != nullptr, "store or out_report is NULL");
    DALA_RETURN_IF_ERROR(CheckString(form, "form"));
    DALA_ASSIGN_OR_RETURN(dala::Report r, store->impl->CreateDraft(form));
    *out_report = dala::capi::NewReport(std::move(r));
    return Status::Ok();
  });
}

static dala_status GetReport(dala_store* store, const dala_report_id* id, std::optional<uint32_t> version, bool edit,
                             dala_report** out_report, dala_error** out_error) noexcept {
  if (out_report != nullptr) *out_report = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr && out_report != nullptr, "store, id or out_report is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Report r, edit ? store->impl->Edit(ToId(id->bytes)) : store->impl->Get(ToId(id->bytes), version));
    *out_report = dala::capi::NewReport(std::move(r));
    return Status::Ok();
  });
}

dala_status dala_report_load(dala_store* store, const dala_report_id* id, dala_report** out_report,
                            dala_error** out_error) noexcept {
  return GetReport(store, id, std::nullopt, false, out_report, out_error);
}

dala_status dala_report_load_version(dala_store* store, const dala_report_id* id, uint32_t version,
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
    return store->impl->DeleteDraft(ToId(id->bytes));
  });
}

dala_status dala_report_retry(dala_store* store, const dala_report_id* id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr, "store or id is NULL");
    return store->impl->RetryRejected(ToId(id->bytes));
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
    DALA_CHECK_ARG(count <= dala::ReportLimits::kPeople, "a people field holds at most 1000 people");
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
    for (size_t i = 0; i < count; ++i) v[i] = ToId(ids[i].bytes);
    return store->impl->SealMany(v);
  });
}

void dala_report_get_id(const dala_report* report, dala_report_id* out_id) noexcept {
  if (report == nullptr || out_id == nullptr) return;
  auto id = report->r.id();
  std::memcpy(out_id->bytes, id.data(), id.size());
}
uint32_t dala_report_get_version(const dala_report* report) noexcept { return report ? report->r.content.version() : 0; }
dala_report_state dala_report_get_state(const dala_report* report) noexcept {
  return report ? static_cast<dala_report_state>(report->r.state) : DALA_REPORT_DRAFT;
}
const char* dala_report_get_form(const dala_report* report) noexcept { return report ? report->form.c_str() : ""; }
int64_t dala_report_get_created_ms(const dala_report* report) noexcept {
  return report ? report->r.content.created_ms() : 0;
}
const char* dala_report_get_narrative(const dala_report* report) noexcept {
  return report ? report->r.content.narrative().c_str() : "";
}
int dala_report_is_purged(const dala_report* report) noexcept { return report && report->r.purged ? 1 : 0; }
size_t dala_report_get_field_count(const dala_report* report) noexcept {
  return report ? static_cast<size_t>(report->r.content.fields_size()) : 0;
}
const char* dala_report_get_field_key(const dala_report* report, size_t index) noexcept {
  if (report == nullptr || index >= dala_report_get_field_count(report)) return nullptr;
  return report->r.content.fields(static_cast<int>(index)).key().c_str();
}
dala_field_type dala_report_get_field_type(const dala_report* report, size_t index) noexcept {
  if (report == nullptr || index >= dala_report_get_field_count(report)) return static_cast<dala_field_type>(0);
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

dala_status dala_report_get_seal_info(const dala_report* report, uint8_t out_device_key[32], uint8_t out_content_hash[32],
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
    *out_json = dala::capi::CopyString(dala::ReportToJson(report->r));
    return Status::Ok();
  });
}
