#include "serve/json_prefix.h"

namespace samq::serve {

namespace {
bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
}  // namespace

bool JsonPrefix::accepts(std::string_view text) const {
  JsonPrefix copy = *this;
  return copy.feed(text);
}

bool JsonPrefix::feed(std::string_view text) {
  JsonPrefix save = *this;
  for (char c : text)
    if (!step(c)) {
      *this = save;
      return false;
    }
  return true;
}

bool JsonPrefix::value_start(char c) {
  switch (c) {
    case '{':
    case '[':
      if (int(stack_.size()) >= max_depth) return false;
      stack_.push_back(c);
      st_ = c == '{' ? ObjKeyOrEnd : ArrValueOrEnd;
      return true;
    case '"': st_ = Str; key_ = false; return true;
    case '-': st_ = NumMinus; return true;
    case '0': st_ = NumZero; return true;
    case 't': st_ = Lit; lit_ = "rue"; return true;
    case 'f': st_ = Lit; lit_ = "alse"; return true;
    case 'n': st_ = Lit; lit_ = "ull"; return true;
    default:
      if (c >= '1' && c <= '9') { st_ = NumInt; return true; }
      return false;
  }
}

// After a complete value: a separator, the closer of the innermost container, or the end.
bool JsonPrefix::after_value(char c) {
  if (stack_.empty()) return false;  // Done handles the top level
  const char open = stack_.back();
  if (c == ',') {
    st_ = open == '{' ? ObjKey : Value;
    return true;
  }
  if ((open == '{' && c == '}') || (open == '[' && c == ']')) {
    stack_.pop_back();
    st_ = stack_.empty() ? Done : AfterValue;
    return true;
  }
  return false;
}

bool JsonPrefix::step(char c) {
  const bool ws = is_ws(c);
  if (ws && st_ != Str && st_ != Esc && st_ != Hex) {
    // Whitespace between tokens; it also ends a number.
    switch (st_) {
      case NumZero: case NumInt: case NumFrac: case NumExp: st_ = AfterValue; break;
      case NumMinus: case NumFracStart: case NumExpStart: case NumExpSign: case Lit: case Done: return false;
      default: break;
    }
    if (++ws_ > max_ws) return false;
    return true;
  }
  ws_ = 0;
  switch (st_) {
    case Start:
      if (c != '{') return false;
      return value_start(c);
    case Value:
      return value_start(c);
    case ObjKeyOrEnd:
      if (c == '}') return after_value(c);
      [[fallthrough]];
    case ObjKey:
      if (c != '"') return false;
      st_ = Str;
      key_ = true;
      return true;
    case Colon:
      if (c != ':') return false;
      st_ = Value;
      return true;
    case ArrValueOrEnd:
      if (c == ']') return after_value(c);
      return value_start(c);
    case AfterValue:
      return after_value(c);
    case Str:
      if (c == '"') {
        st_ = key_ ? Colon : AfterValue;
        return true;
      }
      if (c == '\\') { st_ = Esc; return true; }
      return static_cast<unsigned char>(c) >= 0x20;
    case Esc:
      if (c == 'u') { st_ = Hex; hex_ = 0; return true; }
      if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
        st_ = Str;
        return true;
      }
      return false;
    case Hex:
      if (!is_hex(c)) return false;
      if (++hex_ == 4) st_ = Str;
      return true;
    case NumMinus:
      if (c == '0') { st_ = NumZero; return true; }
      if (c >= '1' && c <= '9') { st_ = NumInt; return true; }
      return false;
    case NumZero:
    case NumInt:
      if (st_ == NumInt && is_digit(c)) return true;
      if (c == '.') { st_ = NumFracStart; return true; }
      if (c == 'e' || c == 'E') { st_ = NumExpStart; return true; }
      return after_value(c);
    case NumFracStart:
      if (!is_digit(c)) return false;
      st_ = NumFrac;
      return true;
    case NumFrac:
      if (is_digit(c)) return true;
      if (c == 'e' || c == 'E') { st_ = NumExpStart; return true; }
      return after_value(c);
    case NumExpStart:
      if (c == '+' || c == '-') { st_ = NumExpSign; return true; }
      [[fallthrough]];
    case NumExpSign:
      if (!is_digit(c)) return false;
      st_ = NumExp;
      return true;
    case NumExp:
      if (is_digit(c)) return true;
      return after_value(c);
    case Lit:
      if (c != *lit_) return false;
      if (*++lit_ == '\0') st_ = AfterValue;
      return true;
    case Done:
      return false;
  }
  return false;
}

}  // namespace samq::serve
