// Writes the fuzz targets' seed corpora from real VMs: a synthetic guest run, paused and sent the
// way a source sends it (start, memory batches, device state, commit), plus the short and broken
// sequences a peer may send. Run once by scripts/fuzz.sh --write-seeds; the output is committed
// under tests/fuzz/corpus/.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/memory/page.h"
#include "engine/migration/protocol.h"
#include "engine/state/state_file.h"
#include "engine/vm/synthetic_vm.h"
#include "engine/vm/vm_spec_proto.h"
#include "proto/ferry/v1/peer.pb.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/delimited_message_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

VmSpec SeedSpec() {
  VmSpec s;
  s.name = "seed-vm";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 8ull << 20;
  s.vcpus = 1;
  s.workload.working_set_bytes = 1ull << 20;
  s.workload.dirty_rate_mibps = 20;
  return s;
}

void WriteFile(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
  std::printf("%s: %zu bytes\n", p.c_str(), bytes.size());
}

std::string Sequence(const std::vector<v1::PeerMessage>& msgs) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  for (const auto& m : msgs) google::protobuf::util::SerializeDelimitedToZeroCopyStream(m, &stream);
  return out;
}

int Run(const fs::path& corpus) {
  auto vm = CreateSyntheticVm(SeedSpec(), /*for_restore=*/false);
  if (!vm.ok() || !(*vm)->Start().ok()) {
    std::fprintf(stderr, "cannot run the seed VM\n");
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (!(*vm)->Pause().ok()) return 1;
  auto state = (*vm)->SaveState();
  if (!state.ok()) return 1;

  v1::PeerMessage start;
  start.mutable_start()->set_protocol_version(kProtocolVersion);
  start.mutable_start()->set_migration_id("seed-migration");
  *start.mutable_start()->mutable_spec() = VmSpecToProto(SeedSpec());
  start.mutable_start()->set_source_agent("seed-source");
  // Memory as a source sends it: runs of non-zero pages with their data, zero pages as markers.
  std::vector<v1::PeerMessage> batches;
  GuestMemory& mem = (*vm)->memory();
  v1::PeerMessage batch;
  batch.mutable_memory()->set_round(1);
  for (uint64_t p = 0; p < mem.num_pages(); ++p) {
    v1::PageRun* run = batch.mutable_memory()->add_runs();
    run->set_first_page(p);
    run->set_count(1);
    if (IsZeroPage(mem.page(p))) {
      run->set_zero(true);
    } else {
      run->set_data(std::string(reinterpret_cast<const char*>(mem.page(p)), kPageSize));
    }
    if (batch.memory().runs_size() == 64) {
      batches.push_back(batch);
      batch.mutable_memory()->clear_runs();
    }
  }
  if (batch.memory().runs_size() > 0) batches.push_back(batch);
  v1::PeerMessage device;
  *device.mutable_device_state()->mutable_state() = *state;
  device.mutable_device_state()->set_final_round(1);
  v1::PeerMessage commit;
  commit.mutable_commit();
  v1::PeerMessage abort;
  abort.mutable_abort()->set_reason("seed: cancelled");
  (void)(*vm)->Stop();

  fs::path peer = corpus / "peer_receiver", loader = corpus / "state_loader";
  fs::create_directories(peer);
  fs::create_directories(loader);
  std::vector<v1::PeerMessage> whole = {start};
  whole.insert(whole.end(), batches.begin(), batches.end());
  whole.push_back(device);
  whole.push_back(commit);
  WriteFile(peer / "whole_migration", Sequence(whole));
  WriteFile(peer / "start_then_abort", Sequence({start, batches.front(), abort}));
  WriteFile(peer / "state_before_memory", Sequence({start, device}));
  WriteFile(peer / "commit_first", Sequence({commit, start}));
  v1::PeerMessage outside = batches.front();
  outside.mutable_memory()->mutable_runs(0)->set_first_page(mem.num_pages());
  WriteFile(peer / "page_outside_memory", Sequence({start, outside}));

  std::string container = EncodeVmState(*state);
  WriteFile(loader / "container", std::string(1, '\0') + container);
  WriteFile(loader / "payload", std::string(1, '\1') + state->SerializeAsString());
  return 0;
}

}  // namespace
}  // namespace ferry

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  return ferry::Run(argv[1]);
}
