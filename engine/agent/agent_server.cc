#include "engine/agent/agent_server.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/agent/commit_resolver.h"
#include "engine/agent/peer_keepalive.h"
#include "engine/agent/remote_vm.h"
#include "engine/agent/host_facts_source.h"
#include "engine/agent/vmm_adoption.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<AgentServer>> AgentServer::Start(
    AgentConfig config, std::shared_ptr<grpc::ServerCredentials> server_credentials,
    decltype(AgentContext::dial_peer) dial_peer, bool secure) {
  std::unique_ptr<AgentServer> s(new AgentServer());
  s->ctx_.config = std::move(config);
  s->ctx_.boot_id = HostBootId();
  s->ctx_.dial_peer = std::move(dial_peer);
  s->ctx_.secure = secure;
  if (!s->ctx_.config.data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(s->ctx_.config.data_dir, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot create data_dir ", s->ctx_.config.data_dir, ": ", ec.message()));
    }
  }
  {
    std::string data_listen = s->ctx_.config.data_listen;
    if (data_listen.empty()) data_listen = HostOfAddress(s->ctx_.config.listen) + ":0";
    std::string host = HostOfAddress(data_listen);
    std::string port_text = data_listen.substr(data_listen.rfind(':') + 1);
    int port = 0;
    if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("data_listen '", data_listen, "' is not HOST:PORT"));
    }
    auto listener = DataListener::Start(host, static_cast<uint16_t>(port));
    if (!listener.ok()) return listener.status();
    s->ctx_.data_listener = std::move(*listener);
  }
  if (!s->ctx_.config.metrics_listen.empty()) {
    s->metrics_ = std::make_unique<AgentMetrics>(s->ctx_.vms);
    if (absl::Status st = s->metrics_->Serve(s->ctx_.config.metrics_listen); !st.ok()) return st;
    s->ctx_.observer = s->metrics_.get();
    spdlog::info("event=metrics_listening listen={} port={}", s->ctx_.config.metrics_listen, s->metrics_->port());
  }
  // VMs a previous agent left running in their VMM processes are this agent's again.
  AdoptionSummary adopted = AdoptRunningVmms(s->ctx_.config.data_dir, s->ctx_.vms);
  if (auto host = AgentHostFacts(s->ctx_.config); host.ok()) {  // and those of VMs on its datastores
    AdoptionSummary on_datastores = AdoptDatastoreVmms(*host, s->ctx_.config.name, s->ctx_.vms, s->ctx_.ownership);
    adopted.adopted += on_datastores.adopted;
    adopted.lost += on_datastores.lost;
    for (auto& c : on_datastores.paused_after_commit) adopted.paused_after_commit.push_back(std::move(c));
  }
  if (adopted.adopted || adopted.lost) {
    spdlog::info("event=vmms_adopted adopted={} lost={}", adopted.adopted, adopted.lost);
  }
  MigrationManagerOptions jobs;
  jobs.max_concurrent = std::max<uint32_t>(s->ctx_.config.max_migrations, 1);
  jobs.history = s->ctx_.config.migration_history;
  jobs.busy_retry_for = std::chrono::seconds(s->ctx_.config.busy_retry_s);
  s->ctx_.migrations = std::make_unique<MigrationManager>(jobs);
  // Guests a previous agent left paused after a commit: settled in the background by asking
  // their destinations (never resumed blindly).
  for (AdoptedCommit& c : adopted.paused_after_commit) {
    if (absl::Status st = StartSettlingAdoptedCommit(s->ctx_, c.migration_id, std::move(c.commit)); !st.ok()) {
      spdlog::error("event=migration_settle_failed migration={} error=\"{}\"", c.migration_id, std::string(st.message()));
    }
  }
  s->agent_service_ = std::make_unique<AgentService>(s->ctx_);
  s->peer_service_ = std::make_unique<PeerService>(s->ctx_);
  grpc::ServerBuilder builder;
  AddPeerKeepalive(builder);  // a source that goes silent is dropped (and its half-received VM)
  builder.AddListeningPort(s->ctx_.config.listen, server_credentials, &s->port_);
  builder.RegisterService(s->agent_service_.get());
  builder.RegisterService(s->peer_service_.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", s->ctx_.config.listen,
                                               " (address in use or invalid?)"));
  }
  if (!s->ctx_.config.port_file.empty()) {
    std::string tmp = s->ctx_.config.port_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << s->port_ << "\n";
    }
    std::filesystem::rename(tmp, s->ctx_.config.port_file);
  }
  spdlog::info("event=agent_listening name={} listen={} port={} data_port={} tls={}", s->ctx_.config.name,
               s->ctx_.config.listen, s->port_, s->ctx_.data_listener->port(), secure);
  return s;
}

AgentServer::~AgentServer() { Shutdown(); }

void AgentServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // Outgoing jobs are cancelled (their VMs stay here, running) and their threads end; settle jobs
  // stop asking (their guests stay paused and marked in their VMMs).
  ctx_.unconfirmed_commits.Stop();
  if (ctx_.migrations) ctx_.migrations->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  for (const auto& [name, e] : ctx_.vms.List()) {
    if (!e->vm) continue;
    if (dynamic_cast<RemoteVm*>(e->vm.get())) {  // its VMM process outlives this agent
      spdlog::info("event=vm_left_running vm={} reason=agent_shutdown", name);
      continue;
    }
    (void)e->vm->Stop();
    spdlog::info("event=vm_stopped vm={} reason=agent_shutdown", name);
  }
  spdlog::info("event=agent_stopped name={}", ctx_.config.name);
}

void AgentServer::Wait() { server_->Wait(); }

}  // namespace ferry
