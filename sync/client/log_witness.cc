#include "client/log_witness.h"

#include <algorithm>

namespace dala::sync {
namespace {

constexpr int kMaxUnlinked = protocol::kMaxLogHeadsPerRequest - 1;  // a pipelined engine leaves at most a few
constexpr int kMaxEvidence = 16;

// The head, if `server` signed it.
Result<protocol::LogHead> HeadOf(std::string_view signed_head, const crypto::PublicKey& server) {
  DALA_ASSIGN_OR_RETURN(protocol::LogHead h, protocol::VerifyLogHead(crypto::Bytes(signed_head)));
  if (h.server_key != server) return Status(Code::kVerify, "the log head is signed by another key than the server's");
  return h;
}

}  // namespace

LogWitness LogWitness::Load(std::string_view stored, const crypto::PublicKey& server) {
  LogWitness w;
  w.server_ = server;
  v1::LogWitness s;
  if (!s.ParseFromArray(stored.data(), static_cast<int>(stored.size()))) return w;
  *w.state_.mutable_evidence() = s.evidence();
  if (HeadOf(s.tip(), server).ok()) {
    w.state_.set_tip(s.tip());
    for (const auto& u : s.unlinked())
      if (HeadOf(u, server).ok()) w.state_.add_unlinked(u);
  }
  return w;
}

bool LogWitness::Contradicted() const {
  for (const auto& e : state_.evidence())
    if (HeadOf(e, server_).ok()) return true;
  return false;
}

std::vector<std::string> LogWitness::HeadsToSend() const {
  std::vector<std::string> out;
  if (!state_.tip().empty()) out.push_back(state_.tip());
  for (const auto& u : state_.unlinked()) out.push_back(u);
  return out;
}

Result<protocol::LogHead> LogWitness::Observe(const std::vector<std::string>& sent, std::string_view answer_head,
                                              const google::protobuf::RepeatedPtrField<v1::ConsistencyProof>& proofs) {
  DALA_ASSIGN_OR_RETURN(protocol::LogHead head, HeadOf(answer_head, server_));
  if (proofs.size() != static_cast<int>(sent.size()))
    return Status(Code::kVerify, "the answer does not prove its log head extends each head the request carried");
  for (size_t i = 0; i < sent.size(); ++i) {
    auto old = HeadOf(sent[i], server_);
    if (!old.ok() || proofs[static_cast<int>(i)].from_size() != old->size ||
        !protocol::ProofHashes(proofs[static_cast<int>(i)].hashes()).ok())
      return Status(Code::kVerify, "the answer's consistency proofs do not match the heads the request carried");
    if (!protocol::Extends(head, *old, proofs[static_cast<int>(i)].hashes())) {
      if (state_.evidence_size() < kMaxEvidence) {
        state_.add_evidence(sent[i]);
        state_.add_evidence(std::string(answer_head));
      }
      return Status(Code::kState, "the server's log head of " + std::to_string(head.size) + " leaves does not extend the "
                                  "head of " + std::to_string(old->size) + " leaves it signed before (a fork, or a "
                                  "server restored from an old backup): both heads are kept as evidence");
    }
  }
  // Every head sent is now a prefix of `head`. If the tip was among them, so is everything before it.
  const bool tip_sent = state_.tip().empty() || std::find(sent.begin(), sent.end(), state_.tip()) != sent.end();
  v1::LogWitness next;
  *next.mutable_evidence() = state_.evidence();
  if (tip_sent) {
    next.set_tip(std::string(answer_head));
  } else {
    next.set_tip(state_.tip());
  }
  for (const auto& u : state_.unlinked())
    if (std::find(sent.begin(), sent.end(), u) == sent.end()) next.add_unlinked(u);
  if (!tip_sent && answer_head != state_.tip()) next.add_unlinked(std::string(answer_head));
  if (next.unlinked_size() > kMaxUnlinked)
    return Status(Code::kVerify, "too many log heads wait to be linked; this answer is taken later");
  state_ = std::move(next);
  return head;
}

}  // namespace dala::sync
