// libFuzzer target: the GGUF reader (and what reads its metadata) on arbitrary bytes.
// Every input must either parse or throw samq::Error; anything else (a crash, an ASan report,
// another exception type, a timeout) is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "format/gguf.h"
#include "format/hparams.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    samq::GgufFile f = samq::GgufFile::from_memory(data, size, "fuzz.gguf");
    size_t n = 0;
    for (const auto& v : f.kv()) n += v.to_string(4).size() + v.encoded_size();
    for (const auto& t : f.tensors()) {
      n += t.shape_string().size();
      if (t.nbytes > 0) n += t.data[0] + t.data[t.nbytes - 1];  // data lies inside the buffer
    }
    try {
      samq::ModelHparams hp = samq::hparams_from_gguf(f);
      n += size_t(hp.n_embd);
    } catch (const samq::Error&) {
    }
    volatile size_t sink = n;
    (void)sink;
  } catch (const samq::Error&) {
  }
  return 0;
}
