// The desk's pages (docs/desk.md), rendered on the server as HTML from what the store holds. Everything a
// phone wrote is untrusted: it reaches a page only through Text() (escaped, isolated for bidirectional
// text), never inside a script, a style or a URL; URLs carry only numbers and hex the desk made itself.
// No page has a script; the stylesheet is BASE/static/desk.css. Every link is relative to the desk's
// secret path (<base href>), so that the session cookie, scoped to that path, reaches no other server on
// the same machine.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "desk/desk_custody.h"
#include "desk/desk_query.h"
#include "desk/web/map_tiles.h"

namespace dala::desk::web {

// HTML-escapes s for text and for quoted attribute values.
std::string Escape(std::string_view s);

struct PageContext {
  std::string csrf;    // the session's token for forms that change something
  std::string title;
  std::string base;    // the desk's secret path, "/SECRET/": every link is relative to it
  const TileSource* tiles = nullptr;  // the organisation's own map tiles, if the desk has them
};

std::string ReportsPage(const PageContext& c, const ListQuery& q, const ListPage& page,
                        const std::vector<std::string>& forms, double server_ms);
std::string ReportPage(const PageContext& c, const ReportDetail& d, const DeviceRow* device,
                       const std::vector<CustodyEntry>& custody, const std::string& root_hex);
std::string OverviewPage(const PageContext& c, const Overview& o);
std::string DevicesPage(const PageContext& c, const std::vector<DeviceRow>& devices);
std::string CustodyPage(const PageContext& c, const std::vector<CustodyEntry>& all, const std::string& verdict);
// Errors and login; `base` empty: unstyled (no session, so no path to the stylesheet).
std::string MessagePage(const std::string& title, const std::string& message, const std::string& base = "");

// The stylesheet.
extern const char kDeskCss[];

// Attachments the browser may show inline (never active content: no SVG, no HTML, no XML).
bool IsPassiveImage(std::string_view mime);
bool IsPlayableMedia(std::string_view mime);  // audio/* and video/* the browser can play

}  // namespace dala::desk::web
