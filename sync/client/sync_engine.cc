#include "client/sync_engine.h"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <thread>

#include "client/address_policy.h"
#include "crypto/attachment_file.h"
#include "base/fsutil.h"
#include "format/invite.h"
#include "format/log.h"
#include "format/merkle.h"
#include "format/request.h"
#include "format/response.h"
#include "protocol/http_api.h"
#include "base/clock.h"
#include "base/encoding.h"
#include "format/envelope.h"

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

const char kNotAuthorised[] =
    "the organisation no longer authorises this server (its key was revoked or expired); ask it for a new invite";

SyncEngine::SyncEngine(Store& store, ServerInfo server, size_t max_batch, size_t max_bytes)
    : store_(store), server_(std::move(server)), max_batch_(max_batch), max_bytes_(max_bytes),
      witness_(LogWitness::Load(server_.log_witness, server_.server_key)) {}

void SyncEngine::Stop(std::string reason, bool unreachable) {
  stopped_ = true;
  unreachable_ = unreachable_ || unreachable;
  last_error_ = std::move(reason);
}

namespace {

// What every request carries.
v1::Request NewRequest(const ServerInfo& server) {
  v1::Request req;
  uint8_t rid[16];
  randombytes_buf(rid, sizeof rid);
  req.set_request_id(rid, sizeof rid);
  req.set_device_time_ms(SystemNowMs());
  req.set_server_key(server.server_key.data(), 32);
  req.set_statement_version(server.statement_version);
  return req;
}

}  // namespace

Result<std::optional<HttpRequest>> SyncEngine::Next() {
  if (!stopped_ && witness_.Contradicted())
    Stop("this server's log contradicted a head it signed before (a fork, or a server restored from an old "
         "backup): nothing more is sent there; the evidence is kept; tell the organisation", false);
  if (stopped_) return std::optional<HttpRequest>();
  v1::Request req = NewRequest(server_);
  if (!server_.enrolled) {
    req.mutable_enrol()->set_invite(server_.invite);
    req.mutable_enrol()->set_proof(server_.proof);
    HttpRequest h;
    h.path = protocol::kPathEnrol;
    h.body = store_.SignRequest(req);
    h.request_hash = protocol::RequestHash(crypto::Bytes(h.body));
    return std::optional<HttpRequest>(std::move(h));
  }
  std::vector<OutboxItem> items;
  if (!ready_.empty()) {
    items = std::move(ready_);  // attachments all held: push again for the receipts
    ready_.clear();
  } else {
    DALA_ASSIGN_OR_RETURN(items, store_.NextBatch(server_.destination, max_batch_, max_bytes_));
  }
  if (items.empty()) {
    // Small reports went first (every push precedes the uploads); now the attachments, by priority.
    if (uploads_.empty()) {
      // Heads a pipelined push brought, not yet proven to extend the newest: one push of no reports, with
      // every head, links them before the run ends.
      if (witness_.state().unlinked_size() == 0 || linking_sent_) return std::optional<HttpRequest>();
      linking_sent_ = true;
      return Push(req, {});
    }
    Upload& u = uploads_.front();
    const auto& m = u.manifests[u.current];
    const uint64_t offset = u.received[u.current];
    auto* up = req.mutable_upload();
    up->set_report_id(u.item.id.data(), u.item.id.size());
    up->set_version(u.item.version);
    up->set_attachment_id(m.attachment_id());
    up->set_offset(offset);
    up->set_length(u.probe ? 0 : std::min<uint64_t>(kMaxUploadRequest, m.size() - offset));
    HttpRequest h;
    h.path = protocol::kPathUpload;
    const std::string signed_request = store_.SignRequest(req);
    h.request_hash = protocol::RequestHash(crypto::Bytes(signed_request));
    h.upload_header = std::string(protocol::kUploadScheme) + encoding::Base64Url(crypto::Bytes(signed_request));
    h.file_path = u.files[u.current];
    h.file_offset = offset;
    h.file_length = up->length();
    return std::optional<HttpRequest>(std::move(h));
  }
  return Push(req, std::move(items));
}

