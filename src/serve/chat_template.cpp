#include "serve/chat_template.h"

#include "core/error.h"

namespace samq::serve {

RenderedChat render_chat(const std::string& name, const std::vector<ChatMessage>& messages, bool model_adds_bos) {
  RenderedChat r;
  auto skel = [&](const std::string& t) {
    if (!r.parts.empty() && r.parts.back().special) r.parts.back().text += t;
    else r.parts.push_back({t, true});
  };
  auto content = [&](const std::string& t) {
    if (!t.empty()) r.parts.push_back({t, false});
  };
  if (name == "llama3") {
    skel("<|begin_of_text|>");
    for (auto& m : messages) {
      skel("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n");
      content(m.content);
      skel("<|eot_id|>");
    }
    skel("<|start_header_id|>assistant<|end_header_id|>\n\n");
    r.add_bos = false;  // the template spells BOS itself
    r.stop = {"<|eot_id|>", "<|start_header_id|>"};
  } else if (name == "chatml") {
    for (auto& m : messages) {
      skel("<|im_start|>" + m.role + "\n");
      content(m.content);
      skel("<|im_end|>\n");
    }
    skel("<|im_start|>assistant\n");
    r.add_bos = model_adds_bos;
    r.stop = {"<|im_end|>", "<|im_start|>"};
  } else {
    fail("unknown chat template '{}' (known: llama3, chatml)", name);
  }
  for (auto& p : r.parts) r.prompt += p.text;
  return r;
}

std::string detect_chat_template(const std::string& jinja, bool vocab_has_llama3_bos) {
  if (jinja.find("<|start_header_id|>") != std::string::npos) return "llama3";
  if (jinja.find("<|im_start|>") != std::string::npos) return "chatml";
  if (jinja.empty() && vocab_has_llama3_bos) return "llama3";
  return "chatml";
}

}  // namespace samq::serve
