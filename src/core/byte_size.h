// A byte size as users write it on the command line: "20542368", "18MB", "18.5 MB", "40GB",
// "2GiB", "512KiB": decimal units (kB, MB, GB, TB = 10^3k) and binary ones (KiB, MiB, GiB, TiB);
// a bare number is bytes. Throws samq::Error naming `what` (the option or field).
#pragma once
#include <cstdint>
#include <string>

namespace samq {

int64_t parse_byte_size(const std::string& text, const std::string& what);

}  // namespace samq