Result<std::optional<HttpRequest>> SyncEngine::Push(v1::Request& req, std::vector<OutboxItem> items) {
  auto* push = req.mutable_push();
  for (const auto& item : items) push->add_envelopes(item.envelope.data(), item.envelope.size());
  std::vector<std::string> heads = witness_.HeadsToSend();  // their sizes handed back: the answer proves its head
  for (const auto& head : heads) req.add_log_sizes(protocol::LogHeadSize(head));  // extends each
  HttpRequest h;
  h.path = protocol::kPathPush;
  h.body = store_.SignRequest(req);
  h.request_hash = protocol::RequestHash(crypto::Bytes(h.body));
  pushes_.push_back(Batch{h.request_hash, std::move(items), std::move(heads)});
  return std::optional<HttpRequest>(std::move(h));
}

Result<std::optional<HttpRequest>> SyncEngine::NextPush() {
  // Only queued reports, one push ahead: enrolment, pushes again after uploads, and uploads go as Next()
  // sends them, each after the answer before it was applied.
  if (stopped_ || witness_.Contradicted() || !server_.enrolled || !ready_.empty() || pushes_.size() != 1) return std::optional<HttpRequest>();
  DALA_ASSIGN_OR_RETURN(std::vector<OutboxItem> items, store_.NextBatch(server_.destination, max_batch_, max_bytes_));
  if (items.empty()) return std::optional<HttpRequest>();
  v1::Request req = NewRequest(server_);
  return Push(req, std::move(items));
}

bool SyncEngine::Pipelinable(const HttpRequest& request, const Result<HttpResponse>& response) const {
  if (stopped_ || request.path != protocol::kPathPush || !response.ok()) return false;
  auto verified = protocol::VerifyResponse(crypto::Bytes(response->body), server_.server_key, request.request_hash);
  return verified.ok() && verified->status() == v1::OK && verified->statement().empty();
}

Status SyncEngine::Unsent(const HttpRequest& request) {
  for (auto it = pushes_.begin(); it != pushes_.end(); ++it) {
    if (it->request_hash != request.request_hash) continue;
    std::vector<OutboxItem> items = std::move(it->items);
    pushes_.erase(it);
    return store_.Unclaim(server_.destination, items);
  }
  return Status::Ok();
}

Status SyncEngine::RetryAll(std::string_view reason) {
  std::vector<OutboxOutcome> retry;
  auto add = [&](const OutboxItem& item) {
    retry.push_back(OutboxOutcome{OutboxOutcome::Kind::kRetry, item.id, item.version, {}, std::string(reason)});
  };
  for (const auto& item : answering_) add(item);
  for (const auto& b : pushes_)
    for (const auto& item : b.items) add(item);
  for (const auto& item : ready_) add(item);
  for (const auto& u : uploads_) add(u.item);
  answering_.clear();
  pushes_.clear();
  ready_.clear();
  uploads_.clear();
  return store_.RecordOutcomes(server_.destination, retry);
}

Status SyncEngine::Abandon(std::string_view why) {
  Status retried = RetryAll(why);
  Status finished = Finish();
  return retried.ok() ? finished : retried;
}

Status SyncEngine::Finish() {
  for (const auto& item : ready_) DALA_RETURN_IF_ERROR(store_.Requeue(server_.destination, item.id, item.version));
  for (const auto& u : uploads_) DALA_RETURN_IF_ERROR(store_.Requeue(server_.destination, u.item.id, u.item.version));
  ready_.clear();
  uploads_.clear();
  return Status::Ok();
}

uint64_t SyncEngine::upload_done() const {
  uint64_t n = upload_finished_;
  for (const auto& u : uploads_)
    for (uint64_t r : u.received) n += r;
  return n;
}

uint64_t SyncEngine::upload_total() const { return upload_total_; }

