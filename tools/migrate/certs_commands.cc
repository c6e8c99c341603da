// migrate certs ca | host | client: a small cluster's CA and certificates (docs/security.md).
#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/agent/certs.h"
#include "engine/base/status.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {
namespace {

struct CertsArgs {
  std::string name;
  std::string ca_dir;
  std::string out_dir;
  std::vector<std::string> ips;
  int days = 365;
  bool force = false;
};

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Every certs error exits 1 (cli_error.h prints it).
int Fail(const absl::Status& status, std::string_view command) {
  CliError e = ErrorFromStatus(status);
  e.exit_code = kExitFailed;
  return ReportError(command, e, /*json=*/false);
}

// Refuses to overwrite a key unless --force: replacing a CA key silently orphans every
// certificate it signed.
absl::Status CheckNotThere(const std::string& dir, const std::string& base, bool force) {
  std::string key = absl::StrCat(dir, "/", base, ".key");
  if (!force && Exists(key)) {
    return absl::AlreadyExistsError(absl::StrCat(key, " already exists (pass --force to replace it)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CertAndKey> LoadCa(const std::string& dir) {
  auto ca = ReadCertAndKey(dir, "ca");
  if (!ca.ok()) {
    return absl::Status(ca.status().code(),
                        absl::StrCat("reading the CA from ", dir, " (made by `migrate certs ca --out ",
                                     dir, "`): ", ca.status().message()));
  }
  return ca;
}

absl::Status WriteLeaf(const CertsArgs& a, const CertAndKey& ca, const CertAndKey& leaf) {
  RETURN_IF_ERROR(WriteCertAndKey(leaf, a.out_dir, a.name));
  // The CA certificate (never its key) beside the leaf, so one directory configures an agent.
  RETURN_IF_ERROR(WriteFileWithMode(absl::StrCat(a.out_dir, "/ca.crt"), ca.cert_pem, 0644));
  std::printf("wrote %s/%s.crt, %s/%s.key (mode 0600) and %s/ca.crt\n", a.out_dir.c_str(),
              a.name.c_str(), a.out_dir.c_str(), a.name.c_str(), a.out_dir.c_str());
  return absl::OkStatus();
}

absl::Status RunCa(const CertsArgs& a) {
  RETURN_IF_ERROR(CheckNotThere(a.out_dir, "ca", a.force));
  ASSIGN_OR_RETURN(CertAndKey ca, CreateCa(a.name, CertValidity::ForDays(a.days)));
  RETURN_IF_ERROR(WriteCertAndKey(ca, a.out_dir, "ca"));
  std::printf("wrote %s/ca.crt and %s/ca.key (mode 0600; keep it off the hosts)\n",
              a.out_dir.c_str(), a.out_dir.c_str());
  return absl::OkStatus();
}

absl::Status RunHost(const CertsArgs& a) {
  ASSIGN_OR_RETURN(CertAndKey ca, LoadCa(a.ca_dir));
  RETURN_IF_ERROR(CheckNotThere(a.out_dir, a.name, a.force));
  ASSIGN_OR_RETURN(CertAndKey host, IssueHostCert(ca, a.name, a.ips, CertValidity::ForDays(a.days)));
  return WriteLeaf(a, ca, host);
}

absl::Status RunClient(const CertsArgs& a) {
  ASSIGN_OR_RETURN(CertAndKey ca, LoadCa(a.ca_dir));
  RETURN_IF_ERROR(CheckNotThere(a.out_dir, a.name, a.force));
  ASSIGN_OR_RETURN(CertAndKey client, IssueClientCert(ca, a.name, CertValidity::ForDays(a.days)));
  return WriteLeaf(a, ca, client);
}

void AddCommon(CLI::App* cmd, CertsArgs& a, bool leaf) {
  cmd->add_option("--out", a.out_dir, "directory to write into (created 0700 if missing)")->required();
  cmd->add_option("--days", a.days, "validity in days")->check(CLI::Range(1, 3650));
  cmd->add_flag("--force", a.force, "replace an existing key");
  if (leaf) cmd->add_option("--ca", a.ca_dir, "directory holding ca.crt and ca.key")->required();
}

}  // namespace

void AddCertsCommands(CLI::App& app, Globals& g) {
  CLI::App* certs = SubcommandOf(app, "certs", "make a CA and host/client certificates for mutual TLS");
  certs->require_subcommand(1);
  auto args = std::make_shared<CertsArgs>();

  CLI::App* ca = certs->add_subcommand("ca", "create the cluster CA: OUT/ca.crt, OUT/ca.key");
  args->name = "ferry-ca";
  ca->add_option("--name", args->name, "the CA's common name");
  AddCommon(ca, *args, false);
  ca->callback([args, &g] {
    absl::Status st = RunCa(*args);
    g.exit_code = st.ok() ? 0 : Fail(st, "certs ca");
  });

  CLI::App* host = certs->add_subcommand(
      "host", "issue an agent's host certificate (serverAuth+clientAuth, OU=host): OUT/NAME.{crt,key}");
  host->add_option("name", args->name, "host name the certificate names (CN and DNS SAN)")->required();
  host->add_option("--ip", args->ips, "also name this IP address (repeatable)");
  AddCommon(host, *args, true);
  host->callback([args, &g] {
    absl::Status st = RunHost(*args);
    g.exit_code = st.ok() ? 0 : Fail(st, "certs host");
  });

  CLI::App* client = certs->add_subcommand(
      "client", "issue an orchestrator client certificate (clientAuth, OU=client): OUT/NAME.{crt,key}");
  client->add_option("name", args->name, "client name (CN)")->required();
  AddCommon(client, *args, true);
  client->callback([args, &g] {
    absl::Status st = RunClient(*args);
    g.exit_code = st.ok() ? 0 : Fail(st, "certs client");
  });
}

}  // namespace ferry::cli
