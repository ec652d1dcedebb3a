// The desk's C API (dala/desk.h): each entry point a few lines over desk/ inside Guard.
#include <dala/desk.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "capi/boundary.h"
#include "client/http_transport.h"
#include "desk/desk_key.h"
#include "desk/desk_pull.h"
#include "desk/desk_store.h"
#include "desk/evidence.h"
#include "desk/web/web_http.h"
#include "desk/export_opener.h"
#include "desk/log_verifier.h"
#include "base/clock.h"
#include "base/encoding.h"
#include "base/fsutil.h"
#include "format/organisation.h"
#include "format/report.h"

struct dala_desk {
  dala::desk::Organisation org;
};

struct dala_desk_store {
  std::unique_ptr<dala::desk::DeskStore> store;
};

struct dala_desk_server {
  std::unique_ptr<dala::desk::web::WebServer> server;
};

using dala::Status;
using dala::capi::CheckString;
using dala::capi::Guard;

void dala_desk_options_init(dala_desk_options* options) noexcept {
  if (options == nullptr) return;
  dala::KdfParams d;
  *options = dala_desk_options{d.opslimit, d.memlimit, nullptr};
}

dala_status dala_desk_keygen(const char* path, const dala_credential* credential, const dala_desk_options* options,
                             char** out_identity, dala_error** out_error) noexcept {
  if (out_identity != nullptr) *out_identity = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(path != nullptr && path[0] != '\0' && out_identity != nullptr, "path or out_identity is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, dala::capi::ToCredential(credential));
    dala_desk_options o;
    dala_desk_options_init(&o);
    if (options != nullptr) o = *options;
    DALA_ASSIGN_OR_RETURN(std::string id, dala::desk::GenerateKey(path, cred, {o.kdf_opslimit, o.kdf_memlimit},
                                                                  o.name ? o.name : ""));
    *out_identity = dala::capi::CopyString(id);
    return Status::Ok();
  });
}

dala_status dala_desk_open(const char* path, const dala_credential* credential, dala_desk** out_desk,
                           dala_error** out_error) noexcept {
  if (out_desk != nullptr) *out_desk = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(path != nullptr && out_desk != nullptr, "path or out_desk is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Credential cred, dala::capi::ToCredential(credential));
    DALA_ASSIGN_OR_RETURN(auto org, dala::desk::OpenKey(path, cred));
    *out_desk = new dala_desk{std::move(org)};
    return Status::Ok();
  });
}

void dala_desk_close(dala_desk* desk) noexcept { delete desk; }

dala_status dala_desk_get_identity(dala_desk* desk, char** out_identity, dala_error** out_error) noexcept {
  if (out_identity != nullptr) *out_identity = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && out_identity != nullptr, "desk or out_identity is NULL");
    *out_identity = dala::capi::CopyString(dala::protocol::IdentityText(desk->org.root.public_key));
    return Status::Ok();
  });
}

dala_status dala_desk_get_fingerprint(dala_desk* desk, char** out_fingerprint, dala_error** out_error) noexcept {
  if (out_fingerprint != nullptr) *out_fingerprint = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && out_fingerprint != nullptr, "desk or out_fingerprint is NULL");
    *out_fingerprint = dala::capi::CopyString(dala::protocol::Fingerprint(desk->org.root.public_key));
    return Status::Ok();
  });
}

void dala_desk_invite_options_init(dala_desk_invite_options* options) noexcept {
  if (options == nullptr) return;
  *options = dala_desk_invite_options{};
  options->uses = 1;
}

