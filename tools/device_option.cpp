// --device (device_option.h).
#include "device_option.h"

#ifdef SAMQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace samq::cli {

std::string device_option_help(const std::string& what) {
  std::string h = what + ": cpu, cuda (= cuda:0) or cuda:N (default: ";
  if (cuda_built())
    h += "cuda:0 when a CUDA GPU is visible, else cpu)";
  else
    h += "cpu; this samq was built without CUDA)";
  return h;
}

void DeviceOption::declare(CLI::App& sub, const std::string& what) {
  sub.add_option("--device", spec, device_option_help(what))->type_name("DEVICE");
}

Backend DeviceOption::resolve() const { return select_backend(spec); }

std::string DeviceOption::preview() const {
#ifdef SAMQ_HAVE_CUDA
  const int n = cuda_device_count();
  if (spec.empty() || spec == "auto") return n > 0 ? "cuda:0" : "cpu";
  if (spec == "cpu") return "cpu";
  int index = -1;
  if (spec == "cuda") index = 0;
  else if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5 && spec.size() <= 8 &&
           spec.find_first_not_of("0123456789", 5) == std::string::npos)
    index = std::stoi(spec.substr(5));
  if (index >= 0 && index < n) return "cuda:" + std::to_string(index);
  // Not a device that exists: select_backend says why (it opens nothing before failing).
#endif
  return select_backend(spec).device;
}

int DeviceOption::cuda_index() const {
  const std::string d = preview();
  return d == "cpu" ? -1 : std::stoi(d.substr(5));
}

std::vector<std::string> DeviceOption::args() const {
  if (spec.empty()) return {};
  return {"--device", spec};
}

}  // namespace samq::cli
