// The C API of delivery: joining servers, syncing (once or in the background), receipts (dala.h, "Delivery").
#include "capi/handles.h"

#include <cstring>

#include "client/background_sync.h"
#include "client/function_transport.h"
#ifdef DALA_HTTP_TRANSPORT
#include "client/http_transport.h"
#endif
#include "base/clock.h"

using dala::Code;
using dala::Result;
using dala::Status;
using dala::capi::CheckString;
using dala::capi::Guard;
using dala::capi::Invalid;
using dala::capi::RawEnum;
using dala::capi::CopyString;

void dala_join_options_init(dala_join_options* options) noexcept {
  if (options != nullptr) *options = dala_join_options{0};
}

dala_status dala_store_join(dala_store* store, const char* invite, const dala_join_options* options,
                            char** out_destination, dala_error** out_error) noexcept {
  if (out_destination != nullptr) *out_destination = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr, "store is NULL");
    DALA_RETURN_IF_ERROR(CheckString(invite, "invite"));
    const bool include = options != nullptr && options->include_existing != 0;
    DALA_ASSIGN_OR_RETURN(dala::ServerInfo info, store->impl->Join(invite, include));
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
    out_info->fingerprint = s.fingerprint.c_str();
    std::memcpy(out_info->organisation_key, s.organisation_key.data(), 32);
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
  *options = dala_sync_options{30000, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
}


// The app's transport callbacks, adapted to the engine's Transport.
static Result<std::unique_ptr<dala::sync::Transport>> MakeTransport(const dala_sync_options& o) {
  using dala::sync::HttpResponse;
  if (o.proxy_url != nullptr && o.transport != nullptr)
    return Invalid("proxy_url is for the built-in transport; the app's transport carries its own proxy");
  if (o.transport == nullptr) {
#ifdef DALA_HTTP_TRANSPORT
    if (o.proxy_url == nullptr) return std::unique_ptr<dala::sync::Transport>(new dala::sync::HttpTransport());
    DALA_ASSIGN_OR_RETURN(dala::sync::ProxyAddress proxy, dala::sync::ParseProxyUrl(o.proxy_url));
    return std::unique_ptr<dala::sync::Transport>(new dala::sync::HttpTransport(proxy));
#else
    return Status(Code::kState, "this libdala was built without its HTTP transport (DALA_HTTP_TRANSPORT=OFF): "
                                "give dala_sync_options a transport");
#endif
  }
  auto call = [](auto&& fn) -> Result<HttpResponse> {
    dala_http_response resp;
    if (fn(&resp) != DALA_OK) return Status(Code::kIo, "the app's transport could not reach the server");
    if (!resp.set) return Status(Code::kIo, "the app's transport gave no response");
    return HttpResponse{resp.status, std::move(resp.body)};
  };
  dala::sync::FunctionTransport::PostFn post = [fn = o.transport, ctx = o.transport_context, call](
                                                 const std::string& url, const std::string& body, int64_t timeout_ms,
                                                 const std::string& pin) {
    return call([&](dala_http_response* r) {
      return fn(ctx, url.c_str(), reinterpret_cast<const uint8_t*>(body.data()), body.size(), timeout_ms,
                reinterpret_cast<const uint8_t*>(pin.data()), pin.size(), r);
    });
  };
  dala::sync::FunctionTransport::UploadFn upload;
  if (o.transport_upload != nullptr)
    upload = [fn = o.transport_upload, ctx = o.transport_context, call](const std::string& url,
                                                                         const dala::sync::HttpRequest& req,
                                                                         int64_t timeout_ms, const std::string& pin) {
      return call([&](dala_http_response* r) {
        return fn(ctx, url.c_str(), req.upload_header.c_str(), req.file_path.c_str(), req.file_offset, req.file_length,
                  timeout_ms, reinterpret_cast<const uint8_t*>(pin.data()), pin.size(), r);
      });
    };
  return std::unique_ptr<dala::sync::Transport>(
      new dala::sync::FunctionTransport(std::move(post), std::move(upload)));
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
    DALA_ASSIGN_OR_RETURN(auto transport, MakeTransport(o));
    auto progress = MakeProgress(o);
    dala_sync_cancel* cancel = o.cancel;
    if (cancel != nullptr) {  // a trigger from now on cuts this transport off too
      std::lock_guard lock(cancel->mu);
      DALA_CHECK_ARG(!cancel->used, "a dala_sync_cancel serves one run: create another for this one");
      cancel->used = true;
      cancel->running = transport.get();
      if (cancel->flag.load()) transport->Cancel();
    }
    // Whatever way the run ends (an exception too), a later trigger no longer reaches its transport.
    struct Unregister {
      dala_sync_cancel* c;
      ~Unregister() {
        if (c == nullptr) return;
        std::lock_guard lock(c->mu);
        c->running = nullptr;
      }
    } unregister{cancel};
    // One run at a time (two engines on one destination would record over each other): a second waits.
    std::lock_guard one_run(store->sync_run);
    DALA_ASSIGN_OR_RETURN(auto r, dala::sync::RunOnce(*store->impl, *transport, dala::SystemNowMs() + o.timeout_ms,
                                                      progress, cancel != nullptr ? &cancel->flag : nullptr));
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
    DALA_CHECK_ARG(o.cancel == nullptr, "a session is stopped with dala_sync_session_cancel, not a run_once token");
    DALA_ASSIGN_OR_RETURN(auto transport, MakeTransport(o));
    *out_session = new dala_sync_session{
        std::make_unique<dala::sync::BackgroundSync>(*store->impl, std::move(transport), MakeProgress(o), o.timeout_ms)};
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

dala_status dala_sync_cancel_create(dala_sync_cancel** out_cancel, dala_error** out_error) noexcept {
  if (out_cancel != nullptr) *out_cancel = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(out_cancel != nullptr, "out_cancel is NULL");
    *out_cancel = new dala_sync_cancel;
    return Status::Ok();
  });
}

