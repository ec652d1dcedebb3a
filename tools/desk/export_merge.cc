#include "desk/export_merge.h"

#include <set>
#include <utility>

#include "dala/v1/sync.pb.h"

namespace dala::desk {
namespace {

Result<v1::Export> Parse(std::string_view bytes, const char* what) {
  v1::Export ex;
  if (!ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || ex.server_key().size() != 32)
    return Status(Code::kCorrupt, std::string(what) + " is not a dala-server export");
  return ex;
}

// Appends to `to` each element of `from` whose exact bytes `to` does not hold yet, in `from`'s order.
template <typename Field>
void AddMissing(const Field& from, Field* to) {
  std::set<std::string> held;
  for (const auto& m : *to) held.insert(m.SerializeAsString());
  for (const auto& m : from)
    if (held.insert(m.SerializeAsString()).second) *to->Add() = m;
}

}  // namespace

Result<ExportKind> KindOf(std::string_view bytes) {
  DALA_ASSIGN_OR_RETURN(v1::Export ex, Parse(bytes, "the file"));
  return ExportKind{ex.log_from(), ex.server_key()};
}

Result<std::string> JoinIncremental(std::string_view base_bytes, std::string_view incremental_bytes) {
  DALA_ASSIGN_OR_RETURN(v1::Export base, Parse(base_bytes, "the kept export"));
  DALA_ASSIGN_OR_RETURN(v1::Export inc, Parse(incremental_bytes, "the incremental export"));
  if (base.log_from() != 0) return Status(Code::kCorrupt, "the kept export is not a full export");
  if (base.server_key() != inc.server_key())
    return Status(Code::kInvalidArgument, "the incremental export is another server's than the kept export");
  const uint64_t from = inc.log_from(), held = static_cast<uint64_t>(base.log_size());
  if (from > held)
    return Status(Code::kInvalidArgument,
                  "the incremental export starts at log position " + std::to_string(from) + " but the desk holds this "
                  "server's log up to position " + std::to_string(held) + " only: export again with --since " +
                  std::to_string(held) + " (or less)");
  // Built from the incremental (whose unknown fields, if any, stay in it for the strict check), with base's
  // parts put first.
  v1::Export out = inc;
  out.set_log_from(0);
  out.clear_log();
  for (uint64_t i = 0; i < from; ++i) out.add_log(base.log(static_cast<int>(i)));
  for (const auto& leaf : inc.log()) out.add_log(leaf);
  out.clear_reports();
  *out.mutable_reports() = base.reports();
  AddMissing(inc.reports(), out.mutable_reports());
  out.clear_enrolments();
  *out.mutable_enrolments() = base.enrolments();
  AddMissing(inc.enrolments(), out.mutable_enrolments());
  out.clear_timestamps();
  *out.mutable_timestamps() = base.timestamps();
  AddMissing(inc.timestamps(), out.mutable_timestamps());
  return out.SerializeAsString();
}

}  // namespace dala::desk
