// dala report add|edit|seal|show|list|delete|retry and dala attachment get.
#include <CLI/CLI.hpp>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli.h"

namespace dala::cli {
namespace {

// What add and edit take besides the store: fields, narrative, location, priority, attachments.
struct EditArgs {
  StoreArgs store;
  std::string form, id, text, text_file, location;
  std::vector<std::string> fields, removes, attach;
  int32_t priority = 0;
  bool seal = false;
  CLI::Option *field_opt = nullptr, *remove_opt = nullptr, *priority_opt = nullptr, *text_opt = nullptr;
};

void AddEditOptions(CLI::App* cmd, EditArgs& a, bool removes) {
  a.field_opt = cmd->add_option("--field", a.fields, "KEY[:TYPE]=VALUE; types text, int, dec, bool, time, geo, "
                                                     "person (repeat a person key to add people)")
                    ->allow_extra_args(false);
  if (removes)
    a.remove_opt = cmd->add_option("--remove-field", a.removes, "removes the field KEY")->allow_extra_args(false);
  a.text_opt = cmd->add_option("--text", a.text, "the narrative");
  cmd->add_option("--text-file", a.text_file, "the narrative, from FILE")->excludes(a.text_opt);
  cmd->add_option("--location", a.location, "where it was recorded: LAT,LON[,ACCURACY_M]");
  a.priority_opt = cmd->add_option("--priority", a.priority, "delivery priority (higher first)");
  cmd->add_option("--attach", a.attach, "a file to attach, encrypted as it is read (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--seal", a.seal, "seal (sign and queue) the version now");
}

void SetField(dala_report* r, const std::string& spec, std::map<std::string, std::vector<std::string>>& people) {
  auto eq = spec.find('=');
  if (eq == std::string::npos) throw UsageError{"a field is KEY=VALUE or KEY:TYPE=VALUE"};
  std::string key = spec.substr(0, eq), value = spec.substr(eq + 1), type = "text";
  if (auto colon = key.find(':'); colon != std::string::npos) {
    type = key.substr(colon + 1);
    key = key.substr(0, colon);
  }
  if (type == "text") Call(dala_report_set_text, r, key.c_str(), value.c_str());
  else if (type == "int") Call(dala_report_set_integer, r, key.c_str(), ParseInt(value, "an int field"));
  else if (type == "dec") Call(dala_report_set_decimal, r, key.c_str(), value.c_str());
  else if (type == "bool") {
    if (value != "true" && value != "false") throw UsageError{"a bool field is true or false"};
    Call(dala_report_set_boolean, r, key.c_str(), value == "true" ? 1 : 0);
  } else if (type == "time") Call(dala_report_set_timestamp, r, key.c_str(), ParseTime(value));
  else if (type == "geo") {
    dala_geo g = ParseGeo(value);
    Call(dala_report_set_geo, r, key.c_str(), &g);
  } else if (type == "person") people[key].push_back(value);
  else throw UsageError{"unknown field type '" + type + "' (text, int, dec, bool, time, geo, person)"};
}

// --field and --remove-field in the order given, then the narrative, location and priority.
void ApplyEdits(CLI::App* cmd, dala_report* r, const EditArgs& a) {
  std::map<std::string, std::vector<std::string>> people;  // key -> "NAME[|ROLE]"
  size_t next_field = 0, next_remove = 0;
  for (const CLI::Option* o : cmd->parse_order()) {
    if (o == a.field_opt && next_field < a.fields.size()) SetField(r, a.fields[next_field++], people);
    else if (a.remove_opt != nullptr && o == a.remove_opt && next_remove < a.removes.size())
      Call(dala_report_remove_field, r, a.removes[next_remove++].c_str());
  }
  for (const auto& [key, list] : people) {
    std::vector<std::string> names, roles;
    for (const auto& v : list) {
      auto bar = v.find('|');
      names.push_back(v.substr(0, bar));
      roles.push_back(bar == std::string::npos ? "" : v.substr(bar + 1));
    }
    std::vector<dala_person> ps;
    for (size_t i = 0; i < names.size(); ++i) ps.push_back({names[i].c_str(), roles[i].c_str()});
    Call(dala_report_set_people, r, key.c_str(), ps.data(), ps.size());
  }
  if (*a.text_opt) Call(dala_report_set_narrative, r, a.text.c_str());
  if (!a.text_file.empty()) Call(dala_report_set_narrative, r, ReadTextFile(a.text_file, "text file").c_str());
  if (!a.location.empty()) {
    dala_geo g = ParseGeo(a.location);
    Call(dala_report_set_location, r, &g);
  }
  if (*a.priority_opt) Call(dala_report_set_priority, r, a.priority);
}

// A MIME type from the file name; what is not known travels as application/octet-stream.
std::string GuessMime(const std::string& path) {
  static const std::pair<const char*, const char*> kKnown[] = {
      {".mp4", "video/mp4"}, {".mov", "video/quicktime"}, {".webm", "video/webm"}, {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"}, {".png", "image/png"}, {".heic", "image/heic"}, {".ogg", "audio/ogg"},
      {".opus", "audio/ogg"}, {".mp3", "audio/mpeg"}, {".m4a", "audio/mp4"}, {".aac", "audio/aac"},
      {".pdf", "application/pdf"}, {".txt", "text/plain"}, {".wav", "audio/wav"}, {".gif", "image/gif"},
      {".webp", "image/webp"}, {".svg", "image/svg+xml"}, {".html", "text/html"}, {".htm", "text/html"}};
  auto dot = path.rfind('.');
  std::string ext = dot == std::string::npos ? "" : path.substr(dot);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [e, m] : kKnown)
    if (ext == e) return m;
  return "application/octet-stream";
}

void AttachAndStore(dala_store* s, dala_report* r, const EditArgs& a) {
  dala_report_id id;
  dala_report_get_id(r, &id);
  for (const auto& path : a.attach) {
    dala_attachment_id aid;
    Call(dala_attachment_import_file, s, &id, path.c_str(), GuessMime(path).c_str(), &aid);
  }
  if (a.seal) Call(dala_report_seal, s, r);
  else Call(dala_report_save, s, r);
}

int Add(CLI::App* cmd, const EditArgs& a) {
  auto s = OpenStore(a.store, false);
  Ref<dala_report> r;
  Call(dala_report_create, s.get(), a.form.c_str(), Out(r));
  // The draft exists from here; if anything below fails it is deleted: nothing half-written is left.
  dala_report_id id;
  dala_report_get_id(r.get(), &id);
  try {
    ApplyEdits(cmd, r.get(), a);
    AttachAndStore(s.get(), r.get(), a);
  } catch (...) {
    dala_report_delete_draft(s.get(), &id, nullptr);
    throw;
  }
  std::printf("%s\n", ToString(id).c_str());
  return kExitOk;
}

int Edit(CLI::App* cmd, const EditArgs& a) {
  dala_report_id id = ParseReportId(a.id);
  auto s = OpenStore(a.store, false);
  Ref<dala_report> r;
  Call(dala_report_edit, s.get(), &id, Out(r));
  ApplyEdits(cmd, r.get(), a);
  AttachAndStore(s.get(), r.get(), a);
  std::printf("%s\n", ToString(id).c_str());
  std::fprintf(stderr, "Version %u is %s.\n", dala_report_get_version(r.get()),
               dala_report_state_name(dala_report_get_state(r.get())));
  return kExitOk;
}

void PrintField(const dala_report* r, size_t i) {
  const char* key = dala_report_get_field_key(r, i);
  std::printf("  %s: ", key);
  switch (dala_report_get_field_type(r, i)) {
    case DALA_FIELD_TEXT:
    case DALA_FIELD_DECIMAL: {
      const char* v = nullptr;
      if (dala_report_get_field_type(r, i) == DALA_FIELD_TEXT) Call(dala_report_get_text, r, key, &v);
      else Call(dala_report_get_decimal, r, key, &v);
      std::printf("%s\n", v);
      break;
    }
    case DALA_FIELD_INTEGER: {
      int64_t v = 0;
      Call(dala_report_get_integer, r, key, &v);
      std::printf("%lld\n", static_cast<long long>(v));
      break;
    }
    case DALA_FIELD_BOOLEAN: {
      int v = 0;
      Call(dala_report_get_boolean, r, key, &v);
      std::printf("%s\n", v ? "true" : "false");
      break;
    }
    case DALA_FIELD_TIMESTAMP: {
      int64_t v = 0;
      Call(dala_report_get_timestamp, r, key, &v);
      std::printf("%s\n", FormatTime(v).c_str());
      break;
    }
    case DALA_FIELD_GEO: {
      dala_geo g;
      Call(dala_report_get_geo, r, key, &g);
      std::printf("%.6f, %.6f (±%.0f m)\n", g.latitude, g.longitude, g.accuracy_m);
      break;
    }
    case DALA_FIELD_PEOPLE: {
      size_t n = 0;
      Call(dala_report_get_people, r, key, static_cast<dala_person*>(nullptr), size_t{0}, &n);
      std::vector<dala_person> ps(n);
      Call(dala_report_get_people, r, key, ps.data(), n, &n);
      for (size_t k = 0; k < n; ++k)
        std::printf("%s%s%s%s", k ? "; " : "", ps[k].name, ps[k].role[0] ? " — " : "", ps[k].role);
      std::printf("\n");
      break;
    }
  }
}

void PrintReport(dala_store* s, const dala_report* r) {
  dala_report_id id;
  dala_report_get_id(r, &id);
  std::printf("id:        %s\nversion:   %u\nform:      %s\nstate:     %s\ncreated:   %s\n", ToString(id).c_str(),
              dala_report_get_version(r), dala_report_get_form(r),
              dala_report_state_name(dala_report_get_state(r)), FormatTime(dala_report_get_created_ms(r)).c_str());
  if (dala_report_is_purged(r)) {
    std::printf("content:   deleted after delivery\n");
    return;
  }
  uint8_t dev[32], hash[32], prev[32];
  ErrorSlot e;
  if (dala_report_get_seal_info(r, dev, hash, prev, e.out()) == DALA_OK) {
    std::printf("signed by: %s\nhash:      %s\n", Hex(dev, 32).c_str(), Hex(hash, 32).c_str());
    if (dala_report_get_version(r) > 1) std::printf("previous:  %s\n", Hex(prev, 32).c_str());
  }
  for (size_t i = 0; i < dala_report_get_field_count(r); ++i) PrintField(r, i);
  if (dala_report_get_narrative(r)[0] != '\0') std::printf("narrative:\n%s\n", dala_report_get_narrative(r));
  Ref<dala_attachment_list> list;
  Call(dala_store_list_attachments, s, &id, Out(list));
  bool header = false;
  for (size_t i = 0; i < dala_attachment_list_count(list.get()); ++i) {
    dala_attachment_info info;
    Call(dala_attachment_list_get, list.get(), i, &info);
    if (info.version > dala_report_get_version(r)) continue;  // added to a later version
    if (!header) std::printf("attachments:\n");
    header = true;
    std::printf("  %s  %-24s %10s  plaintext %s\n", ToString(info.id).c_str(), info.mime_type,
                SizeText(info.size).c_str(), Hex(info.plaintext_hash, 32).substr(0, 16).c_str());
  }
}

int Show(const StoreArgs& sa, const std::string& text, uint32_t version, bool json) {
  dala_report_id id = ParseReportId(text);
  auto s = OpenStore(sa, false);
  Ref<dala_report> r;
  if (version > 0) Call(dala_report_load_version, s.get(), &id, version, Out(r));
  else Call(dala_report_load, s.get(), &id, Out(r));
  if (json) {
    char* out = nullptr;
    Call(dala_report_to_json, r.get(), &out);
    PrintJson(nlohmann::ordered_json::parse(TakeString(out)));
  } else {
    PrintReport(s.get(), r.get());
  }
  return kExitOk;
}

struct ListArgs {
  StoreArgs store;
  bool json = false;
  uint32_t limit = 0;  // 0: every report that matches
  std::string after;
  std::vector<std::string> states;
  std::string form;
};

int List(const ListArgs& a) {
  auto s = OpenStore(a.store, false);
  dala_report_list_options o;
  dala_report_list_options_init(&o);
  for (const std::string& name : a.states) {
    int state = -1;
    for (int v = DALA_REPORT_DRAFT; v <= DALA_REPORT_REJECTED; ++v)
      if (name == dala_report_state_name(static_cast<dala_report_state>(v))) state = v;
    if (state < 0) {
      std::fprintf(stderr, "dala: --state is draft, sealed, queued, delivered or rejected, not '%s'\n", name.c_str());
      return kExitUsage;
    }
    o.states |= DALA_REPORT_STATE_BIT(state);
  }
  o.form = a.form.empty() ? nullptr : a.form.c_str();
  o.limit = a.limit != 0 ? a.limit : 1000;
  std::string cursor = a.after, next;
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (;;) {  // one page with --limit; otherwise every page
    o.after = cursor.empty() ? nullptr : cursor.c_str();
    Ref<dala_report_list> list;
    Call(dala_store_list_reports_page, s.get(), &o, Out(list));
    for (size_t i = 0; i < dala_report_list_count(list.get()); ++i) {
      dala_report_info info;
      Call(dala_report_list_get, list.get(), i, &info);
      if (a.json)
        all.push_back({{"id", ToString(info.id)}, {"version", info.version}, {"form", info.form},
                       {"state", dala_report_state_name(info.state)}, {"created", info.created_ms},
                       {"updated", info.updated_ms}});
      else
        std::printf("%s  v%-3u %-9s  %s  %s\n", ToString(info.id).c_str(), info.version,
                    dala_report_state_name(info.state), FormatTime(info.created_ms).c_str(), info.form);
    }
    const char* more = dala_report_list_next(list.get());
    next = more != nullptr ? more : "";
    if (a.limit != 0 || next.empty()) break;
    cursor = next;
  }
  if (a.json && a.limit != 0) {  // a page: where the next one starts
    nlohmann::ordered_json page = {{"reports", all}, {"next", nullptr}};
    if (!next.empty()) page["next"] = next;
    PrintJson(page);
  } else if (a.json) {
    PrintJson(all);
  } else if (!next.empty()) {
    std::fprintf(stderr, "more: --after %s\n", next.c_str());
  }
  return kExitOk;
}

int Seal(const StoreArgs& sa, const std::string& text) {
  dala_report_id id = ParseReportId(text);
  auto s = OpenStore(sa, false);
  Ref<dala_report> r;
  Call(dala_report_load, s.get(), &id, Out(r));
  if (dala_report_get_state(r.get()) != DALA_REPORT_DRAFT) {
    std::fprintf(stderr, "dala: report %s version %u is already sealed; nothing to do\n", ToString(id).c_str(),
                 dala_report_get_version(r.get()));
    return kExitOk;
  }
  Call(dala_report_seal, s.get(), r.get());
  std::fprintf(stderr, "Sealed version %u (%s).\n", dala_report_get_version(r.get()),
               dala_report_state_name(dala_report_get_state(r.get())));
  return kExitOk;
}

// Decrypts one attachment (verified to its end) into a new file; nothing unverified is left behind.
int GetAttachment(const StoreArgs& sa, const std::string& text, const std::string& out) {
  dala_attachment_id id;
  ErrorSlot pe;
  if (dala_attachment_id_parse(text.c_str(), &id, pe.out()) != DALA_OK)
    throw UsageError{"'" + text + "' is not an attachment id (32 hexadecimal characters)"};
  if (std::FILE* existing = std::fopen(out.c_str(), "rb")) {
    std::fclose(existing);
    throw UsageError{"'" + out + "' already exists; give a new file"};
  }
  auto s = OpenStore(sa, false);
  Ref<dala_attachment_reader> reader;
  Call(dala_attachment_reader_open, s.get(), &id, Out(reader));
  const std::string part = out + ".part";
  FILE* f = std::fopen(part.c_str(), "wbx");
  if (f == nullptr) throw UsageError{"cannot create '" + part + "': " + std::strerror(errno)};
  std::vector<uint8_t> buf(1u << 16);
  try {
    for (size_t n = 1; n > 0;) {
      Call(dala_attachment_reader_read, reader.get(), buf.data(), buf.size(), &n);
      if (n > 0 && std::fwrite(buf.data(), 1, n, f) != n) throw UsageError{"cannot write '" + part + "'"};
    }
  } catch (...) {
    std::fclose(f);
    std::remove(part.c_str());
    throw;
  }
  if (std::fclose(f) != 0 || std::rename(part.c_str(), out.c_str()) != 0) {
    std::remove(part.c_str());
    throw UsageError{"cannot write '" + out + "'"};
  }
  return kExitOk;
}

}  // namespace

void AddReportCommands(CLI::App& app, int* rc) {
  CLI::App* report = app.add_subcommand("report", "record, edit, seal and read reports")->require_subcommand(1);

  auto add = std::make_shared<EditArgs>();
  CLI::App* c = report->add_subcommand("add", "records a new report; prints its id");
  AddStoreOptions(c, add->store);
  c->add_option("--form", add->form, "the form, NAME/VERSION (e.g. detention/1)")->required();
  AddEditOptions(c, *add, false);
  c->callback([c, add, rc] { *rc = Add(c, *add); });

  auto edit = std::make_shared<EditArgs>();
  c = report->add_subcommand("edit", "changes the draft, or starts a new version of a sealed report");
  AddStoreOptions(c, edit->store);
  c->add_option("id", edit->id, "the report id")->required();
  AddEditOptions(c, *edit, true);
  c->callback([c, edit, rc] { *rc = Edit(c, *edit); });

  struct IdArgs {
    StoreArgs store;
    std::string id;
    uint32_t version = 0;
    bool json = false;
  };
  auto seal = std::make_shared<IdArgs>();
  c = report->add_subcommand("seal", "seals the draft version");
  AddStoreOptions(c, seal->store);
  c->add_option("id", seal->id, "the report id")->required();
  c->callback([seal, rc] { *rc = Seal(seal->store, seal->id); });

  auto show = std::make_shared<IdArgs>();
  c = report->add_subcommand("show", "shows a report (the latest version unless --version)");
  AddStoreOptions(c, show->store);
  c->add_option("id", show->id, "the report id")->required();
  c->add_option("--version", show->version, "this version")->check(CLI::PositiveNumber);
  c->add_flag("--json", show->json, "as JSON");
  c->callback([show, rc] { *rc = Show(show->store, show->id, show->version, show->json); });

  auto list = std::make_shared<ListArgs>();
  c = report->add_subcommand("list", "lists the reports, latest version of each, newest first");
  AddStoreOptions(c, list->store);
  c->add_flag("--json", list->json, "as JSON (with --limit: {\"reports\": [...], \"next\": CURSOR or null})");
  c->add_option("--limit", list->limit, "one page of at most N reports (1 to 1000); the next page's cursor goes to "
                                        "stderr as 'more: --after CURSOR'")
      ->check(CLI::Range(1, 1000));
  c->add_option("--after", list->after, "the page after this cursor (from the page before)");
  c->add_option("--state", list->states, "only reports in this state (draft, sealed, queued, delivered, rejected; "
                                         "repeat for several)");
  c->add_option("--form", list->form, "only this form: NAME (every version) or NAME/VERSION");
  c->callback([list, rc] { *rc = List(*list); });

  auto del = std::make_shared<IdArgs>();
  c = report->add_subcommand("delete", "deletes the draft version (and its attachments)");
  AddStoreOptions(c, del->store);
  c->add_option("id", del->id, "the report id")->required();
  c->callback([del, rc] {
    dala_report_id id = ParseReportId(del->id);
    auto s = OpenStore(del->store, false);
    Call(dala_report_delete_draft, s.get(), &id);
    *rc = kExitOk;
  });

  auto retry = std::make_shared<IdArgs>();
  c = report->add_subcommand("retry", "queues a rejected report again, exactly as it was sealed (dala sync sends it)");
  AddStoreOptions(c, retry->store);
  c->add_option("id", retry->id, "the report id")->required();
  c->callback([retry, rc] {
    dala_report_id id = ParseReportId(retry->id);
    auto s = OpenStore(retry->store, false);
    Call(dala_report_retry, s.get(), &id);
    std::printf("queued again: %s\n", retry->id.c_str());
    *rc = kExitOk;
  });

  CLI::App* attachment = app.add_subcommand("attachment", "read attachments")->require_subcommand(1);
  struct GetArgs {
    StoreArgs store;
    std::string id, out;
  };
  auto get = std::make_shared<GetArgs>();
  c = attachment->add_subcommand("get", "decrypts one attachment (verified) into a new file");
  AddStoreOptions(c, get->store);
  c->add_option("id", get->id, "the attachment id")->required();
  c->add_option("--out", get->out, "the file to write (must not exist)")->required();
  c->callback([get, rc] { *rc = GetAttachment(get->store, get->id, get->out); });
}

}  // namespace dala::cli
