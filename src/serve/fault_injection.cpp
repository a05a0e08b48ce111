#include "serve/fault_injection.h"

#include <chrono>
#include <thread>

#include "core/error.h"

namespace samq::serve {

void FaultInjectingGenerator::step(std::span<const StepInput> batch,
                                   std::vector<std::vector<float>>& logits) {
  if (int d = delay_ms_.load(); d > 0) std::this_thread::sleep_for(std::chrono::milliseconds(d));
  if (fail_) fail("injected fault: generator '{}' fails (POST /internal/fault)", in_->model_id());
  in_->step(batch, logits);
}

}  // namespace samq::serve
