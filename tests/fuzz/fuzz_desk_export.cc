// The desk opens a dala-server export (a file that may have been altered on its way from the server to
// the organisation) with the organisation's key: everything in it is checked and failures listed, never
// trusted and never a crash. The input is the export file; attachments are looked for beside it.
#include <fstream>

#include "desk/export_opener.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  static const crypto::BoxKeyPair org = fuzz::FixedBoxKeyPair(fuzz::kOrgLabel);
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
