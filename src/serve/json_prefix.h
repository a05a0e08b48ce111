// serve/json_prefix.h — an incremental check that text is a prefix of one JSON object, for
// `response_format: {"type": "json_object"}`: the scheduler lets the sampler pick only tokens
// whose text keeps the output a valid prefix, and ends the answer when the object is complete.
//
// RFC 8259 grammar: objects, arrays, strings (escapes, \uXXXX, no raw control characters),
// numbers (no leading zeros, fraction, exponent), true/false/null. The top-level value must be an
// object. Bounds keep a constrained model from running on: at most `max_ws` whitespace
// characters in a row, nesting at most `max_depth`.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace samq::serve {

class JsonPrefix {
 public:
  // Appends text; false (and the state unchanged) when the result is no prefix of a JSON object.
  bool feed(std::string_view text);
  // Whether text would be accepted (the state unchanged).
  bool accepts(std::string_view text) const;
  bool complete() const { return st_ == Done; }

  static constexpr int max_ws = 32, max_depth = 32;

 private:
  enum State : uint8_t {
    Start, Value, ObjKeyOrEnd, ObjKey, Colon, ArrValueOrEnd, AfterValue, Str, Esc, Hex,
    NumMinus, NumZero, NumInt, NumFracStart, NumFrac, NumExpStart, NumExpSign, NumExp, Lit, Done
  };
  bool step(char c);
  bool value_start(char c);
  bool after_value(char c);
  State st_ = Start;
  bool key_ = false;       // Str: an object key
  int hex_ = 0, ws_ = 0;
  const char* lit_ = nullptr;  // Lit: the rest of true/false/null
  std::string stack_;      // '{' or '['
};

}  // namespace samq::serve
