// Command-line parsing shared by dala and dala-server.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace cli {

struct UsageError {
  std::string message;
};

// Parsed command line: positional words and --options (repeatable ones keep every value).
struct Args {
  std::vector<std::string> words;
  std::multimap<std::string, std::string> opts;
  std::vector<std::pair<std::string, std::string>> ordered;  // valued options in command-line order

  bool flag(const std::string& k) const { return opts.count(k) > 0; }
  std::optional<std::string> get(const std::string& k) const {
    auto it = opts.find(k);
    if (it == opts.end()) return std::nullopt;
    return it->second;
  }
  std::string need(const std::string& k) const {
    auto v = get(k);
    if (!v) throw UsageError{"missing --" + k};
    return *v;
  }
};

// Parses argv: --flag, --name VALUE, --name=VALUE; anything else is a positional word. `flags` and
// `valued` list the option names a command line may use.
inline Args Parse(int argc, char** argv, std::span<const char* const> flags, std::span<const char* const> valued) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) != 0 || s.size() == 2) {
      a.words.push_back(s);
      continue;
    }
    std::string name = s.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    bool is_flag = false, is_valued = false;
    for (auto* f : flags) is_flag |= name == f;
    for (auto* v : valued) is_valued |= name == v;
    if (is_flag) {
      if (has_value) throw UsageError{"--" + name + " takes no value"};
      a.opts.emplace(name, "");
    } else if (is_valued) {
      if (!has_value) {
        if (i + 1 >= argc) throw UsageError{"--" + name + " needs a value"};
        value = argv[++i];
      }
      a.opts.emplace(name, value);
      a.ordered.emplace_back(name, value);
    } else {
      throw UsageError{"unknown option --" + name};
    }
  }
  return a;
}

}  // namespace cli
