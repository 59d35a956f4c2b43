// Minimal JSON reader for manifest.json (internal; no third-party dependency).
// Parses the whole RFC 8259 grammar into a tree of Value; numbers are doubles (the manifest's
// float32 coefficients are written by Python as the exact double of the float32 value, so
// `static_cast<float>` gives the same bits back). Errors throw std::runtime_error with the offset.
#pragma once

#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ldmvfi_fast::json {

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  bool is_null() const { return type == Type::Null; }
  bool is_number() const { return type == Type::Number; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }
  // nullptr when this is not an object or has no such key
  const Value* find(const std::string& key) const {
    if (type != Type::Object) return nullptr;
    auto it = object.find(key);
    return it == object.end() ? nullptr : &it->second;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Value parse() {
    Value v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;
  int depth_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("invalid JSON at offset " + std::to_string(i_) + ": " + what);
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    return s_[i_];
  }
  void expect(const char* word) {
    for (const char* c = word; *c; ++c, ++i_)
      if (i_ >= s_.size() || s_[i_] != *c) fail(std::string("expected ") + word);
  }

  Value value() {
    if (++depth_ > 256) fail("nesting too deep");
    Value v;
    char c = peek();
    if (c == '{') {
      v.type = Value::Type::Object;
      ++i_;
      if (peek() == '}') {
        ++i_;
      } else {
        while (true) {
          if (peek() != '"') fail("expected a key");
          std::string key = str();
          if (peek() != ':') fail("expected ':'");
          ++i_;
          v.object[key] = value();
          char d = peek();
          ++i_;
          if (d == '}') break;
          if (d != ',') fail("expected ',' or '}'");
        }
      }
    } else if (c == '[') {
      v.type = Value::Type::Array;
      ++i_;
      if (peek() == ']') {
        ++i_;
      } else {
        while (true) {
          v.array.push_back(value());
          char d = peek();
          ++i_;
          if (d == ']') break;
          if (d != ',') fail("expected ',' or ']'");
        }
      }
    } else if (c == '"') {
      v.type = Value::Type::String;
      v.string = str();
    } else if (c == 't') {
      expect("true");
      v.type = Value::Type::Bool;
      v.boolean = true;
    } else if (c == 'f') {
      expect("false");
      v.type = Value::Type::Bool;
    } else if (c == 'n') {
      expect("null");
    } else if (c == 'N' || c == 'I') {  // Python's json writes NaN / Infinity
      if (s_.compare(i_, 3, "NaN") == 0) {
        i_ += 3;
        v.number = std::numeric_limits<double>::quiet_NaN();
      } else {
        expect("Infinity");
        v.number = std::numeric_limits<double>::infinity();
      }
      v.type = Value::Type::Number;
    } else {
      v.type = Value::Type::Number;
      const char* start = s_.c_str() + i_;
      char* end = nullptr;
      if (s_.compare(i_, 9, "-Infinity") == 0) {
        i_ += 9;
        v.number = -std::numeric_limits<double>::infinity();
      } else {
        v.number = std::strtod(start, &end);
        if (end == start) fail("unexpected character");
        i_ += static_cast<size_t>(end - start);
      }
    }
    --depth_;
    return v;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    unsigned cp = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= h - '0';
      else if (h >= 'a' && h <= 'f') cp |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') cp |= h - 'A' + 10;
      else fail("bad \\u escape");
    }
    return cp;
  }
  std::string str() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 6 <= s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
            i_ += 2;
            unsigned lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }
};

inline Value parse(const std::string& text) { return Parser(text).parse(); }

}  // namespace ldmvfi_fast::json
