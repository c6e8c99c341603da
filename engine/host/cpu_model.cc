#include "engine/host/cpu_model.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/status.h"
#include "engine/host/libvirt_util.h"
#include "engine/kvm/cpu_features.h"

namespace ferry {
namespace {

// libvirt's CPU map is compiled into the library; the in-process test driver exposes it without
// a daemon or a real host.
constexpr char kCpuMapUri[] = "test:///default";

// x86-64 psABI levels (System V AMD64 ABI, "Micro-Architecture Levels"), in libvirt's names:
// SSE3 is "pni", LAHF-SAHF "lahf_lm", LZCNT "abm", OSXSAVE is implied by "xsave" for a guest.
const std::map<std::string, std::vector<std::string>>& LevelAdditions() {
  static const auto* const kLevels = new std::map<std::string, std::vector<std::string>>{
      {"x86-64-v1", {"cmov", "cx8", "fpu", "fxsr", "lm", "mmx", "sse", "sse2", "syscall"}},
      {"x86-64-v2", {"cx16", "lahf_lm", "pni", "popcnt", "sse4.1", "sse4.2", "ssse3"}},
      {"x86-64-v3", {"abm", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"}},
      {"x86-64-v4", {"avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"}},
  };
  return *kLevels;
}

std::vector<std::string> LevelFeatures(const std::string& level) {
  std::set<std::string> out;
  for (const auto& [name, adds] : LevelAdditions()) {
    out.insert(adds.begin(), adds.end());
    if (name == level) break;
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> Sorted(std::set<std::string> s) { return {s.begin(), s.end()}; }

}  // namespace

absl::StatusOr<std::vector<std::string>> ExpandCpuModel(const std::string& model) {
  if (LevelAdditions().count(model)) return LevelFeatures(model);
  if (model.empty() || model.find_first_of("<>&'\"") != std::string::npos) {
    return absl::NotFoundError(absl::StrCat("unknown CPU model '", model, "'"));
  }
  ASSIGN_OR_RETURN(LibvirtConn conn, OpenLibvirt(kCpuMapUri));
  std::string xml = absl::StrCat("<cpu><arch>x86_64</arch><model>", model, "</model></cpu>");
  const char* cpus[] = {xml.c_str()};
  char* expanded = virConnectBaselineCPU(conn.get(), cpus, 1, VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES);
  if (expanded == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "unknown CPU model '", model,
        "' (libvirt's CPU map, /usr/share/libvirt/cpu_map, or x86-64-v1..v4; `migrate host "
        "cpu-baseline` shows what your hosts share)"));
  }
  ASSIGN_OR_RETURN(std::string out, TakeLibvirtString(expanded, "expand CPU model"));
  ASSIGN_OR_RETURN(XmlDoc doc, XmlDoc::Parse(out, "expand CPU model"));
  std::set<std::string> features;
  for (std::string& f : doc.All("/cpu/feature[@policy='require']/@name")) {
    // Some models also list MSR-based features (arch-capabilities bits such as ibrs-all); they
    // are not CPUID bits, KVM_GET_SUPPORTED_CPUID never reports them, and the guest's CPUID is
    // what the microVM controls, so only CPUID features are part of a model's set.
    if (FindCpuFeature(f) != nullptr) features.insert(f);
  }
  return Sorted(features);
}

absl::StatusOr<std::vector<std::string>> KnownCpuModels() {
  ASSIGN_OR_RETURN(LibvirtConn conn, OpenLibvirt(kCpuMapUri));
  char** models = nullptr;
  int n = virConnectGetCPUModelNames(conn.get(), "x86_64", &models, 0);
  if (n < 0) return LibvirtError("list CPU models");
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    out.emplace_back(models[i]);
    free(models[i]);
  }
  free(models);
  for (const auto& [name, adds] : LevelAdditions()) out.push_back(name);
  return out;
}

absl::Status ResolveVmCpu(VmSpec& vm, const std::string& origin) {
  std::set<std::string> features;
  if (!vm.cpu.model.empty()) {
    auto expanded = ExpandCpuModel(vm.cpu.model);
    if (!expanded.ok()) {
      return absl::Status(expanded.status().code(),
                          absl::StrCat(origin, ": cpu.model: ", expanded.status().message()));
    }
    features.insert(expanded->begin(), expanded->end());
  }
  for (const std::string& f : vm.cpu.features) {
    if (FindCpuFeature(f) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": cpu.features: unknown CPU feature '", f,
          "' (use libvirt's names, e.g. sse4.1, avx2, popcnt)"));
    }
    features.insert(f);
  }
  vm.cpu.features = Sorted(features);
  return absl::OkStatus();
}

absl::StatusOr<CpuBaseline> BaselineCpu(const std::vector<HostFacts>& hosts) {
  if (hosts.empty()) return absl::InvalidArgumentError("cpu-baseline needs at least one host");
  CpuBaseline b;
  std::set<std::string> common(hosts[0].cpu_features.begin(), hosts[0].cpu_features.end());
  for (const HostFacts& h : hosts) {
    std::set<std::string> next;
    for (const std::string& f : h.cpu_features) {
      if (common.count(f)) next.insert(f);
    }
    common = std::move(next);
    if (h.cpu_vendor.empty()) continue;
    if (b.vendor.empty() && !b.vendors_differ) {
      b.vendor = h.cpu_vendor;
    } else if (h.cpu_vendor != b.vendor) {
      b.vendors_differ = true;
    }
  }
  if (b.vendors_differ) b.vendor.clear();
  b.features = Sorted(common);
  // A guest of 64-bit hosts pinned to a 32-bit model could not run a 64-bit kernel.
  bool long_mode = common.count("lm") > 0;
  ASSIGN_OR_RETURN(std::vector<std::string> models, KnownCpuModels());
  std::vector<std::string> best_features;
  for (const std::string& m : models) {
    ASSIGN_OR_RETURN(std::vector<std::string> fs, ExpandCpuModel(m));
    bool fits = std::all_of(fs.begin(), fs.end(), [&](const std::string& f) { return common.count(f) > 0; });
    if (long_mode && !std::binary_search(fs.begin(), fs.end(), "lm")) fits = false;
    if (fits && (b.model.empty() || fs.size() > best_features.size())) {
      b.model = m;
      best_features = std::move(fs);
    }
  }
  for (const std::string& f : b.features) {
    if (!std::binary_search(best_features.begin(), best_features.end(), f)) b.extra.push_back(f);
  }
  for (const HostFacts& h : hosts) {
    HostCpuLoss loss{h.name, h.cpu_vendor, {}};
    for (const std::string& f : Sorted({h.cpu_features.begin(), h.cpu_features.end()})) {
      if (!std::binary_search(best_features.begin(), best_features.end(), f)) loss.loses.push_back(f);
    }
    b.hosts.push_back(std::move(loss));
  }
  return b;
}

std::string CommonCpuModel(const HostFacts& a, const HostFacts& b) {
  absl::StatusOr<CpuBaseline> baseline = BaselineCpu({a, b});
  return baseline.ok() ? baseline->model : "";
}

}  // namespace ferry