// Reports the server holds as INCOMPLETE: find each attachment's file here and where the server stands.
Status SyncEngine::StartUpload(const OutboxItem& item, const v1::PushResult& res) {
  Upload u;
  u.item = item;
  envelope::Header h;
  DALA_RETURN_IF_ERROR(envelope::Verify(item.envelope, &h));
  u.manifests = h.attachments;
  uploads_.push_back(std::move(u));
  Upload& up = uploads_.back();
  for (const auto& m : up.manifests) {
    upload_total_ += m.size();
    uint64_t received = 0;
    for (const auto& p : res.attachments())
      if (p.attachment_id() == m.attachment_id()) received = std::min<uint64_t>(p.received(), m.size());
    up.received.push_back(received);
    AttachmentId id{};
    std::memcpy(id.data(), m.attachment_id().data(), id.size());
    auto file = store_.LocalAttachmentFile(id);
    if (!file.ok() || file->ciphertext_size != m.size() || !fs::Exists(file->path) ||
        attachment::FileSize(file->path) != static_cast<int64_t>(m.size())) {
      uploads_.pop_back();
      return Damaged(item, "an attachment of this report is missing or damaged on this phone");
    }
    up.files.push_back(file->path);
  }
  Advance();
  return Status::Ok();
}

Status SyncEngine::Damaged(const OutboxItem& item, const std::string& why) {
  ++rejected_;
  last_error_ = why;
  return store_.MarkRejected(server_.destination, item.id, item.version, why);
}

// Skips attachments the server holds whole; a report whose attachments are all held is pushed again.
void SyncEngine::Advance() {
  while (!uploads_.empty()) {
    Upload& u = uploads_.front();
    while (u.current < u.manifests.size() && u.received[u.current] >= u.manifests[u.current].size()) ++u.current;
    if (u.current < u.manifests.size()) return;
    for (const auto& m : u.manifests) upload_finished_ += m.size();
    ready_.push_back(std::move(u.item));
    uploads_.pop_front();
  }
}

Status SyncEngine::ApplyUpload(const v1::UploadResult& r) {
  Upload& u = uploads_.front();
  const auto& m = u.manifests[u.current];
  uint64_t& received = u.received[u.current];
  const uint64_t before = received;  // where the request just answered started
  const uint64_t sent_to = before + (u.probe ? 0 : std::min<uint64_t>(kMaxUploadRequest, m.size() - before));
  // An answer is believed only where it can be true: the server holds whole chunks (or the whole file), and
  // it can refuse only a chunk the request carried. Anything else changes nothing here: try again later
  // (a forged or garbled answer must neither mark an intact file damaged nor read past the manifest).
  auto nonsense = [&]() -> Status {
    OutboxItem item = u.item;
    uploads_.pop_front();
    Advance();
    last_error_ = "the server's answer to an upload did not fit the upload; trying again later";
    return store_.MarkRetry(server_.destination, item.id, item.version, last_error_);
  };
  switch (r.code()) {
    case v1::UPLOAD_OK:
    case v1::UPLOAD_OFFSET:
      if (r.received() < m.size() && r.received() % m.chunk_size() != 0) return nonsense();
      received = std::min<uint64_t>(r.received(), m.size());
      u.probe = false;
      if (received > before) u.failures = 0;
      break;
    case v1::UPLOAD_BAD_CHUNK: {
      // Refused: is the chunk damaged here, or was it corrupted on the way?
      if (r.received() % m.chunk_size() != 0 || r.received() < before || r.received() >= sent_to ||
          r.received() >= m.size())
        return nonsense();
      received = r.received();
      const uint64_t index = received / m.chunk_size();
      const uint64_t len = std::min<uint64_t>(m.chunk_size(), m.size() - received);
      auto here = attachment::HashFileRange(u.files[u.current], received, len);
      if (!here.ok() || std::memcmp(here->data(), m.chunk_hashes().data() + 32 * index, 32) != 0) {
        OutboxItem item = u.item;
        uploads_.pop_front();
        Advance();
        return Damaged(item, "an attachment of this report is damaged on this phone (it no longer matches what "
                             "was sealed); the report cannot be delivered as sealed");
      }
      if (++u.bad_chunks > 8) {
        OutboxItem item = u.item;
        uploads_.pop_front();
        Advance();
        last_error_ = "the connection keeps corrupting uploads";
        return store_.MarkRetry(server_.destination, item.id, item.version, last_error_);
      }
      break;  // sent again
    }
    case v1::UPLOAD_UNKNOWN: {
      // The server has no declaration of this attachment (e.g. it lost its pending reports): push again.
      OutboxItem item = u.item;
      uploads_.pop_front();
      Advance();
      ready_.push_back(std::move(item));
      return Status::Ok();
    }
    default:
      Stop("the server answered an upload with something this version does not understand", false);
      return RetryAll(last_error_);
  }
  Advance();
  return Status::Ok();
}

