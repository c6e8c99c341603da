#pragma once
// The agent's Prometheus metrics (Debian's prometheus-cpp): an AgentObserver that counts what
// the services report, plus VMs by state read at each scrape. Served on /metrics over HTTP when
// the agent runs with metrics_listen; docs/metrics.md lists every metric.

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "engine/agent/agent_observer.h"
#include "engine/agent/vm_registry.h"

namespace ferry {

class AgentMetrics : public AgentObserver {
 public:
  // Counts events; reads `vms` (which must outlive this) at each scrape and to time the
  // guest-observed stall of VMs that arrive.
  explicit AgentMetrics(const VmRegistry& vms);
  ~AgentMetrics() override;

  // Serves /metrics on `listen` (HOST:PORT; port 0 picks a free port). Unavailable, naming the
  // address, when it cannot bind.
  absl::Status Serve(const std::string& listen);
  int port() const { return port_; }  // after Serve
  // The text exposition a scrape returns.
  std::string Render() const;

  void OnMigrationEvent(const v1::MigrationEvent& event) override;
  void OnVmArrived(const std::string& vm_name) override;
  void OnIncomingMigrationEnd(const IncomingMigrationEnd& end) override;
  void OnPrecheckFindings(const std::vector<Finding>& findings) override;
  void OnTlsHandshakeFailure(std::string_view reason) override;

 private:
  struct Migration {  // an outgoing migration, running or recently finished
    v1::MigrationPhase phase = v1::MIGRATION_PHASE_UNSPECIFIED;
    uint64_t transferred_bytes = 0;  // counted so far
    double bandwidth_mibps = 0;
    double dirty_rate_mibps = 0;
    bool finished = false;
    bool stats_counted = false;
  };
  struct Arrival {  // a VM whose first heartbeat here has not come yet
    std::string vm_name;
    uint64_t heartbeats_at_arrival = 0;
    int64_t give_up_ns = 0;
  };
  class Scrape;

  void PublishRunningLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshVmStates() const;
  void WatchArrivals();

  const VmRegistry& vms_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Scrape> scrape_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;

  prometheus::Family<prometheus::Gauge>& vms_by_state_;
  prometheus::Family<prometheus::Counter>& migrations_;
  prometheus::Family<prometheus::Gauge>& running_by_phase_;
  prometheus::Counter& sent_bytes_;
  prometheus::Counter& sent_pages_;
  prometheus::Counter& received_pages_;
  prometheus::Counter& received_stream_bytes_;
  prometheus::Gauge& bandwidth_;
  prometheus::Gauge& dirty_rate_;
  prometheus::Histogram& downtime_;
  prometheus::Histogram& stall_;
  prometheus::Family<prometheus::Counter>& findings_;
  prometheus::Family<prometheus::Counter>& tls_failures_;

  std::mutex mu_;
  std::map<std::string, Migration> migrations_by_id_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> finished_order_ ABSL_GUARDED_BY(mu_);  // oldest first
  std::vector<Arrival> arrivals_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::condition_variable arrivals_cv_;
  std::thread watcher_;
};

}  // namespace ferry
