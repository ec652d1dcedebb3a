// The desk opens a dala-server export (a file that may have been altered on its way from the server to
// the organisation) with the organisation's key: everything in it is checked and failures listed, never
// trusted and never a crash. The input is the export file; attachments are looked for beside it.
#include <fstream>

#include "desk/export_opener.h"
#include "fuzz_common.h"
#include "format/organisation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  // The fixed organisation, as its desk holds it: root, recipient, a statement authorising the fixed server.
  static const desk::Organisation org = [] {
    desk::Organisation o;
    o.root = fuzz::FixedSigningKey(fuzz::kRootLabel);
    o.recipients.push_back(fuzz::FixedBoxKeyPair(fuzz::kOrgLabel));
    o.signed_statement = fuzz::FixedOrgStatement(fuzz::FixedSigningKey(fuzz::kServerLabel).public_key);
    auto st = protocol::VerifyStatement(crypto::Bytes(o.signed_statement), o.root.public_key);
    if (!st.ok()) std::abort();
    o.statement = *st;
    return o;
  }();
  const std::string path = fuzz::ScratchDir() + "/export.dala";
  const std::string out = fuzz::ScratchDir() + "/desk";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!f) std::abort();
  }
  auto summary = desk::OpenExport(org, path, out);
  if (summary.ok() && summary->verified + summary->failed != summary->reports) std::abort();
  std::error_code ec;
  std::filesystem::remove_all(out, ec);
  return 0;
}