dala_status dala_desk_create_invite(dala_desk* desk, const dala_desk_invite_options* options, char** out_invite,
                                    dala_error** out_error) noexcept {
  if (out_invite != nullptr) *out_invite = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && options != nullptr && out_invite != nullptr,
                   "desk, options or out_invite is NULL");
    DALA_CHECK_ARG(options->urls != nullptr || options->url_count == 0, "urls is NULL");
    dala::desk::InviteParams p;
    std::memcpy(p.server.data(), options->server_key, 32);
    for (size_t i = 0; i < options->url_count; ++i) {
      DALA_RETURN_IF_ERROR(CheckString(options->urls[i], "a url"));
      p.urls.emplace_back(options->urls[i]);
    }
    p.uses = options->uses;
    const int64_t now = dala::SystemNowMs();
    p.expires_ms = options->expires_ms != 0 ? options->expires_ms : now + 7 * 24 * 3600 * 1000LL;
    if (options->tls_pin != nullptr) p.tls_pin.assign(reinterpret_cast<const char*>(options->tls_pin), 32);
    p.addresses_equivalent = options->addresses_equivalent != 0;
    DALA_ASSIGN_OR_RETURN(std::string invite, dala::desk::MakeInvite(desk->org, p, now));
    *out_invite = dala::capi::CopyString(invite);
    return Status::Ok();
  });
}

dala_status dala_desk_rotate_recipients(dala_desk* desk, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr, "desk is NULL");
    return dala::desk::RotateRecipients(desk->org, dala::SystemNowMs());
  });
}

dala_status dala_desk_revoke_server(dala_desk* desk, const uint8_t server_key[32], int64_t revoked_ms,
                                    dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && server_key != nullptr, "desk or server_key is NULL");
    dala::crypto::PublicKey k;
    std::memcpy(k.data(), server_key, 32);
    const int64_t now = dala::SystemNowMs();
    return dala::desk::RevokeServer(desk->org, k, revoked_ms != 0 ? revoked_ms : now, now);
  });
}

dala_status dala_desk_write_statement(dala_desk* desk, const char* path, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr, "desk is NULL");
    DALA_RETURN_IF_ERROR(CheckString(path, "path"));
    return dala::fs::WriteFileAtomic(path, dala::crypto::Bytes(desk->org.signed_statement));
  });
}

namespace {

// The C options as the desk's (paths and receipts checked).
// The certificates (PEM) a desk trusts for time, from a file.
dala::Result<std::string> ReadTsaPem(const char* path) {
  DALA_RETURN_IF_ERROR(CheckString(path, "tsa_cert_path"));
  DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> pem, dala::fs::ReadFile(path, 1 << 20));
  std::string out(pem.begin(), pem.end());
  if (out.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return Status(dala::Code::kInvalidArgument, "the TSA certificate file holds no PEM certificate");
  return out;
}

Status ToOpenOptions(const dala_desk_open_options* options, dala::desk::OpenOptions* out) {
  dala::desk::OpenOptions& o = *out;
  if (options == nullptr) return Status::Ok();
  if (options->summary_path != nullptr) {
    DALA_RETURN_IF_ERROR(CheckString(options->summary_path, "summary_path"));
    o.summary_path = options->summary_path;
  }
  if (options->earlier_export_count > 0) {
    DALA_CHECK_ARG(options->earlier_exports != nullptr, "earlier_exports is NULL");
    for (size_t i = 0; i < options->earlier_export_count; ++i) {
      DALA_RETURN_IF_ERROR(CheckString(options->earlier_exports[i], "an earlier export"));
      o.earlier_exports.emplace_back(options->earlier_exports[i]);
    }
  }
  if (options->tsa_cert_path != nullptr) {
    DALA_ASSIGN_OR_RETURN(o.trusted_tsa_pem, ReadTsaPem(options->tsa_cert_path));
  }
  if (options->receipt_count > 0) {
    DALA_CHECK_ARG(options->receipts != nullptr && options->receipt_sizes != nullptr, "receipts is NULL");
    for (size_t i = 0; i < options->receipt_count; ++i) {
      DALA_CHECK_ARG(options->receipts[i] != nullptr || options->receipt_sizes[i] == 0, "a receipt is NULL");
      o.phone_receipts.emplace_back(reinterpret_cast<const char*>(options->receipts[i]), options->receipt_sizes[i]);
    }
  }
  return Status::Ok();
}

dala_desk_summary ToSummary(const dala::desk::Summary& s) {
  return dala_desk_summary{s.reports, s.verified, s.failed, s.duplicates, s.reordered, s.unknown_fields,
                           s.missing, s.phone_receipts_invalid, s.log_problems, s.timestamps, s.timestamp_problems};
}

}  // namespace

