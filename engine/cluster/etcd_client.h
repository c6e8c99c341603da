#pragma once
// A small client for etcd's v3 gRPC API (KV, Lease, Watch): mutual TLS, a deadline on every call,
// and each call retried on the next endpoint when one is unreachable. See docs/cluster.md.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ferry::cluster {

// PEM text. All three are required: etcd is always run with client-certificate authentication.
struct EtcdTls {
  std::string ca_pem;    // the CA etcd's server certificates chain to
  std::string cert_pem;  // our client certificate
  std::string key_pem;
};

struct EtcdClientOptions {
  std::vector<std::string> endpoints;  // HOST:PORT, tried in turn
  EtcdTls tls;
  absl::Duration call_timeout = absl::Seconds(2);  // per attempt, per endpoint
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct LeaseInfo {
  int64_t id = 0;
  int64_t granted_ttl_s = 0;
  int64_t remaining_ttl_s = 0;  // whole seconds, rounded down (0 is live); -1: expired or revoked
};

class EtcdClient {
 public:
  // Errors name the bad option. Connects lazily.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(const EtcdClientOptions& options);

  absl::StatusOr<std::optional<KeyValue>> Get(const std::string& key);
  absl::StatusOr<std::vector<KeyValue>> GetPrefix(const std::string& prefix);
  // Returns the store's revision after the write.
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value, int64_t lease = 0);
  absl::Status Delete(const std::string& key);
  // One transaction: creates `key` only when it does not exist. True when this call created it.
  absl::StatusOr<bool> CreateIfAbsent(const std::string& key, const std::string& value, int64_t lease);
  // One transaction: deletes `key` only while it is bound to `lease`. True when deleted.
  absl::StatusOr<bool> DeleteIfLease(const std::string& key, int64_t lease);
  // Puts `value` only if the key's mod revision is still `mod_revision` (0: only if absent), in one
  // Txn: false when someone wrote it meanwhile.
  absl::StatusOr<bool> PutIfModRevision(const std::string& key, const std::string& value, int64_t mod_revision);

  absl::StatusOr<LeaseInfo> GrantLease(int64_t ttl_s);
  // One keep-alive. NOT_FOUND when the lease already expired.
  absl::StatusOr<int64_t> KeepAlive(int64_t lease);
  absl::StatusOr<LeaseInfo> LeaseTimeToLive(int64_t lease);
  absl::Status RevokeLease(int64_t lease);

  // Waits up to `max_wait` for `key` to be deleted at or after `from_revision`. True when it was,
  // false when the wait ended first.
  absl::StatusOr<bool> WaitForDelete(const std::string& key, int64_t from_revision, absl::Duration max_wait);

  const std::vector<std::string>& endpoints() const { return options_.endpoints; }

 private:
  explicit EtcdClient(EtcdClientOptions options);
  std::shared_ptr<grpc::Channel> ChannelAt(size_t index);
  // Runs `call(channel, deadline)` on the current endpoint, then on each other one while the
  // failure says the endpoint could not be reached.
  template <typename Call>
  absl::Status WithRetries(const char* what, Call call);

  EtcdClientOptions options_;
  std::mutex mu_;  // not absl::Mutex: Debian's abseil is invisible to TSan
  std::vector<std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ferry::cluster
