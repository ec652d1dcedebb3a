// A C++ program built against an installed Dala, through the header-only dala.hh: handles owned, errors
// thrown as dala::Error.
#include <dala/dala.hh>
#include <dala/desk.hh>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::string raw(32, '\x07');
  dala_credential c{DALA_CREDENTIAL_RAW_KEY, reinterpret_cast<const uint8_t*>(raw.data()), raw.size()};
  dala::Ref<dala_store> store;
  dala::Call(dala_store_create, argv[1], &c, nullptr, dala::Out(store));
  dala::Ref<dala_report> report;
  dala::Call(dala_report_create, store.get(), "detention/1", dala::Out(report));
  dala::Call(dala_report_save, store.get(), report.get());
  char* json = nullptr;
  dala::Call(dala_report_to_json, report.get(), &json);
  std::string text = dala::TakeString(json);
  try {
    dala::Call(dala_store_create, argv[1], &c, nullptr, dala::Out(store));
    return 1;  // the store exists: must throw
  } catch (const dala::Error& e) {
    if (e.status() != DALA_ERR_EXISTS) return 1;
  }
  dala::Ref<dala_desk> desk;
  std::printf("C++: Dala %s, report %s, %zu bytes of JSON\n", dala_version(), report ? "saved" : "?", text.size());
  return 0;
}