void dala_desk_open_options_init(dala_desk_open_options* options) noexcept {
  if (options != nullptr) *options = dala_desk_open_options{};
}

dala_status dala_desk_open_export(dala_desk* desk, const char* export_path, const char* out_dir,
                                  const dala_desk_open_options* options, dala_desk_summary* out_summary,
                                  dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && out_summary != nullptr, "desk or out_summary is NULL");
    DALA_RETURN_IF_ERROR(CheckString(export_path, "export_path"));
    DALA_CHECK_ARG(out_dir == nullptr || *out_dir != '\0', "out_dir is empty (NULL writes nothing)");
    dala::desk::OpenOptions o;
    DALA_RETURN_IF_ERROR(ToOpenOptions(options, &o));
    DALA_ASSIGN_OR_RETURN(dala::desk::Summary s,
                          dala::desk::OpenExport(desk->org, export_path, out_dir != nullptr ? out_dir : "", o));
    *out_summary = ToSummary(s);
    return Status::Ok();
  });
}

void dala_desk_log_options_init(dala_desk_log_options* options) noexcept {
  if (options != nullptr) *options = dala_desk_log_options{};
}

dala_status dala_desk_verify_log(const char* organisation_identity, const dala_desk_log_options* options,
                                 char** out_json, dala_error** out_error) noexcept {
  if (out_json != nullptr) *out_json = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(out_json != nullptr, "out_json is NULL");
    DALA_RETURN_IF_ERROR(CheckString(organisation_identity, "organisation_identity"));
    DALA_ASSIGN_OR_RETURN(dala::crypto::PublicKey root, dala::protocol::ParseIdentity(organisation_identity));
    dala::desk::LogVerifyInputs in;
    if (options != nullptr) {
      if (options->export_path != nullptr) in.export_path = options->export_path;
      if (options->receipt_count > 0) {
        DALA_CHECK_ARG(options->receipts != nullptr && options->receipt_sizes != nullptr, "receipts is NULL");
        for (size_t i = 0; i < options->receipt_count; ++i) {
          DALA_CHECK_ARG(options->receipts[i] != nullptr || options->receipt_sizes[i] == 0, "a receipt is NULL");
          in.phone_receipts.emplace_back(reinterpret_cast<const char*>(options->receipts[i]), options->receipt_sizes[i]);
        }
      }
      if (options->statement_count > 0) {
        DALA_CHECK_ARG(options->statement_paths != nullptr, "statement_paths is NULL");
        for (size_t i = 0; i < options->statement_count; ++i) {
          DALA_RETURN_IF_ERROR(CheckString(options->statement_paths[i], "a statement path"));
          DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> st, dala::fs::ReadFile(options->statement_paths[i], 1 << 20));
          in.statements.emplace_back(st.begin(), st.end());
        }
      }
      if (options->tsa_cert_path != nullptr) {
        DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> pem, dala::fs::ReadFile(options->tsa_cert_path, 1 << 20));
        in.trusted_tsa_pem.assign(pem.begin(), pem.end());
        if (in.trusted_tsa_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
          return Status(dala::Code::kInvalidArgument, "the TSA certificate file holds no PEM certificate");
      }
    }
    DALA_ASSIGN_OR_RETURN(dala::desk::LogVerdict v, dala::desk::VerifyLog(root, in));
    std::string problems = "[";
    for (size_t i = 0; i < v.problems.size(); ++i) problems += (i ? "," : "") + dala::JsonEscape(v.problems[i]);
    problems += "]";
    const std::string json = "{\"server_key\":" + dala::JsonEscape(v.server_key) +
                             ",\"leaves\":" + std::to_string(v.leaves) + ",\"head_size\":" + std::to_string(v.head_size) +
                             ",\"head_time_ms\":" + std::to_string(v.head_time_ms) +
                             ",\"statement_version\":" + std::to_string(v.statement_version) +
                             ",\"receipts\":" + std::to_string(v.receipts) +
                             ",\"receipts_in_log\":" + std::to_string(v.receipts_in_log) +
                             ",\"timestamps\":" + std::to_string(v.timestamps) + ",\"problems\":" + problems +
                             ",\"ok\":" + (v.ok() ? "true" : "false") + "}";
    *out_json = dala::capi::CopyString(json);
    return Status::Ok();
  });
}

