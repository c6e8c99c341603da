#include "engine/agent/agent_tls.h"

#include "absl/strings/str_cat.h"
#include "engine/agent/tls_config.h"

namespace ferry {

absl::StatusOr<AgentSecurity> MakeAgentSecurity(const AgentConfig& config) {
  TlsConfig tls{config.tls_ca, config.tls_cert, config.tls_key, config.insecure};
  if (!config.insecure && (tls.ca_cert_path.empty() || tls.cert_path.empty() || tls.key_path.empty())) {
    return absl::InvalidArgumentError(
        "TLS is required: give --tls-ca, --tls-cert and --tls-key (or tls: {ca, cert, key} in the config; "
        "`migrate certs` makes them), or --insecure for local debugging");
  }
  auto material = LoadTlsConfig(tls);
  if (!material.ok()) return material.status();
  auto creds = MakeServerCredentials(tls);
  if (!creds.ok()) return creds.status();
  AgentSecurity s;
  s.server_credentials = *creds;
  s.dial_peer = [tls](const std::string& address, const std::string& expected_name) {
    return MakeChannel(address, expected_name, tls);
  };
  return s;
}

}  // namespace ferry
