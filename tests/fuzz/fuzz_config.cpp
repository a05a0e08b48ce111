// libFuzzer target: the HF config.json parser (ModelHparams) on arbitrary text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "format/hparams.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    samq::ModelHparams hp =
        samq::hparams_from_hf_config_json(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    volatile int64_t sink = hp.n_embd_q() + hp.n_embd_kv();
    (void)sink;
  } catch (const samq::Error&) {
  }
  return 0;
}
