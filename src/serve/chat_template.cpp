#include "serve/chat_template.h"

#include "core/error.h"

namespace samq::serve {

RenderedChat render_chat(const std::string& name, const std::vector<ChatMessage>& messages, bool model_adds_bos) {
  RenderedChat r;
  if (name == "llama3") {
    r.prompt = "<|begin_of_text|>";
    for (auto& m : messages)
      r.prompt += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
    r.prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    r.add_bos = false;  // the template spells BOS itself
    r.stop = {"<|eot_id|>", "<|start_header_id|>"};
  } else if (name == "chatml") {
    for (auto& m : messages) r.prompt += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    r.prompt += "<|im_start|>assistant\n";
    r.add_bos = model_adds_bos;
    r.stop = {"<|im_end|>", "<|im_start|>"};
  } else {
    fail("unknown chat template '{}' (known: llama3, chatml)", name);
  }
  return r;
}

std::string detect_chat_template(const std::string& jinja, bool vocab_has_llama3_bos) {
  if (jinja.find("<|start_header_id|>") != std::string::npos) return "llama3";
  if (jinja.find("<|im_start|>") != std::string::npos) return "chatml";
  if (jinja.empty() && vocab_has_llama3_bos) return "llama3";
  return "chatml";
}

}  // namespace samq::serve
