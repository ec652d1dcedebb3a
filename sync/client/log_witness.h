// What a phone knows of its server's append-only log (docs/protocol.md, "The log", "What a phone checks"),
// kept per server in the store as a v1::LogWitness. Every head the server signed for this phone is either a
// prefix of the tip, proven by a consistency proof, or waits in `unlinked` for the next answer to prove it
// one (a pipelined push was sent before the answer that moved the tip). A head that cannot be a prefix of
// the others (a fork, a server restored from an old backup) is kept as evidence and refused. No I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "dala/v1/sync.pb.h"
#include "format/log.h"

namespace dala::sync {

class LogWitness {
 public:
  // From the store's bytes (empty: nothing seen yet). Heads of another server key than `server` (the phone
  // joined another server of its organisation) start a new witness; evidence is kept whatever its server.
  static LogWitness Load(std::string_view stored, const crypto::PublicKey& server);
  std::string Serialize() const { return state_.SerializeAsString(); }

  // The SignedLogHeads a request carries: the tip first, then those waiting to be linked.
  std::vector<std::string> HeadsToSend() const;

  // An answer's head and proofs, for a request that carried `sent`. OK: the head is signed by the server,
  // extends every head in `sent` and, unless the request was sent before the tip moved, the tip: the
  // witness moves on. kVerify: the answer proves nothing (malformed, a proof missing): nothing changes, try
  // later. kConflict (see Contradicts): the head cannot extend a head the server signed before: it is
  // kept as evidence (the caller stores Serialize()) and the answer is refused.
  Result<protocol::LogHead> Observe(const std::vector<std::string>& sent, std::string_view answer_head,
                                    const google::protobuf::RepeatedPtrField<v1::ConsistencyProof>& proofs);
  static bool Contradicts(const Status& s) { return s.code() == Code::kState; }
  // Whether this server's log was caught contradicting itself: nothing more is sent to it (a server key the
  // organisation has since replaced starts clean).
  bool Contradicted() const;

  const v1::LogWitness& state() const { return state_; }

 private:
  crypto::PublicKey server_{};
  v1::LogWitness state_;
};

}  // namespace dala::sync