void dala_sync_cancel_trigger(dala_sync_cancel* cancel) noexcept {
  if (cancel == nullptr) return;
  cancel->flag.store(true);
  std::lock_guard lock(cancel->mu);
  if (cancel->running != nullptr) cancel->running->Cancel();
}

void dala_sync_cancel_free(dala_sync_cancel* cancel) noexcept { delete cancel; }

void dala_sync_session_notify_online(dala_sync_session* session) noexcept {
  if (session != nullptr) session->impl->NotifyOnline();
}

void dala_sync_session_cancel(dala_sync_session* session) noexcept {
  if (session != nullptr) session->impl->Cancel();
}

dala_status dala_sync_session_get_last_result(dala_sync_session* session, dala_sync_result* out_result,
                                          dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(session != nullptr && out_result != nullptr, "session or out_result is NULL");
    DALA_ASSIGN_OR_RETURN(auto r, session->impl->LastResult());
    *out_result = ToResult(r);
    return Status::Ok();
  });
}

void dala_sync_session_free(dala_sync_session* session) noexcept { delete session; }

dala_status dala_store_list_receipts(dala_store* store, dala_receipt_list** out_list, dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && out_list != nullptr, "store or out_list is NULL");
    DALA_ASSIGN_OR_RETURN(auto items, store->impl->ListReceipts());
    *out_list = new dala_receipt_list{std::move(items)};
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
    dala::capi::FromId(it.id, out_info->id.bytes);
    out_info->version = it.version;
    out_info->destination = it.destination.c_str();
    out_info->sequence = it.sequence;
    out_info->server_time_ms = it.server_time_ms;
    out_info->verified = it.verified ? 1 : 0;
    out_info->receipt = it.receipt.data();
    out_info->receipt_size = it.receipt.size();
    return Status::Ok();
  });
}

void dala_receipt_list_free(dala_receipt_list* list) noexcept { delete list; }