dala_status dala_desk_store_open(dala_desk* desk, const char* data_dir, dala_desk_store** out_store,
                                 dala_error** out_error) noexcept {
  if (out_store != nullptr) *out_store = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && out_store != nullptr, "desk or out_store is NULL");
    DALA_RETURN_IF_ERROR(CheckString(data_dir, "data_dir"));
    DALA_ASSIGN_OR_RETURN(auto store, dala::desk::DeskStore::Open(desk->org, data_dir));
    *out_store = new dala_desk_store{std::move(store)};
    return Status::Ok();
  });
}

void dala_desk_store_close(dala_desk_store* store) noexcept { delete store; }

// The fields of an import's result as JSON (without braces): dala_desk_store_import and _pull.
std::string ImportJson(const dala::desk::ImportResult& r) {
  std::string problems = "[";
  for (size_t i = 0; i < r.problems.size(); ++i) problems += (i ? "," : "") + dala::JsonEscape(r.problems[i]);
  problems += "]";
  std::string summary = r.summary_json;
  while (!summary.empty() && summary.back() == '\n') summary.pop_back();
  return std::string("\"imported\":") + (r.imported ? "true" : "false") + ",\"added\":" + std::to_string(r.added) +
         ",\"held\":" + std::to_string(r.held) + ",\"reports_changed\":" + std::to_string(r.reports_changed) +
         ",\"problems\":" + problems + ",\"summary\":" + (summary.empty() ? "null" : summary);
}

dala_status dala_desk_store_import(dala_desk_store* store, const char* export_path,
                                   const dala_desk_open_options* options, int keep_failed,
                                   dala_desk_import_result* out_result, char** out_json,
                                   dala_error** out_error) noexcept {
  if (out_json != nullptr) *out_json = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_result != nullptr, "store or out_result is NULL");
    DALA_RETURN_IF_ERROR(CheckString(export_path, "export_path"));
    dala::desk::OpenOptions o;
    DALA_RETURN_IF_ERROR(ToOpenOptions(options, &o));
    o.summary_path.clear();
    o.earlier_exports.clear();
    DALA_ASSIGN_OR_RETURN(dala::desk::ImportResult r, store->store->Import(export_path, std::move(o), keep_failed != 0));
    *out_result = dala_desk_import_result{ToSummary(r.summary), r.imported ? 1 : 0, r.added, r.held, r.reports_changed};
    if (out_json != nullptr) *out_json = dala::capi::CopyString("{" + ImportJson(r) + "}");
    return Status::Ok();
  });
}

void dala_desk_pull_options_init(dala_desk_pull_options* options) noexcept {
  if (options == nullptr) return;
  *options = dala_desk_pull_options{};
  options->timeout_ms = 120000;
}

