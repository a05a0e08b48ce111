// Escaping text for XML/SVG/HTML content and attribute values (the SVG reports of analyze and
// plan): < > & and " become entities.
#pragma once
#include <string>
#include <string_view>

namespace samq {

inline std::string xml_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

}  // namespace samq
