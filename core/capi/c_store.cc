// The C API of stores: lifecycle, policy, listing and outbox statistics (dala.h, "Stores").
#include "capi/handles.h"

#include <cstring>
#include <functional>

using dala::Code;
using dala::Result;
using dala::Status;
using dala::capi::CheckString;
using dala::capi::Guard;
using dala::capi::Invalid;
using dala::capi::RawEnum;
using dala::capi::ToCredential;
using dala::capi::ToOptions;

namespace dala::capi {
StoreOptions ToOptions(const dala_store_options* o) {
  dala_store_options d;
  dala_store_options_init(&d);
  if (o == nullptr) o = &d;
  StoreOptions s;
  s.kdf.opslimit = o->kdf_opslimit;
  s.kdf.memlimit = o->kdf_memlimit;
  s.delete_after_delivery = o->delete_after_delivery != 0;
  s.backoff_base_ms = o->backoff_base_ms;
  s.backoff_max_ms = o->backoff_max_ms;
  if (o->key_file_name != nullptr) s.names.key = o->key_file_name;
  if (o->database_file_name != nullptr) s.names.database = o->database_file_name;
  if (o->media_dir_name != nullptr) s.names.media = o->media_dir_name;
  return s;
}
}  // namespace dala::capi

static Status CheckDir(const char* dir) {
  if (dir == nullptr || dir[0] == '\0') return Invalid("the store directory is NULL or empty");
  return Status::Ok();
}

void dala_store_options_init(dala_store_options* o) noexcept {
  if (o == nullptr) return;
  dala::StoreOptions d;
  o->kdf_opslimit = d.kdf.opslimit;
  o->kdf_memlimit = d.kdf.memlimit;
  o->delete_after_delivery = d.delete_after_delivery ? 1 : 0;
  o->backoff_base_ms = d.backoff_base_ms;
  o->backoff_max_ms = d.backoff_max_ms;
  o->key_file_name = nullptr;
  o->database_file_name = nullptr;
  o->media_dir_name = nullptr;
  o->destroy_platform_key = nullptr;
  o->destroy_platform_key_context = nullptr;
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
    return dala::Store::ChangeCredential(dir, old_cred, new_cred, ToOptions(options));
  });
}

dala_status dala_store_rekey(const char* dir, const dala_credential* old_credential,
                             const dala_credential* new_credential, const dala_store_options* options,
                             dala_rekey_progress_fn progress, void* progress_context, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_RETURN_IF_ERROR(CheckDir(dir));
    DALA_ASSIGN_OR_RETURN(dala::Credential old_cred, ToCredential(old_credential));
    DALA_ASSIGN_OR_RETURN(dala::Credential new_cred, ToCredential(new_credential));
    dala::RekeyProgressFn fn;
    if (progress != nullptr)
      fn = [progress, progress_context](dala::RekeyPhase phase, uint64_t done, uint64_t total) {
        progress(progress_context, static_cast<int>(phase), done, total);
      };
    return dala::Store::Rekey(dir, old_cred, new_cred, ToOptions(options), fn);
  });
}

dala_status dala_store_wipe(const char* dir, dala_error** out_error) noexcept {
  return dala_store_wipe_with_options(dir, nullptr, out_error);
}

dala_status dala_store_wipe_with_options(const char* dir, const dala_store_options* options,
                                         dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_RETURN_IF_ERROR(CheckDir(dir));
    std::function<Status()> destroy;
    if (options != nullptr && options->destroy_platform_key != nullptr) {
      destroy = [options]() -> Status {
        if (options->destroy_platform_key(options->destroy_platform_key_context) != 0)
          return {Code::kIo, "the callback reported a failure"};
        return Status::Ok();
      };
    }
    return dala::Store::Wipe(dir, ToOptions(options).names, destroy);
  });
}

dala_status dala_store_set_duress(const char* dir, const dala_credential* credential,
                                  const uint8_t* duress_passphrase, size_t duress_passphrase_length,
                                  const dala_store_options* options, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_RETURN_IF_ERROR(CheckDir(dir));
    DALA_CHECK_ARG(duress_passphrase != nullptr && duress_passphrase_length >= 1 && duress_passphrase_length <= 1024,
                   "the duress passphrase must be 1 to 1024 bytes");
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, ToCredential(credential));
    dala::SecretBuffer duress(duress_passphrase, duress_passphrase_length);
    return dala::Store::SetDuress(dir, cred, duress, ToOptions(options));
  });
}

dala_status dala_store_clear_duress(const char* dir, const dala_credential* credential,
                                    const dala_store_options* options, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_RETURN_IF_ERROR(CheckDir(dir));
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, ToCredential(credential));
    return dala::Store::ClearDuress(dir, cred, ToOptions(options));
  });
}

dala_status dala_store_get_device_key(dala_store* store, uint8_t out_key[32], dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_key != nullptr, "store or out_key is NULL");
    auto pk = store->impl->device_key();
    std::memcpy(out_key, pk.data(), pk.size());
    return Status::Ok();
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

dala_status dala_store_list_reports(dala_store* store, dala_report_list** out_list, dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_list != nullptr, "store or out_list is NULL");
    DALA_ASSIGN_OR_RETURN(auto items, store->impl->List());
    *out_list = new dala_report_list{std::move(items), {}};
    return Status::Ok();
  });
}

void dala_report_list_options_init(dala_report_list_options* options) noexcept {
  if (options != nullptr) *options = dala_report_list_options{50, nullptr, 0, nullptr};
}

dala_status dala_store_list_reports_page(dala_store* store, const dala_report_list_options* options,
                                         dala_report_list** out_list, dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_list != nullptr, "store or out_list is NULL");
    dala_report_list_options o;
    dala_report_list_options_init(&o);
    if (options != nullptr) o = *options;
    DALA_CHECK_ARG(o.limit >= 1 && o.limit <= dala::ReportQuery::kMaxPage, "limit must be 1 to 1000");
    dala::ReportQuery q;
    q.limit = o.limit;
    q.states = o.states;
    if (o.after != nullptr) {
      DALA_RETURN_IF_ERROR(CheckString(o.after, "after"));
      DALA_ASSIGN_OR_RETURN(q.after, dala::ReportCursor::Decode(o.after));
    }
    if (o.form != nullptr) {
      DALA_RETURN_IF_ERROR(CheckString(o.form, "form"));
      q.form = o.form;
    }
    DALA_ASSIGN_OR_RETURN(dala::ReportPage page, store->impl->ListPage(q));
    *out_list = new dala_report_list{std::move(page.items), page.next ? page.next->Encode() : std::string()};
    return Status::Ok();
  });
}

const char* dala_report_list_next(const dala_report_list* list) noexcept {
  return list != nullptr && !list->next.empty() ? list->next.c_str() : nullptr;
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