Status SyncEngine::Apply(const HttpRequest& request, const Result<HttpResponse>& response) {
  const bool enrol = request.path == protocol::kPathEnrol;
  pause_ms_ = 0;
  // The reports of the push this answers (none for other requests).
  answering_.clear();
  answering_heads_.clear();
  if (request.path == protocol::kPathPush)
    for (auto it = pushes_.begin(); it != pushes_.end(); ++it)
      if (it->request_hash == request.request_hash) {
        answering_ = std::move(it->items);
        answering_heads_ = std::move(it->log_heads);
        pushes_.erase(it);
        break;
      }
  if (request.is_upload() && !uploads_.empty()) {
    Upload& u = uploads_.front();
    // A cut connection: ask where the server stands and go on from there. Up to 6 cuts in a row that
    // completed no chunk, with growing pauses (0.1 to 0.5 s); any progress resets the count.
    if (!response.ok() && response.status().code() == Code::kIo && ++u.failures <= 6) {
      u.probe = true;
      pause_ms_ = std::min(500, 100 << (u.failures - 1));
      return Status::Ok();
    }
    if (response.ok() && response->status == 409 && ++u.failures <= 20) {  // the cut upload is still ending there
      pause_ms_ = 100;
      u.probe = true;
      return Status::Ok();
    }
  }
  if (!response.ok()) {
    Stop("the server cannot be reached: " + response.status().message(), true);
    DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, last_error_));
    return RetryAll(kOfflineReason);
  }
  // Only an answer signed by the server key this request was for, naming this very request, is acted on.
  // Anything else (a proxy's error page, an on-path forgery, a replayed answer to another request) changes
  // nothing recorded: every report stays as it was, to be sent again later.
  auto verified = protocol::VerifyResponse(crypto::Bytes(response->body), server_.server_key, request.request_hash);
  if (!verified.ok()) {
    if (response->status == 413 && answering_.size() > 1) return Smaller();  // a front end's limit: nothing recorded
    Stop("the answer from " + std::string(enrol ? "enrolment" : "the server") +
             " could not be verified (HTTP " + std::to_string(response->status) + ": " + verified.status().message() +
             "); trying again later",
         true);
    DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, last_error_));
    return RetryAll(last_error_);
  }
  const v1::Response& resp = *verified;
  // A newer statement of the organisation: new recipient keys for what is sealed from now on, and maybe
  // the end of this server's authorisation.
  if (!resp.statement().empty()) {
    DALA_ASSIGN_OR_RETURN(uint64_t held, store_.UpdateStatement(server_.destination, resp.statement()));
    server_.statement_version = held;
    DALA_ASSIGN_OR_RETURN(auto servers, store_.Servers());
    for (const auto& s : servers)
      if (s.destination == server_.destination && !s.authorised) {
        Stop(kNotAuthorised, false);
        DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, last_error_));
        return RetryAll(last_error_);
      }
  }
  const std::string why = !resp.message().empty() ? Printable(resp.message()) : "HTTP " + std::to_string(response->status);
  if (resp.status() == v1::OK) {
    if (enrol) {
      server_.enrolled = true;
      return store_.SetServerState(server_.destination, true, "");
    }
    if (request.is_upload()) {
      if (uploads_.empty() || !resp.has_upload()) {
        Stop("the server answered an upload without an upload result", false);
        return RetryAll(last_error_);
      }
      return ApplyUpload(resp.upload());
    }
    return ApplyPush(resp);
  }
  switch (resp.status()) {
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
      if (answering_.size() > 1) return Smaller();
      break;
    default:
      break;
  }
  // Storage trouble, anything else: try again later.
  Stop(why, response->status >= 500);
  DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, why));
  return RetryAll(why);
}

