#include "engine/cluster/etcd_client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace ferry::cluster {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const char* what, const std::string& endpoint) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("etcd ", what, " at ", endpoint, ": ", s.error_message()));
}

// Worth trying another endpoint: this one could not be reached or did not answer in time.
bool EndpointFailed(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

KeyValue FromProto(const mvccpb::KeyValue& kv) {
  return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
}

// The smallest key after every key starting with `prefix` (etcd's range_end for a prefix).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char c = static_cast<unsigned char>(prefix.back());
    if (c < 0xff) {
      prefix.back() = static_cast<char>(c + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const EtcdClientOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd: no endpoints given (--etcd-endpoints)");
  for (const auto& e : options.endpoints) {
    if (e.empty() || e.find(':') == std::string::npos || e.find("://") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("etcd endpoint '", e, "' is not HOST:PORT"));
    }
  }
  if (options.tls.ca_pem.empty()) return absl::InvalidArgumentError("etcd: no CA certificate given (--etcd-ca)");
  if (options.tls.cert_pem.empty()) return absl::InvalidArgumentError("etcd: no client certificate given (--etcd-cert)");
  if (options.tls.key_pem.empty()) return absl::InvalidArgumentError("etcd: no client key given (--etcd-key)");
  if (options.call_timeout <= absl::ZeroDuration()) return absl::InvalidArgumentError("etcd: call timeout must be positive");
  return std::unique_ptr<EtcdClient>(new EtcdClient(options));
}

EtcdClient::EtcdClient(EtcdClientOptions options) : options_(std::move(options)) {
  channels_.resize(options_.endpoints.size());
}

std::shared_ptr<grpc::Channel> EtcdClient::ChannelAt(size_t index) {
  std::lock_guard lock(mu_);
  if (!channels_[index]) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls.ca_pem;
    ssl.pem_cert_chain = options_.tls.cert_pem;
    ssl.pem_private_key = options_.tls.key_pem;
    // A member that comes back is reconnected within a second, not after gRPC's default backoff
    // (up to 2 minutes): a lease does not wait that long.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    // gRPC also uses the minimum backoff as the connect timeout: a TLS handshake on a loaded host
    // needs more than the first retry's delay.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    channels_[index] = grpc::CreateCustomChannel(options_.endpoints[index], grpc::SslCredentials(ssl), args);
  }
  return channels_[index];
}

template <typename Call>
absl::Status EtcdClient::WithRetries(const char* what, Call call) {
  size_t start;
  {
    std::lock_guard lock(mu_);
    start = current_;
  }
  absl::Status last;
  for (size_t i = 0; i < options_.endpoints.size(); ++i) {
    size_t index = (start + i) % options_.endpoints.size();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
    grpc::Status s = call(ChannelAt(index), context);
    if (s.ok() || !EndpointFailed(s)) {
      if (i != 0) {
        std::lock_guard lock(mu_);
        current_ = index;
      }
      return FromGrpc(s, what, options_.endpoints[index]);
    }
    last = FromGrpc(s, what, options_.endpoints[index]);
  }
  return last;
}

