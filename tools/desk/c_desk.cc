// The desk's C API (dala/desk.h): each entry point a few lines over desk/ inside Guard.
#include <dala/desk.h>

#include <cstring>

#include "capi/boundary.h"
#include "desk/desk_key.h"
#include "desk/export_opener.h"

struct dala_desk {
  dala::crypto::BoxKeyPair keys;
};

using dala::Status;
using dala::capi::CheckString;
using dala::capi::Guard;

void dala_desk_options_init(dala_desk_options* options) noexcept {
  if (options == nullptr) return;
  dala::KdfParams d;
  *options = dala_desk_options{d.opslimit, d.memlimit};
}

dala_status dala_desk_keygen(const char* path, const dala_credential* credential, const dala_desk_options* options,
                             uint8_t out_public_key[32], dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(path != nullptr && path[0] != '\0' && out_public_key != nullptr, "path or out_public_key is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, dala::capi::ToCredential(credential));
    dala_desk_options o;
    dala_desk_options_init(&o);
    if (options != nullptr) o = *options;
    DALA_ASSIGN_OR_RETURN(auto pk, dala::desk::GenerateKey(path, cred, {o.kdf_opslimit, o.kdf_memlimit}));
    std::memcpy(out_public_key, pk.data(), pk.size());
    return Status::Ok();
  });
}

dala_status dala_desk_open(const char* path, const dala_credential* credential, dala_desk** out_desk,
                           dala_error** out_error) noexcept {
  if (out_desk != nullptr) *out_desk = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(path != nullptr && out_desk != nullptr, "path or out_desk is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, dala::capi::ToCredential(credential));
    DALA_ASSIGN_OR_RETURN(auto keys, dala::desk::OpenKey(path, cred));
    *out_desk = new dala_desk{std::move(keys)};
    return Status::Ok();
  });
}

void dala_desk_close(dala_desk* desk) noexcept { delete desk; }

dala_status dala_desk_get_public_key(dala_desk* desk, uint8_t out_public_key[32], dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && out_public_key != nullptr, "desk or out_public_key is NULL");
    std::memcpy(out_public_key, desk->keys.public_key.data(), 32);
    return Status::Ok();
  });
}

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