// The batch, not its reports, was too large: send smaller ones at once.
Status SyncEngine::Smaller() {
  max_batch_ = std::max<size_t>(1, answering_.size() / 2);
  max_bytes_ = std::max<size_t>(1, max_bytes_ / 2);
  for (const auto& item : answering_) DALA_RETURN_IF_ERROR(store_.Requeue(server_.destination, item.id, item.version));
  answering_.clear();
  return Status::Ok();
}

Status SyncEngine::ApplyPush(const v1::Response& resp) {
  // One result per report sent, no more: anything else is not an answer to this push (and would make the
  // phone rebuild proofs for results it never asked about).
  if (resp.results_size() > static_cast<int>(answering_.size())) {
    Stop("the server answered with more results than reports sent; trying again later", false);
    DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, last_error_));
    return RetryAll(last_error_);
  }
  // The log (docs/protocol.md, "What a phone checks"): a receipt counts only with its place in a head that
  // extends every head the server signed for this phone before. A head that cannot is kept as evidence.
  std::optional<protocol::LogHead> head;
  std::optional<LogWitness> next_witness;
  bool receipts = false;
  for (const auto& res : resp.results()) receipts = receipts || res.code() == v1::STORED || res.code() == v1::DUPLICATE;
  if (receipts || !resp.log_head().empty()) {
    // On a copy: the witness moves on only once what this answer means is recorded, together with it.
    next_witness = witness_;
    Result<protocol::LogHead> observed =
        resp.log_head().empty() ? Result<protocol::LogHead>(Status(Code::kVerify, "the answer carries no log head"))
                                : next_witness->Observe(answering_heads_, resp.log_head(), resp.consistency());
    if (!observed.ok()) {
      const bool contradicts = LogWitness::Contradicts(observed.status());
      if (contradicts) {  // the evidence, at once
        DALA_RETURN_IF_ERROR(store_.SetLogWitness(server_.destination, next_witness->Serialize()));
        witness_ = *next_witness;
      }
      Stop("the server's log: " + observed.status().message() + (contradicts ? "" : "; trying again later"), !contradicts);
      DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, last_error_));
      return RetryAll(last_error_);
    }
    head = *observed;
  }
  // Everything this answer means for its reports is recorded in one transaction at the end (uploads
  // starting aside); the counts follow the commit.
  const std::vector<OutboxItem> in_flight = std::move(answering_);
  answering_.clear();
  std::vector<OutboxOutcome> outcomes;
  uint64_t delivered = 0, rejected = 0;
  auto outcome = [&](OutboxOutcome::Kind kind, const OutboxItem& it, std::string reason,
                     std::vector<uint8_t> receipt = {}) {
    outcomes.push_back(OutboxOutcome{kind, it.id, it.version, std::move(receipt), std::move(reason)});
  };
  // Each result's item (the one we sent with its id and version), and the receipt the phone rebuilds for a
  // stored or duplicate one from what it knows: a receipt counts only at its place in the log head the
  // pinned server key signed (below), as exactly what we sent. No receipt carries a signature of its own.
  std::vector<bool> answered(in_flight.size(), false);
  std::vector<const OutboxItem*> items(static_cast<size_t>(resp.results_size()), nullptr);
  std::vector<v1::Receipt> rebuilt(static_cast<size_t>(resp.results_size()));
  // The report leaves of this answer's results, by index (the first of a repeated index): what the proof
  // elements the server left out are computed from.
  std::map<uint64_t, merkle::Hash> leaves;
  const crypto::PublicKey me = store_.device_key();
  for (int r = 0; r < resp.results_size(); ++r) {
    const v1::PushResult& res = resp.results(r);
    size_t i = 0;
    for (; i < in_flight.size(); ++i) {
      const auto& it = in_flight[i];
      if (!answered[i] && res.version() == it.version && res.report_id().size() == 16 &&
          std::memcmp(res.report_id().data(), it.id.data(), 16) == 0)
        break;
    }
    if (i == in_flight.size()) continue;  // not something we sent
    answered[i] = true;
    const OutboxItem& it = in_flight[i];
    items[static_cast<size_t>(r)] = &it;
    if (res.code() != v1::STORED && res.code() != v1::DUPLICATE) continue;
    const crypto::Hash sent = crypto::Blake2b256(it.envelope);
    v1::Receipt& receipt = rebuilt[static_cast<size_t>(r)];
    receipt.set_report_id(it.id.data(), it.id.size());
    receipt.set_version(it.version);
    receipt.set_content_hash(sent.data(), sent.size());
    receipt.set_server_time_ms(res.server_time_ms() != 0 ? res.server_time_ms() : resp.server_time_ms());
    receipt.set_sequence(res.sequence());
    receipt.set_server_key(server_.server_key.data(), 32);
    receipt.set_device_key(me.data(), me.size());
    if (res.has_leaf_index())
      leaves.emplace(res.leaf_index(), merkle::LeafHash(crypto::Bytes(protocol::ReportLeaf(receipt))));
  }
  // Each result's whole inclusion proof: what it carries, with the elements it says the phone computes
  // (from the leaves above), then the tail it shares with the previous one's. A proof that names what is
  // not there is left empty: that receipt's place is not shown.
  std::vector<google::protobuf::RepeatedPtrField<std::string>> proofs(static_cast<size_t>(resp.results_size()));
  {
    const uint64_t log_size = head ? head->size : 0;  // the verified head the proofs lead to
    const google::protobuf::RepeatedPtrField<std::string>* previous = nullptr;
    for (int r = 0; r < resp.results_size(); ++r) {
      const v1::PushResult& res = resp.results(r);
      if (!res.has_leaf_index()) continue;
      auto& proof = proofs[static_cast<size_t>(r)];
      const int shared = static_cast<int>(std::min<uint32_t>(res.proof_shared(), 1024));
      bool whole = true;
      if (const uint64_t computed = res.proof_computed(); computed == 0) {
        proof = res.inclusion_proof();
      } else if (res.leaf_index() < log_size) {
        // The full proof has one element per range; those before the shared tail are sent or computed.
        const auto ranges = merkle::InclusionProofRanges(res.leaf_index(), log_size);
        const size_t own = ranges.size() >= static_cast<size_t>(shared) ? ranges.size() - static_cast<size_t>(shared) : 0;
        whole = ranges.size() >= static_cast<size_t>(shared) && (own >= 64 || (computed >> own) == 0);
        int sent = 0;
        for (size_t e = 0; whole && e < own; ++e) {
          if (e >= 64 || ((computed >> e) & 1) == 0) {
            if (sent < res.inclusion_proof_size()) *proof.Add() = res.inclusion_proof(sent++);
            else whole = false;
            continue;
          }
          std::vector<merkle::Hash> covered;
          for (uint64_t k = ranges[e].first; whole && k < ranges[e].second; ++k) {
            auto at = leaves.find(k);
            if (at == leaves.end()) whole = false;  // (at most the answer's leaves: the loop ends there)
            else covered.push_back(at->second);
          }
          if (whole) {
            const merkle::Hash h = merkle::RangeRoot(covered);
            proof.Add()->assign(reinterpret_cast<const char*>(h.data()), h.size());
          }
        }
        whole = whole && sent == res.inclusion_proof_size();
      } else {
        whole = false;
      }
      if (whole && shared > 0 && previous != nullptr && shared <= previous->size() && proof.size() + shared <= 128) {
        for (int k = previous->size() - shared; k < previous->size(); ++k) *proof.Add() = (*previous)[k];
      } else if (!whole || shared > 0) {
        proof.Clear();
      }
      previous = &proof;
    }
  }
  for (int r = 0; r < resp.results_size(); ++r) {
    const v1::PushResult& res = resp.results(r);
    const auto& inclusion_proof = proofs[static_cast<size_t>(r)];
    if (items[static_cast<size_t>(r)] == nullptr) continue;  // not something we sent
    const OutboxItem& it = *items[static_cast<size_t>(r)];
    switch (res.code()) {
      case v1::STORED:
      case v1::DUPLICATE: {
        const v1::Receipt& receipt = rebuilt[static_cast<size_t>(r)];
        // Only at its place in the log head the pinned server key signed (checked above): the head's
        // signature and the inclusion proof are the receipt's proof, and the phone keeps them with it.
        if (!res.has_leaf_index() || !protocol::ReceiptInLog(receipt, res.leaf_index(), inclusion_proof, *head)) {
          outcome(OutboxOutcome::Kind::kRetry, it, "the server's log does not show this receipt; kept queued");
          last_error_ = "a receipt is not in the server's log as its answer claims";
          break;
        }
        v1::SignedReceipt held;
        held.set_receipt(receipt.SerializeAsString());
        held.set_leaf_index(res.leaf_index());
        *held.mutable_inclusion_proof() = inclusion_proof;
        held.set_log_head(resp.log_head());
        const std::string held_bytes = held.SerializeAsString();
        outcome(OutboxOutcome::Kind::kDelivered, it, "", std::vector<uint8_t>(held_bytes.begin(), held_bytes.end()));
        ++delivered;
        break;
      }
      case v1::REJECTED:
        outcome(OutboxOutcome::Kind::kRejected, it, Printable(res.reason()));
        ++rejected;
        break;
      case v1::INCOMPLETE:  // held; stays in flight while its attachments upload in this run
        DALA_RETURN_IF_ERROR(StartUpload(it, res));
        break;
      default: {
        std::string why = res.reason().empty() ? "the server asked to retry later" : Printable(res.reason());
        outcome(OutboxOutcome::Kind::kRetry, it, why);
        if (last_error_ != why) DALA_RETURN_IF_ERROR(store_.SetServerState(server_.destination, server_.enrolled, why));
        last_error_ = why;
        break;
      }
    }
  }
  for (size_t i = 0; i < in_flight.size(); ++i)
    if (!answered[i]) outcome(OutboxOutcome::Kind::kRetry, in_flight[i], "the server did not answer for this report");
  const std::string witness_bytes = head ? next_witness->Serialize() : std::string();
  DALA_RETURN_IF_ERROR(store_.RecordOutcomes(server_.destination, outcomes, head ? &witness_bytes : nullptr));
  if (head) witness_ = std::move(*next_witness);
  delivered_ += delivered;
  rejected_ += rejected;
  return Status::Ok();
}

