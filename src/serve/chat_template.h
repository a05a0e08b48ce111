// serve/chat_template.h — renders OpenAI chat messages into a prompt with one of the built-in
// templates (the model's own Jinja template is not interpreted):
//   llama3: <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>...
//           <|start_header_id|>assistant<|end_header_id|>\n\n
//   chatml: <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
// Each template also names stop strings (its end-of-turn markers), so generation ends at the
// end of the assistant turn even when the vocabulary lacks those special tokens.
#pragma once
#include <string>
#include <vector>

#include "serve/request.h"

namespace samq::serve {

struct ChatMessage {
  std::string role, content;
};

struct RenderedChat {
  std::string prompt;
  std::vector<PromptPart> parts;  // prompt = the parts' text joined; content parts not special
  bool add_bos = false;  // whether the tokenizer should still add BOS
  std::vector<std::string> stop;
};

// name: "llama3" or "chatml"; throws samq::Error for others.
RenderedChat render_chat(const std::string& name, const std::vector<ChatMessage>& messages, bool model_adds_bos);

// Picks a template from a model's Jinja chat template text and vocabulary facts:
// "<|start_header_id|>" → llama3, "<|im_start|>" → chatml; with no template text, a vocabulary
// that has <|begin_of_text|> → llama3; otherwise chatml.
std::string detect_chat_template(const std::string& jinja, bool vocab_has_llama3_bos);

}  // namespace samq::serve
