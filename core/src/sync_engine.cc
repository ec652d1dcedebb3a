#include "sync_engine.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "protocol.h"

namespace dala::sync {

// Text from a server (its message, a rejection reason) is shown to people and kept in the store. A hostile
// server or a man in the middle could send terminal escape sequences: keep printable UTF-8 only, bounded.
std::string Printable(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size() && out.size() < 512;) {
    auto c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    std::string_view ch = len == 0 || i + len > in.size() ? std::string_view() : in.substr(i, len);
    bool c1 = len == 2 && c == 0xC2 && static_cast<unsigned char>(in[i + 1]) < 0xA0;  // U+0080..U+009F
    if (ch.empty() || c < 0x20 || c == 0x7F || c1 || !IsValidUtf8(ch)) {
      out += '?';
      i += len == 0 ? 1 : std::min(len, in.size() - i);
    } else {
      out += ch;
      i += len;
    }
  }
  return out;
}

SyncEngine::SyncEngine(Store& store, ServerInfo server, size_t max_batch, size_t max_bytes)
    : store_(store), server_(std::move(server)), max_batch_(max_batch), max_bytes_(max_bytes) {}

void SyncEngine::Stop(std::string reason, bool unreachable) {
  stopped_ = true;
  unreachable_ = unreachable_ || unreachable;
  last_error_ = std::move(reason);
}

Result<std::optional<HttpRequest>> SyncEngine::Next() {
  if (stopped_) return std::optional<HttpRequest>();
  v1::Request req;
  uint8_t rid[16];
  randombytes_buf(rid, sizeof rid);
  req.set_request_id(rid, sizeof rid);
  req.set_device_time_ms(SystemNowMs());
  req.set_server_key(server_.server_key.data(), 32);
  if (!server_.enrolled) {
    req.mutable_enrol()->set_token(server_.token);
    return std::optional<HttpRequest>(HttpRequest{protocol::kPathEnrol, store_.SignRequest(req)});
  }
  DALA_ASSIGN_OR_RETURN(in_flight_, store_.NextBatch(server_.destination, max_batch_, max_bytes_));
  if (in_flight_.empty()) return std::optional<HttpRequest>();
  auto* push = req.mutable_push();
  for (const auto& item : in_flight_) push->add_envelopes(item.envelope.data(), item.envelope.size());
  return std::optional<HttpRequest>(HttpRequest{protocol::kPathPush, store_.SignRequest(req)});
}

Status SyncEngine::RetryAll(std::string_view reason) {
  for (const auto& item : in_flight_) DALA_RETURN_IF_ERROR(store_.MarkRetry(server_.destination, item.id, item.version, reason));
  in_flight_.clear();
  return Status::Ok();
}

Status SyncEngine::Apply(const HttpRequest& request, const Result<HttpResponse>& response) {
  const bool enrol = request.path == protocol::kPathEnrol;
  if (!response.ok()) {
    Stop("the server cannot be reached: " + response.status().message(), true);
    DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, last_error_));
    return RetryAll(kOfflineReason);
  }
  v1::Response resp;
  bool parsed = resp.ParseFromString(response->body);
  const std::string why =
      parsed && !resp.message().empty() ? Printable(resp.message()) : "HTTP " + std::to_string(response->status);
  if (response->status == 200 && parsed && resp.status() == v1::OK) {
    if (enrol) {
      server_.enrolled = true;
      return store_.SetServerState(server_.destination, true, "");
    }
    return ApplyPush(resp);
  }
  switch (parsed ? resp.status() : v1::RESPONSE_STATUS_UNSPECIFIED) {
    case v1::UNKNOWN_DEVICE:  // the server lost or never had our enrolment: enrol again, then push
      server_.enrolled = false;
      DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, false, why));
      return RetryAll("not enrolled yet");
    case v1::DEVICE_REVOKED:
    case v1::INVITE_INVALID:
    case v1::INVITE_EXPIRED:
    case v1::INVITE_USED_UP:
    case v1::WRONG_SERVER:
      // Refused for good at this server; reports stay queued and say why (a new invite can resume).
      Stop(why, false);
      DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, why));
      return RetryAll(why);
    case v1::TOO_LARGE:
      if (in_flight_.size() > 1) {  // the batch, not the reports, was too large: send smaller ones now
        max_batch_ = std::max<size_t>(1, in_flight_.size() / 2);
        max_bytes_ = std::max<size_t>(1, max_bytes_ / 2);
        for (const auto& item : in_flight_) DALA_RETURN_IF_ERROR(store_.Requeue(server_.destination, item.id, item.version));
        in_flight_.clear();
        return Status::Ok();
      }
      break;
    default:
      break;
  }
  // 5xx, a proxy's error page, an unparseable answer: try again later.
  Stop(why, response->status >= 500 || !parsed);
  DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, why));
  return RetryAll(why);
}