Result<RunResult> RunOnce(Store& store, Transport& transport, int64_t deadline_ms, const ProgressFn& progress,
                          const std::atomic<bool>* cancel) {
  RunResult result;
  DALA_ASSIGN_OR_RETURN(auto servers, store.Servers());
  for (auto& server : servers) {
    if (server.legacy || server.urls.empty() || !server.authorised) {
      // Waits for a join of its organisation, or (revoked by it) for a new invite: nothing goes there, and
      // what is queued for it is still left.
      if (!server.legacy && !server.urls.empty()) result.last_error = std::string(kNotAuthorised);
      DALA_ASSIGN_OR_RETURN(OutboxStats st, store.Stats(server.destination));
      result.remaining += st.pending + st.in_flight;
      continue;
    }
    SyncEngine engine(store, server);
    const std::vector<std::string> urls = server.urls;
    const std::string tls_pin = server.tls_pin;
    size_t url = 0;
    auto due = [&] { return SystemNowMs() < deadline_ms && !(cancel != nullptr && cancel->load()); };
    auto post = [&](const HttpRequest& req) {
      auto resp = transport.Post(urls[url], req, std::max<int64_t>(deadline_ms - SystemNowMs(), 1), tls_pin);
      // The same request (it is idempotent) to the next address, if there is one no weaker than this one
      // (or the invite says they are equivalent): never from an onion service to clearnet, https to http.
      int next = resp.ok() ? -1 : NextAddress(urls, url, server.addresses_equivalent);
      if (next >= 0) {
        url = static_cast<size_t>(next);
        // An upload's body is not sent again whole: the cut is answered as a cut, and the engine asks the next
        // address how much it holds (a probe) and sends only the rest, as after any cut. Several nodes may share
        // their attachments: a photo cut at 9 MiB on a node that died goes on from 9 MiB on the next.
        if (req.is_upload() && req.file_length > 0) return resp;
        resp = transport.Post(urls[url], req, std::max<int64_t>(deadline_ms - SystemNowMs(), 1), tls_pin);
      }
      return resp;
    };
    auto report = [&]() -> Status {
      if (!progress) return Status::Ok();
      DALA_ASSIGN_OR_RETURN(OutboxStats st, store.Stats(server.destination));
      progress(Progress{server.destination, engine.delivered(), engine.rejected(), st.pending + st.in_flight,
                        engine.upload_done(), engine.upload_total()});
      return Status::Ok();
    };
    // Pushes are pipelined: while the server works on one, a helper thread records the answer to the one
    // before and prepares the next, which goes out as soon as this answer is known to be a verified OK
    // (then applied on the helper while the server works on the next). Any other answer is applied here
    // first and the prepared push given back unsent, so the requests sent are those of an engine that
    // applies each answer before the next request. The transport and the progress callback are only
    // called on this thread; the helper touches only the engine and the store.
    struct Answered {
      HttpRequest request;
      Result<HttpResponse> response;
    };
    std::optional<HttpRequest> current;  // to send now
    std::optional<Answered> previous;    // answered, verified OK, applied while `current` is at the server
    // An error of this side (the store) ends the run: what it had taken is queued again, not left in flight
    // until the store is next opened.
    auto drive = [&]() -> Status {
      for (;;) {
        if (!current) {
          if (!due()) break;
          DALA_ASSIGN_OR_RETURN(current, engine.Next());
          if (!current) break;
        }
        const bool push = current->path == protocol::kPathPush;
        std::future<Result<std::optional<HttpRequest>>> helper;
        if (previous || push)
          helper = std::async(std::launch::async | std::launch::deferred,
                              [&engine, &previous, push]() -> Result<std::optional<HttpRequest>> {
                                if (previous) DALA_RETURN_IF_ERROR(engine.Apply(previous->request, previous->response));
                                if (!push) return std::optional<HttpRequest>();
                                return engine.NextPush();
                              });
        auto resp = post(*current);
        Result<std::optional<HttpRequest>> following =
            helper.valid() ? helper.get() : Result<std::optional<HttpRequest>>(std::optional<HttpRequest>());
        if (previous) {
          previous.reset();
          if (following.ok()) DALA_RETURN_IF_ERROR(report());
        }
        DALA_RETURN_IF_ERROR(following.status());
        if (!resp.ok() && cancel != nullptr && cancel->load()) {
          // Cut off by a stop (the app's, the OS's), not by the network: given back as never sent, with no
          // attempt counted, no backoff and no error recorded (a push the server did take is answered
          // "stored" when it is sent again; an upload goes on from what the server holds).
          if (*following) DALA_RETURN_IF_ERROR(engine.Unsent(**following));
          DALA_RETURN_IF_ERROR(engine.Unsent(*current));
          current.reset();
          break;
        }
        if (*following && due() && engine.Pipelinable(*current, resp)) {
          previous.emplace(Answered{std::move(*current), std::move(resp)});
          current = std::move(*following);
          continue;
        }
        if (*following) DALA_RETURN_IF_ERROR(engine.Unsent(**following));
        DALA_RETURN_IF_ERROR(engine.Apply(*current, resp));
        current.reset();
        DALA_RETURN_IF_ERROR(report());
        if (engine.pause_ms() > 0 && SystemNowMs() + engine.pause_ms() < deadline_ms)
          std::this_thread::sleep_for(std::chrono::milliseconds(engine.pause_ms()));
      }
      return Status::Ok();
    };
    if (Status failed = drive(); !failed.ok()) {
      (void)engine.Abandon("the run stopped on an error of this phone's store; sent again later");
      return failed;
    }
    DALA_RETURN_IF_ERROR(engine.Finish());
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
