// The phone's sync engine reading what a server (or anyone on the path) answers: a real store, joined
// to a real in-process dala-server, with two sealed reports (one with an attachment), is synced through
// a transport that alters the server's real answers as the fuzz input says. Per request, one record:
//   op & 7 = 0, 6, 7: pass the answer on; 1: replace its body (16-bit length, bytes); 2: flip a byte
//   (16-bit offset, mask); 3: truncate (16-bit length); 4: change the HTTP status; 5: fail as a
//   transport (with op & 8: after the server handled the request). Past the input's end all pass.
// After at most 40 requests the checks that matter: the store passes its own check, and every receipt
// it keeps verifies against the server's key and was issued by the server for that report.
#include <sodium.h>

#include <filesystem>
#include <fstream>

#include "fuzz_common.h"
#include "format/invite.h"
#include "format/log.h"
#include "format/request.h"
#include "protocol/http_api.h"
#include "server/server_core.h"
#include "store/store.h"
#include "client/sync_engine.h"

namespace dala::fuzz {
namespace {

namespace fsys = std::filesystem;

const std::string& TemplateDir() {
  static const std::string dir = [] {
    std::string d = ScratchDir() + "/template";
    fsys::create_directories(d);
    if (!server::ServerCore::Init(d + "/server", FixedSigningKey(kRootLabel).public_key).ok()) std::abort();
    std::string invite;
    {
      auto s = server::ServerCore::Open(d + "/server");
      if (!s.ok()) std::abort();
      invite = FixedOrgInvite((*s)->server_key(), 10);
    }
    auto store = Store::Create(d + "/phone", FixedRawKey(), StoreOptions{});
    if (!store.ok() || !(*store)->Join(invite).ok()) std::abort();
    for (int i = 0; i < 2; ++i) {
      auto r = (*store)->CreateDraft("detention/1");
      if (!r.ok() || !r->SetNarrative(i ? "with a photo" : "short").ok()) std::abort();
      if (i == 1) {
        auto cap = (*store)->CaptureAttachment(r->id(), "image/jpeg");
        std::vector<uint8_t> bytes(70000);
        randombytes_buf(bytes.data(), bytes.size());
        if (!cap.ok() || !(*cap)->Write(bytes).ok() || !(*cap)->Finish().ok()) std::abort();
        auto again = (*store)->Get(r->id());
        if (!again.ok()) std::abort();
        *r = std::move(*again);
      }
      if (!(*store)->Seal(*r).ok()) std::abort();
    }
    return d;
  }();
  return dir;
}

class AlteringTransport : public sync::Transport {
 public:
  AlteringTransport(server::ServerCore& server, Input& plan) : server_(server), plan_(plan) {}

  Result<sync::HttpResponse> Post(const std::string&, const sync::HttpRequest& req, int64_t,
                                  const std::string&) override {
    const uint8_t op = plan_.Byte();
    if ((op & 7) != 0 && (op & 7) < 6) altered = true;
    if ((op & 7) == 5 && !(op & 8)) return Status(Code::kIo, "connection refused");
    server::HttpResult r;
    if (req.is_upload()) {
      std::string body(req.file_length, '\0');
      std::ifstream f(req.file_path, std::ios::binary);
      f.seekg(static_cast<std::streamoff>(req.file_offset));
      f.read(body.data(), static_cast<std::streamsize>(body.size()));
      if (!f) return Status(Code::kIo, "short file");
      r = server_.HandleUpload(req.upload_header, body);
    } else {
      r = server_.Handle("POST", req.path, protocol::kContentType, req.body);
    }
    sync::HttpResponse resp{r.status, std::move(r.body)};
    switch (op & 7) {
      case 1: resp.body = std::string(plan_.Bytes(plan_.U16())); break;
      case 2: {
        const uint16_t at = plan_.U16();
        const uint8_t mask = plan_.Byte();
        if (!resp.body.empty()) resp.body[at % resp.body.size()] ^= static_cast<char>(mask | 1);
        break;
      }
      case 3: resp.body.resize(std::min<size_t>(resp.body.size(), plan_.U16() % (resp.body.size() + 1))); break;
      case 4: {
        static const int kStatus[] = {200, 400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 507};
        resp.status = kStatus[plan_.Byte() % std::size(kStatus)];
        break;
      }
      case 5: return Status(Code::kIo, "connection reset");  // the server handled it; the answer is lost
    }
    return resp;
  }

  bool altered = false;  // some answer was altered or lost

 private:
  server::ServerCore& server_;
  Input& plan_;
};

}  // namespace
}  // namespace dala::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  namespace fsys = std::filesystem;
  const std::string& tmpl = fuzz::TemplateDir();
  const std::string work = fuzz::ScratchDir() + "/work";
  std::error_code ec;
  fsys::remove_all(work, ec);
  fsys::copy(tmpl, work, fsys::copy_options::recursive, ec);
  if (ec) std::abort();
  {
    auto server = server::ServerCore::Open(work + "/server");
    auto store = Store::Open(work + "/phone", fuzz::FixedRawKey(), StoreOptions{});
    if (!server.ok() || !store.ok()) std::abort();
    fuzz::Input plan(data, size);
    fuzz::AlteringTransport net(**server, plan);
    auto servers = (*store)->Servers();
    if (!servers.ok() || servers->size() != 1) std::abort();
    sync::SyncEngine engine(**store, servers->front());
    for (int i = 0; i < 40; ++i) {
      auto req = engine.Next();
      if (!req.ok()) std::abort();  // a store error, not the server's answer
      if (!*req) break;
      auto resp = net.Post("", **req, 1000, "");
      if (!engine.Apply(**req, resp).ok()) std::abort();
    }
    if (!engine.Finish().ok()) std::abort();

    // The checks that matter.
    if (!(*store)->Check().ok()) std::abort();
    const crypto::PublicKey server_key = (*server)->server_key();
    auto receipts = (*store)->ListReceipts();
    if (!receipts.ok()) std::abort();
    for (const auto& row : *receipts) {
      auto kept = protocol::VerifyKeptReceipt(crypto::Bytes(std::string(row.receipt.begin(), row.receipt.end())), server_key);
      const v1::Receipt* r = kept.ok() ? &kept->receipt : nullptr;
      if (r == nullptr || r->version() != row.version ||
          r->report_id() != std::string_view(reinterpret_cast<const char*>(row.id.data()), 16))
        std::abort();
    }
    auto count = (*server)->ReportCount();
    if (!count.ok() || *count < receipts->size()) std::abort();
    // Nothing altered: both reports (one with its attachment uploaded) are delivered with receipts.
    if (!net.altered && receipts->size() != 2) std::abort();
  }
  fsys::remove_all(work, ec);
  return 0;
}