Status SyncEngine::ApplyPush(const v1::Response& resp) {
  std::vector<bool> answered(in_flight_.size(), false);
  for (const auto& res : resp.results()) {
    size_t i = 0;
    for (; i < in_flight_.size(); ++i) {
      const auto& it = in_flight_[i];
      if (!answered[i] && res.version() == it.version && res.report_id().size() == 16 &&
          std::memcmp(res.report_id().data(), it.id.data(), 16) == 0)
        break;
    }
    if (i == in_flight_.size()) continue;  // not something we sent
    answered[i] = true;
    const OutboxItem& it = in_flight_[i];
    switch (res.code()) {
      case v1::STORED:
      case v1::DUPLICATE: {
        // A receipt counts only if the pinned server key signed it for exactly what we sent: the phone
        // rebuilds it from what it knows and checks the signature.
        crypto::Hash sent = crypto::Blake2b256(it.envelope);
        crypto::PublicKey me = store_.device_key();
        v1::Receipt receipt;
        receipt.set_report_id(it.id.data(), it.id.size());
        receipt.set_version(it.version);
        receipt.set_content_hash(sent.data(), sent.size());
        receipt.set_server_time_ms(res.server_time_ms());
        receipt.set_sequence(res.sequence());
        receipt.set_server_key(server_.server_key.data(), 32);
        receipt.set_device_key(me.data(), me.size());
        auto kept = protocol::CompleteReceipt(receipt, res.receipt_signature(), server_.server_key);
        if (!kept.ok()) {
          DALA_RETURN_IF_ERROR(store_.MarkRetry(server_.destination, it.id, it.version,
                                                "the server's receipt did not verify; kept queued"));
          last_error_ = "a receipt did not verify against the organisation's server key";
          break;
        }
        DALA_RETURN_IF_ERROR(store_.MarkDelivered(server_.destination, it.id, it.version, crypto::Bytes(*kept)));
        ++delivered_;
        break;
      }
      case v1::REJECTED:
        DALA_RETURN_IF_ERROR(store_.MarkRejected(server_.destination, it.id, it.version, Printable(res.reason())));
        ++rejected_;
        break;
      default:
        DALA_RETURN_IF_ERROR(store_.MarkRetry(server_.destination, it.id, it.version,
                                              res.reason().empty() ? "the server asked to retry later"
                                                                   : Printable(res.reason())));
        break;
    }
  }
  for (size_t i = 0; i < in_flight_.size(); ++i)
    if (!answered[i])
      DALA_RETURN_IF_ERROR(store_.MarkRetry(server_.destination, in_flight_[i].id, in_flight_[i].version,
                                            "the server did not answer for this report"));
  in_flight_.clear();
  return Status::Ok();
}

Result<RunResult> RunOnce(Store& store, Transport& transport, int64_t deadline_ms, const ProgressFn& progress,
                          const std::atomic<bool>* cancel) {
  RunResult result;
  DALA_ASSIGN_OR_RETURN(auto servers, store.Servers());
  for (auto& server : servers) {
    SyncEngine engine(store, server);
    size_t url = 0;
    while (SystemNowMs() < deadline_ms && !(cancel != nullptr && cancel->load())) {
      DALA_ASSIGN_OR_RETURN(auto req, engine.Next());
      if (!req) break;
      int64_t left = deadline_ms - SystemNowMs();
      auto resp = transport.Post(engine.server().urls[url], *req, std::max<int64_t>(left, 1), engine.server().tls_pin);
      if (!resp.ok() && url + 1 < engine.server().urls.size()) {
        // Try the next address (e.g. an onion service) with the same request: it is idempotent.
        ++url;
        resp = transport.Post(engine.server().urls[url], *req, std::max<int64_t>(deadline_ms - SystemNowMs(), 1),
                              engine.server().tls_pin);
      }
      DALA_RETURN_IF_ERROR(engine.Apply(*req, resp));
      if (progress) {
        DALA_ASSIGN_OR_RETURN(OutboxStats st, store.Stats(server.destination));
        progress(Progress{server.destination, engine.delivered(), engine.rejected(), st.pending + st.in_flight});
      }
    }
    result.delivered += engine.delivered();
    result.rejected += engine.rejected();
    result.unreachable = result.unreachable || engine.unreachable();
    if (!engine.last_error().empty()) result.last_error = engine.last_error();
    DALA_ASSIGN_OR_RETURN(OutboxStats st, store.Stats(server.destination));
    result.remaining += st.pending + st.in_flight;
  }
  return result;
}

}  // namespace dala::sync