dala_status dala_desk_store_pull(dala_desk* desk, dala_desk_store* store, const dala_desk_pull_options* options,
                                 char** out_json, dala_error** out_error) noexcept {
  if (out_json != nullptr) *out_json = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(desk != nullptr && store != nullptr && options != nullptr && out_json != nullptr,
                   "desk, store, options or out_json is NULL");
    DALA_CHECK_ARG(&store->store->org() == &desk->org, "the store was opened on another desk");
    DALA_CHECK_ARG(options->urls != nullptr || options->url_count == 0, "urls is NULL");
    DALA_CHECK_ARG(options->timeout_ms > 0, "timeout_ms must be positive");
    dala::desk::PullOptions o;
    for (size_t i = 0; i < options->url_count; ++i) {
      DALA_RETURN_IF_ERROR(CheckString(options->urls[i], "a url"));
      o.target.urls.emplace_back(options->urls[i]);
    }
    if (options->server_key != nullptr) std::memcpy(o.target.server.data(), options->server_key, 32);
    if (options->tls_pin != nullptr) o.target.tls_pin.assign(reinterpret_cast<const char*>(options->tls_pin), 32);
    o.timeout_ms = options->timeout_ms;
    if (options->tsa_cert_path != nullptr) {
      dala_desk_open_options oo;
      dala_desk_open_options_init(&oo);
      oo.tsa_cert_path = options->tsa_cert_path;
      DALA_RETURN_IF_ERROR(ToOpenOptions(&oo, &o.open));
    }
    std::optional<dala::sync::ProxyAddress> proxy;
    if (options->proxy_url != nullptr) {
      DALA_RETURN_IF_ERROR(CheckString(options->proxy_url, "proxy_url"));
      DALA_ASSIGN_OR_RETURN(proxy, dala::sync::ParseProxyUrl(options->proxy_url));
    }
    dala::sync::HttpTransport transport(proxy);
    DALA_ASSIGN_OR_RETURN(auto results, dala::desk::Pull(desk->org, *store->store, o, transport));
    std::string json = "{\"servers\":[";
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      json += std::string(i ? "," : "") + "{\"server_key\":\"" + dala::encoding::ToHex(r.server) +
              "\",\"log_from\":" + std::to_string(r.log_from) + ",\"log_size\":" + std::to_string(r.log_size) +
              ",\"pages\":" + std::to_string(r.pages) + ",\"media_files\":" + std::to_string(r.media_files) +
              ",\"media_bytes\":" + std::to_string(r.media_bytes) +
              ",\"listed_desk\":" + (r.listed_desk ? "true" : "false") +
              ",\"error\":" + (r.error.ok() ? std::string("null") : dala::JsonEscape(r.error.message())) + "," +
              ImportJson(r.import) + "}";
    }
    *out_json = dala::capi::CopyString(json + "]}");
    return Status::Ok();
  });
}

dala_status dala_desk_store_export(dala_desk_store* store, const char* format, const char* out_path,
                                   const char* const* report_ids, size_t report_count, uint64_t* out_rows,
                                   dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_rows != nullptr, "store or out_rows is NULL");
    DALA_RETURN_IF_ERROR(CheckString(format, "format"));
    DALA_RETURN_IF_ERROR(CheckString(out_path, "out_path"));
    DALA_CHECK_ARG(report_ids != nullptr || report_count == 0, "report_ids is NULL");
    const std::string f = format;
    DALA_CHECK_ARG(f == "csv" || f == "jsonl" || f == "evidence", "format must be csv, jsonl or evidence");
    std::vector<std::string> ids;
    for (size_t i = 0; i < report_count; ++i) {
      DALA_RETURN_IF_ERROR(CheckString(report_ids[i], "a report id"));
      ids.emplace_back(report_ids[i]);
    }
    dala::desk::ListQuery q;
    q.sort = "received";
    q.descending = false;
    if (!ids.empty()) {
      DALA_ASSIGN_OR_RETURN(q.rids, store->store->FindReports(ids));
    }
    if (f == "evidence") {
      if (q.rids.empty()) {
        q.per_page = 0;
        DALA_ASSIGN_OR_RETURN(auto all, dala::desk::ListReports(store->store->db(), q));
        for (const auto& r : all.rows) q.rids.push_back(r.rid);
      }
      DALA_ASSIGN_OR_RETURN(*out_rows, dala::desk::WriteEvidence(*store->store, q.rids, out_path));
      return Status::Ok();
    }
    DALA_ASSIGN_OR_RETURN(*out_rows, store->store->ExportTable(
        q, f == "csv" ? dala::desk::TableFormat::kCsv : dala::desk::TableFormat::kJsonLines, out_path));
    return Status::Ok();
  });
}

