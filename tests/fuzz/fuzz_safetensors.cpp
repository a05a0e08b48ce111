// libFuzzer target: the safetensors header parser and float conversion on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "core/error.h"
#include "format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    std::map<std::string, std::string> md;
    auto ts = samq::parse_safetensors(data, size, "fuzz.safetensors", &md);
    for (const auto& t : ts) {
      // Convert the whole tensor when small, else its first and last rows.
      if (t.n_elements() <= 4096) {
        std::vector<float> out(size_t(t.n_elements()));
        samq::to_f32(t, out.data());
      } else if (t.cols() <= 4096 && t.rows() > 0) {
        std::vector<float> row(size_t(t.cols()));
        samq::row_to_f32(t, 0, row.data());
        samq::row_to_f32(t, t.rows() - 1, row.data());
      }
    }
  } catch (const samq::Error&) {
  }
  return 0;
}
