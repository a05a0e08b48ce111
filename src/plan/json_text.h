// Parsing the planner's JSON files (sensitivity reports, plans) with errors naming the file.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace samq::plan {

// text parsed as JSON; throws "<path>: not valid JSON: ..." otherwise.
inline nlohmann::json parse_json_text(const std::string& text, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace samq::plan
