#include "engine/cluster/heartbeat_writer.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/time/clock.h"
#include "engine/cluster/datastore_heartbeat.h"

namespace ferry::cluster {

std::vector<MountedDatastore> ChooseHeartbeatDatastores(const std::vector<MountedDatastore>& mounted,
                                                        const std::map<std::string, int>& hosts_seeing, int count) {
  std::vector<MountedDatastore> usable;
  for (const auto& d : mounted) {
    if (!d.read_only && !d.uuid.empty()) usable.push_back(d);
  }
  auto seen = [&](const MountedDatastore& d) {
    auto it = hosts_seeing.find(d.uuid);
    return it == hosts_seeing.end() ? 0 : it->second;
  };
  std::sort(usable.begin(), usable.end(), [&](const MountedDatastore& a, const MountedDatastore& b) {
    if (seen(a) != seen(b)) return seen(a) > seen(b);
    return a.uuid < b.uuid;
  });
  std::vector<MountedDatastore> chosen;
  std::set<uint64_t> devices;
  std::set<std::string> taken;
  for (const auto& d : usable) {  // one per backing device first
    if (static_cast<int>(chosen.size()) >= count || devices.count(d.device)) continue;
    devices.insert(d.device);
    taken.insert(d.uuid);
    chosen.push_back(d);
  }
  for (const auto& d : usable) {  // then the others, when there are not enough devices
    if (static_cast<int>(chosen.size()) >= count || taken.count(d.uuid)) continue;
    taken.insert(d.uuid);
    chosen.push_back(d);
  }
  return chosen;
}

HeartbeatWriter::HeartbeatWriter(std::string cluster, std::string host, absl::Duration interval)
    : cluster_(std::move(cluster)), host_(std::move(host)), interval_(interval) {
  thread_ = std::thread([this] { Run(); });
}

HeartbeatWriter::~HeartbeatWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

void HeartbeatWriter::SetDatastores(std::vector<MountedDatastore> datastores) {
  std::lock_guard lock(mu_);
  datastores_ = std::move(datastores);
}

std::vector<MountedDatastore> HeartbeatWriter::datastores() const {
  std::lock_guard lock(mu_);
  return datastores_;
}

void HeartbeatWriter::SetOwnView(std::string view) {
  std::lock_guard lock(mu_);
  own_view_ = std::move(view);
}

uint64_t HeartbeatWriter::sequence() const {
  std::lock_guard lock(mu_);
  return sequence_;
}

void HeartbeatWriter::Run() {
  while (true) {
    BeatOnce();
    std::unique_lock lock(mu_);
    if (stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(interval_), [this] { return stop_; })) return;
  }
}

void HeartbeatWriter::BeatOnce() {
  std::vector<MountedDatastore> targets;
  HeartbeatRecord record;
  {
    std::lock_guard lock(mu_);
    targets = datastores_;
    record.sequence = ++sequence_;
    record.own_view = own_view_;
  }
  record.cluster = cluster_;
  record.host = host_;
  record.time_unix_ns = absl::ToUnixNanos(absl::Now());
  for (const auto& d : targets) {
    absl::Status st = WriteHeartbeat(d.path, record);
    std::string error = st.ok() ? "" : std::string(st.message());
    if (error != last_error_[d.path]) {
      if (st.ok()) {
        spdlog::info("ha: event=datastore_heartbeat_ok cluster={} host={} datastore={}", cluster_, host_, d.path);
      } else {
        spdlog::warn("ha: event=datastore_heartbeat_failed cluster={} host={} datastore={} error=\"{}\"", cluster_,
                     host_, d.path, error);
      }
      last_error_[d.path] = error;
    }
  }
}

}  // namespace ferry::cluster
