// The server's log: one JSON object per line on stderr, {"time":"2026-12-05T15:13:27.123Z","level":LEVEL,
// FIELDS} (docs/protocol.md, "The server's log"). Thread-safe: lines are never interleaved.
#pragma once

#include <string>
#include <string_view>

namespace dala::server {

// `fields` is the rest of the object, already JSON.
void LogLine(const char* level, const std::string& fields);

// A JSON string for a message of the server's own (control characters dropped).
std::string JsonString(std::string_view s);

}  // namespace dala::server