void dala_desk_serve_options_init(dala_desk_serve_options* options) noexcept {
  if (options != nullptr) *options = dala_desk_serve_options{};
}

dala_status dala_desk_server_start(dala_desk_store* store, const dala_desk_serve_options* options,
                                   dala_desk_server** out_server, dala_error** out_error) noexcept {
  if (out_server != nullptr) *out_server = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_server != nullptr, "store or out_server is NULL");
    dala::desk::web::ServeOptions o;
    if (options != nullptr) {
      if (options->listen != nullptr) o.listen = options->listen;
      if (options->tls_cert_path != nullptr) o.tls_cert = options->tls_cert_path;
      if (options->tls_key_path != nullptr) o.tls_key = options->tls_key_path;
      if (options->name != nullptr) o.name = options->name;
      if (options->tiles_dir != nullptr) o.tiles_dir = options->tiles_dir;
    }
    DALA_ASSIGN_OR_RETURN(auto server, dala::desk::web::WebServer::Start(*store->store, o));
    *out_server = new dala_desk_server{std::move(server)};
    return Status::Ok();
  });
}

dala_status dala_desk_server_get_url(dala_desk_server* server, char** out_url, dala_error** out_error) noexcept {
  if (out_url != nullptr) *out_url = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(server != nullptr && out_url != nullptr, "server or out_url is NULL");
    *out_url = dala::capi::CopyString(server->server->url());
    return Status::Ok();
  });
}

void dala_desk_server_stop(dala_desk_server* server) noexcept {
  if (server == nullptr) return;
  server->server->Stop();
  delete server;
}

dala_status dala_desk_verify_package(const char* organisation_identity, const char* package_path,
                                     const char* tsa_cert_path, char** out_json, dala_error** out_error) noexcept {
  if (out_json != nullptr) *out_json = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(out_json != nullptr, "out_json is NULL");
    DALA_RETURN_IF_ERROR(CheckString(organisation_identity, "organisation_identity"));
    DALA_RETURN_IF_ERROR(CheckString(package_path, "package_path"));
    DALA_ASSIGN_OR_RETURN(dala::crypto::PublicKey root, dala::protocol::ParseIdentity(organisation_identity));
    std::string pem;
    if (tsa_cert_path != nullptr) {
      DALA_ASSIGN_OR_RETURN(pem, ReadTsaPem(tsa_cert_path));
    }
    DALA_ASSIGN_OR_RETURN(dala::desk::EvidenceVerdict v, dala::desk::VerifyEvidence(root, package_path, pem));
    auto list = [](const std::vector<std::string>& items) {
      std::string j = "[";
      for (size_t i = 0; i < items.size(); ++i) j += (i ? "," : "") + dala::JsonEscape(items[i]);
      return j + "]";
    };
    *out_json = dala::capi::CopyString(
        std::string("{\"ok\":") + (v.ok() ? "true" : "false") + ",\"organisation\":" + dala::JsonEscape(v.organisation) +
        ",\"reports\":" + std::to_string(v.reports) + ",\"versions\":" + std::to_string(v.versions) +
        ",\"attachments\":" + std::to_string(v.attachments) + ",\"custody_entries\":" +
        std::to_string(v.custody_entries) + ",\"timestamps\":" + std::to_string(v.timestamps) +
        ",\"timestamps_unchecked\":" + std::to_string(v.timestamps_unchecked) + ",\"checked\":" + list(v.checked) +
        ",\"problems\":" + list(v.problems) + "}");
    return Status::Ok();
  });
}