absl::StatusOr<std::optional<KeyValue>> EtcdClient::Get(const std::string& key) {
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  absl::Status st = WithRetries("get", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::KV::NewStub(channel)->Range(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  if (resp.kvs_size() == 0) return std::optional<KeyValue>();
  return std::optional<KeyValue>(FromProto(resp.kvs(0)));
}

absl::StatusOr<std::vector<KeyValue>> EtcdClient::GetPrefix(const std::string& prefix) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(PrefixEnd(prefix));
  req.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  req.set_sort_target(etcdserverpb::RangeRequest::KEY);
  etcdserverpb::RangeResponse resp;
  absl::Status st = WithRetries("get prefix", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::KV::NewStub(channel)->Range(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  std::vector<KeyValue> out;
  for (const auto& kv : resp.kvs()) out.push_back(FromProto(kv));
  return out;
}

absl::StatusOr<int64_t> EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  etcdserverpb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  etcdserverpb::PutResponse resp;
  absl::Status st = WithRetries("put", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::KV::NewStub(channel)->Put(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp.header().revision();
}

absl::Status EtcdClient::Delete(const std::string& key) {
  etcdserverpb::DeleteRangeRequest req;
  req.set_key(key);
  etcdserverpb::DeleteRangeResponse resp;
  return WithRetries("delete", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::KV::NewStub(channel)->DeleteRange(&ctx, req, &resp);
  });
}

absl::StatusOr<bool> EtcdClient::CreateIfAbsent(const std::string& key, const std::string& value, int64_t lease) {
  etcdserverpb::TxnRequest req;
  auto* cmp = req.add_compare();
  cmp->set_key(key);
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_create_revision(0);
  auto* put = req.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  etcdserverpb::TxnResponse resp;
  absl::Status st = WithRetries("create", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::KV::NewStub(channel)->Txn(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp.succeeded();
}

absl::StatusOr<bool> EtcdClient::DeleteIfLease(const std::string& key, int64_t lease) {
  etcdserverpb::TxnRequest req;
  auto* cmp = req.add_compare();
  cmp->set_key(key);
  cmp->set_target(etcdserverpb::Compare::LEASE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_lease(lease);
  req.add_success()->mutable_request_delete_range()->set_key(key);
  etcdserverpb::TxnResponse resp;
  absl::Status st = WithRetries("conditional delete", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::KV::NewStub(channel)->Txn(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp.succeeded();
}

absl::StatusOr<bool> EtcdClient::PutIfModRevision(const std::string& key, const std::string& value,
                                                  int64_t mod_revision) {
  etcdserverpb::TxnRequest req;
  auto* cmp = req.add_compare();
  cmp->set_key(key);
  cmp->set_target(etcdserverpb::Compare::MOD);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_mod_revision(mod_revision);
  auto* put = req.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  etcdserverpb::TxnResponse resp;
  absl::Status st = WithRetries("conditional put", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::KV::NewStub(channel)->Txn(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp.succeeded();
}

absl::StatusOr<LeaseInfo> EtcdClient::GrantLease(int64_t ttl_s) {
  if (ttl_s <= 0) return absl::InvalidArgumentError(absl::StrCat("etcd lease TTL must be positive, not ", ttl_s));
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(ttl_s);
  etcdserverpb::LeaseGrantResponse resp;
  absl::Status st = WithRetries("lease grant", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::Lease::NewStub(channel)->LeaseGrant(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  if (!resp.error().empty()) return absl::InternalError(absl::StrCat("etcd lease grant: ", resp.error()));
  return LeaseInfo{resp.id(), resp.ttl(), resp.ttl()};
}

absl::StatusOr<int64_t> EtcdClient::KeepAlive(int64_t lease) {
  etcdserverpb::LeaseKeepAliveRequest req;
  req.set_id(lease);
  etcdserverpb::LeaseKeepAliveResponse resp;
  bool answered = false;
  absl::Status st = WithRetries("lease keep-alive", [&](auto channel, grpc::ClientContext& ctx) {
    auto stream = etcdserverpb::Lease::NewStub(channel)->LeaseKeepAlive(&ctx);
    if (stream->Write(req)) answered = stream->Read(&resp);
    stream->WritesDone();
    return stream->Finish();
  });
  if (!st.ok()) return st;
  if (!answered) return absl::UnavailableError("etcd lease keep-alive: the stream closed without an answer");
  if (resp.ttl() <= 0) return absl::NotFoundError(absl::StrCat("etcd lease ", lease, " has expired"));
  return resp.ttl();
}

absl::StatusOr<LeaseInfo> EtcdClient::LeaseTimeToLive(int64_t lease) {
  etcdserverpb::LeaseTimeToLiveRequest req;
  req.set_id(lease);
  etcdserverpb::LeaseTimeToLiveResponse resp;
  absl::Status st = WithRetries("lease time-to-live", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::Lease::NewStub(channel)->LeaseTimeToLive(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return LeaseInfo{lease, resp.grantedttl(), resp.ttl()};
}

absl::Status EtcdClient::RevokeLease(int64_t lease) {
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(lease);
  etcdserverpb::LeaseRevokeResponse resp;
  return WithRetries("lease revoke", [&](auto channel, grpc::ClientContext& ctx) {
    return etcdserverpb::Lease::NewStub(channel)->LeaseRevoke(&ctx, req, &resp);
  });
}

absl::StatusOr<bool> EtcdClient::WaitForDelete(const std::string& key, int64_t from_revision,
                                               absl::Duration max_wait) {
  // The stream itself is bounded by max_wait; the attempt's own deadline is replaced by it.
  bool deleted = false;
  size_t index;
  {
    std::lock_guard lock(mu_);
    index = current_;
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + max_wait));
  auto stream = etcdserverpb::Watch::NewStub(ChannelAt(index))->Watch(&ctx);
  etcdserverpb::WatchRequest req;
  auto* create = req.mutable_create_request();
  create->set_key(key);
  create->set_start_revision(from_revision);
  create->add_filters(etcdserverpb::WatchCreateRequest::NOPUT);
  if (stream->Write(req)) {
    etcdserverpb::WatchResponse resp;
    while (!deleted && stream->Read(&resp)) {
      if (resp.canceled()) break;
      for (const auto& ev : resp.events()) {
        if (ev.type() == mvccpb::Event::DELETE) deleted = true;
      }
    }
  }
  ctx.TryCancel();
  grpc::Status s = stream->Finish();
  if (deleted) return true;
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED || s.error_code() == grpc::StatusCode::CANCELLED ||
      s.ok()) {
    return false;
  }
  if (EndpointFailed(s)) {
    std::lock_guard lock(mu_);
    current_ = (index + 1) % options_.endpoints.size();
  }
  return FromGrpc(s, "watch", options_.endpoints[index]);
}

}  // namespace ferry::cluster
