#include "engine/state/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/page.h"
#include "engine/state/file_util.h"
#include "engine/state/state_file.h"
#include "google/protobuf/text_format.h"

namespace ferry {
namespace {

std::string Join(const std::string& dir, const char* file) { return (std::filesystem::path(dir) / file).string(); }

v1::SnapshotSpec SpecToProto(const VmSpec& s) {
  v1::SnapshotSpec p;
  p.set_name(s.name);
  p.set_backend(s.backend == Backend::kSynthetic ? v1::BACKEND_KIND_SYNTHETIC : v1::BACKEND_KIND_KVM);
  p.set_memory_bytes(s.memory_bytes);
  p.set_vcpus(s.vcpus);
  p.set_working_set_bytes(s.workload.working_set_bytes);
  p.set_dirty_rate_mibps(s.workload.dirty_rate_mibps);
  p.set_pattern(s.workload.pattern);
  p.set_seed(s.workload.seed);
  p.set_tick_ms(s.workload.tick_ms);
  p.set_image_path(s.image_path);
  p.set_cpu_model(s.cpu.model);
  for (const std::string& f : s.cpu.features) p.add_cpu_features(f);
  return p;
}

absl::StatusOr<VmSpec> SpecFromProto(const v1::SnapshotSpec& p, const std::string& path) {
  VmSpec s;
  s.name = p.name();
  switch (p.backend()) {
    case v1::BACKEND_KIND_KVM: s.backend = Backend::kKvm; break;
    case v1::BACKEND_KIND_SYNTHETIC: s.backend = Backend::kSynthetic; break;
    default: return absl::InvalidArgumentError(absl::StrCat(path, ": backend is missing or unknown"));
  }
  if (p.memory_bytes() == 0 || p.memory_bytes() % kPageSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": memory_bytes ", p.memory_bytes(), " is not a positive multiple of 4096"));
  }
  if (p.vcpus() == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": vcpus is 0"));
  s.memory_bytes = p.memory_bytes();
  s.vcpus = p.vcpus();
  s.workload.working_set_bytes = p.working_set_bytes();
  s.workload.dirty_rate_mibps = p.dirty_rate_mibps();
  s.workload.pattern = p.pattern();
  s.workload.seed = p.seed();
  s.workload.tick_ms = p.tick_ms();
  s.image_path = p.image_path();
  s.cpu.model = p.cpu_model();
  s.cpu.features.assign(p.cpu_features().begin(), p.cpu_features().end());
  return s;
}

absl::StatusOr<uint64_t> WriteSparseMemory(const GuestMemory& mem, const std::string& path) {
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoError(absl::StrCat("create ", tmp));
  if (::ftruncate(fd.get(), static_cast<off_t>(mem.size())) != 0) return ErrnoError(absl::StrCat("truncate ", tmp));
  uint64_t written = 0;
  uint64_t p = 0, n = mem.num_pages();
  // Memfd holes are zero without being read (reading one would allocate it: a big guest mostly
  // never touched would fill the host's memory here).
  DirtyBitmap populated(n);
  mem.MarkPopulatedPages(populated);
  auto has_data = [&](uint64_t page) { return populated.Test(page) && !IsZeroPage(mem.page(page)); };
  while (p < n) {
    if (!has_data(p)) {
      ++p;
      continue;
    }
    uint64_t run = 1;
    while (p + run < n && has_data(p + run)) ++run;
    uint64_t off = p * kPageSize, len = run * kPageSize, done = 0;
    while (done < len) {
      ssize_t w = ::pwrite(fd.get(), mem.page(p) + done, len - done, static_cast<off_t>(off + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(absl::StrCat("write ", tmp));
      }
      done += static_cast<uint64_t>(w);
    }
    written += run;
    p += run;
  }
  if (::fsync(fd.get()) != 0) return ErrnoError(absl::StrCat("fsync ", tmp));
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError(absl::StrCat("rename ", tmp));
  return written;
}

// Reads only the file's data extents (SEEK_DATA/SEEK_HOLE): holes are zero pages, and a VM
// built for restore starts with zeroed memory.
absl::Status ReadSparseMemory(const std::string& path, GuestMemory& mem) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(absl::StrCat("open ", path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(absl::StrCat("stat ", path));
  if (static_cast<uint64_t>(st.st_size) != mem.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is ", st.st_size, " bytes but the VM has ", mem.size(),
                                                   " bytes of memory"));
  }
  off_t pos = 0, end = st.st_size;
  while (pos < end) {
    off_t data = ::lseek(fd.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      return ErrnoError(absl::StrCat("seek data in ", path));
    }
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0) return ErrnoError(absl::StrCat("seek hole in ", path));
    for (off_t off = data; off < hole;) {
      ssize_t r = ::pread(fd.get(), mem.data() + off, static_cast<size_t>(hole - off), off);
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(absl::StrCat("read ", path));
      }
      if (r == 0) return absl::DataLossError(absl::StrCat(path, " ended early at offset ", off));
      off += r;
    }
    pos = hole;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SnapshotStats> SaveSnapshot(Vm& vm, const std::string& dir) {
  if (vm.run_state() != VmRunState::kPaused) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot: VM is ", VmRunStateName(vm.run_state()), "; pause it first"));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create snapshot directory ", dir, ": ", ec.message()));
  ASSIGN_OR_RETURN(v1::VmState state, vm.SaveState());
  SnapshotStats stats;
  stats.memory_bytes = vm.memory().size();
  std::string spec_text;
  google::protobuf::TextFormat::PrintToString(SpecToProto(vm.spec()), &spec_text);
  RETURN_IF_ERROR(WriteFileAtomically(Join(dir, kSnapshotSpecFile), spec_text));
  ASSIGN_OR_RETURN(stats.pages_written, WriteSparseMemory(vm.memory(), Join(dir, kSnapshotMemoryFile)));
  std::string encoded = EncodeVmState(state);
  stats.state_bytes = encoded.size();
  RETURN_IF_ERROR(WriteFileAtomically(Join(dir, kSnapshotStateFile), encoded));
  return stats;
}

absl::StatusOr<VmSpec> ReadSnapshotSpec(const std::string& dir) {
  std::string path = Join(dir, kSnapshotSpecFile);
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, 1 << 20));
  v1::SnapshotSpec p;
  if (!google::protobuf::TextFormat::ParseFromString(text, &p)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " does not parse as ferry.v1.SnapshotSpec"));
  }
  return SpecFromProto(p, path);
}

absl::Status RestoreSnapshot(const std::string& dir, Vm& vm) {
  // Read and check the state before spending time on memory.
  ASSIGN_OR_RETURN(v1::VmState state, ReadStateFile(Join(dir, kSnapshotStateFile)));
  if (state.memory_bytes() != vm.memory().size()) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot ", dir, " holds ", state.memory_bytes(),
                                                   " bytes of memory, the VM has ", vm.memory().size()));
  }
  RETURN_IF_ERROR(ReadSparseMemory(Join(dir, kSnapshotMemoryFile), vm.memory()));
  return vm.RestoreState(state);
}

}  // namespace ferry
