// Name lookups of the file readers: a vector of entries plus a name -> position index.
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace samq {

// The entry named `name`, or null.
template <typename T>
const T* find_by_name(const std::unordered_map<std::string, size_t>& index, const std::vector<T>& items,
                      std::string_view name) {
  const auto it = index.find(std::string(name));
  return it == index.end() ? nullptr : &items[it->second];
}

}  // namespace samq
