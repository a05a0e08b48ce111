// Byte sizes written by users (core/byte_size.h).
#include "core/byte_size.h"

#include <cctype>
#include <cmath>

#include "core/error.h"

namespace samq {

int64_t parse_byte_size(const std::string& text, const std::string& what) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit((unsigned char)text[i]) || text[i] == '.')) ++i;
  if (i == 0) fail("{}: \"{}\" is not a size (examples: 20542368, 18MB, 40GB, 2GiB)", what, text);
  double v;
  try {
    v = std::stod(text.substr(0, i));
  } catch (...) {
    fail("{}: \"{}\" is not a size", what, text);
  }
  std::string unit;
  for (size_t k = i; k < text.size(); ++k)
    if (!std::isspace((unsigned char)text[k])) unit += char(std::tolower((unsigned char)text[k]));
  double mul;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "kb" || unit == "k") mul = 1e3;
  else if (unit == "mb" || unit == "m") mul = 1e6;
  else if (unit == "gb" || unit == "g") mul = 1e9;
  else if (unit == "tb" || unit == "t") mul = 1e12;
  else if (unit == "kib") mul = 1024.0;
  else if (unit == "mib") mul = 1024.0 * 1024;
  else if (unit == "gib") mul = 1024.0 * 1024 * 1024;
  else if (unit == "tib") mul = 1024.0 * 1024 * 1024 * 1024;
  else fail("{}: unknown unit \"{}\" in \"{}\" (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)", what, unit, text);
  const double b = std::floor(v * mul);
  if (!(b >= 0) || b > 9.0e18) fail("{}: \"{}\" is out of range", what, text);
  return int64_t(b);
}

}  // namespace samq
