// Runs a fuzz target over files and directories of inputs (the committed corpus and regressions), for
// the builds without libFuzzer: every ordinary `tools/dev test` run, with and without the sanitizers,
// replays every input that once found a bug.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fsys = std::filesystem;
  std::vector<fsys::path> files;
  for (int i = 1; i < argc; ++i) {
    fsys::path p(argv[i]);
    if (fsys::is_directory(p)) {
      for (const auto& e : fsys::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fsys::is_regular_file(p)) {
      files.push_back(p);
    }  // a target without regression inputs has no directory for them

  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "no inputs\n");
    return 2;
  }
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  }
  std::printf("%zu inputs replayed, none failed\n", files.size());
  return 0;
}
