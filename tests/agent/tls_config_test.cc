// Certificates from engine/agent/certs and LoadTlsConfig's checks of an agent's TLS files.
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include "engine/agent/certs.h"
#include "engine/agent/openssl_util.h"
#include "engine/agent/tls_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/tls_test_util.h"

namespace ferry {
namespace {

using ::ferry::testing::TestPki;
using ::testing::HasSubstr;

std::string ErrorOf(const TlsConfig& config) {
  auto m = LoadTlsConfig(config);
  EXPECT_FALSE(m.ok()) << "expected LoadTlsConfig to fail";
  return m.ok() ? "" : std::string(m.status().message());
}

TEST(CertsTest, HostCertificateCarriesNameAddressAndBothUsages) {
  auto ca = CreateCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto host = IssueHostCert(*ca, "host-a", {"127.0.0.1", "::1"});
  ASSERT_TRUE(host.ok()) << host.status();
  auto cert = CertFromPem(host->cert_pem, "host cert");
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(SubjectEntry(cert->get(), NID_commonName), "host-a");
  EXPECT_EQ(SubjectEntry(cert->get(), NID_organizationalUnitName), kHostRole);
  EXPECT_EQ(X509_check_host(cert->get(), "host-a", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert->get(), "host-b", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(cert->get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert->get(), "::1", 0), 1);
  uint32_t eku = X509_get_extended_key_usage(cert->get());
  EXPECT_TRUE(eku & XKU_SSL_SERVER);
  EXPECT_TRUE(eku & XKU_SSL_CLIENT);
  EXPECT_EQ(X509_check_ca(cert->get()), 0);
  auto ca_cert = CertFromPem(ca->cert_pem, "ca");
  ASSERT_TRUE(ca_cert.ok());
  EXPECT_GT(X509_check_ca(ca_cert->get()), 0);
}

TEST(CertsTest, ClientCertificateIsClientAuthOnly) {
  auto ca = CreateCa("test-ca");
  ASSERT_TRUE(ca.ok());
  auto client = IssueClientCert(*ca, "admin");
  ASSERT_TRUE(client.ok()) << client.status();
  auto cert = CertFromPem(client->cert_pem, "client cert");
  ASSERT_TRUE(cert.ok());
  uint32_t eku = X509_get_extended_key_usage(cert->get());
  EXPECT_FALSE(eku & XKU_SSL_SERVER);
  EXPECT_TRUE(eku & XKU_SSL_CLIENT);
  EXPECT_EQ(SubjectEntry(cert->get(), NID_organizationalUnitName), kClientRole);
}

TEST(CertsTest, BadNamesAndAddressesAreRefused) {
  auto ca = CreateCa("test-ca");
  ASSERT_TRUE(ca.ok());
  auto bad_name = IssueHostCert(*ca, "host a/../x", {});
  ASSERT_FALSE(bad_name.ok());
  EXPECT_THAT(std::string(bad_name.status().message()), HasSubstr("host a/../x"));
  auto bad_ip = IssueHostCert(*ca, "host-a", {"300.1.1.1"});
  ASSERT_FALSE(bad_ip.ok());
  EXPECT_THAT(std::string(bad_ip.status().message()), HasSubstr("'300.1.1.1' is not an IP address"));
  CertAndKey mismatched{ca->cert_pem, CreateCa("other")->key_pem};
  auto wrong_key = IssueClientCert(mismatched, "admin");
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_THAT(std::string(wrong_key.status().message()), HasSubstr("does not match"));
}

TEST(CertsTest, KeysAreWrittenOwnerOnly) {
  TestPki pki;
  TlsConfig c = pki.Host("host-a");
  struct stat key_st, cert_st;
  ASSERT_EQ(stat(c.key_path.c_str(), &key_st), 0);
  ASSERT_EQ(stat(c.cert_path.c_str(), &cert_st), 0);
  EXPECT_EQ(key_st.st_mode & 0777, 0600u);
  EXPECT_EQ(cert_st.st_mode & 0777, 0644u);
  auto read = ReadCertAndKey(pki.dir(), "host-a");
  ASSERT_TRUE(read.ok()) << read.status();
}

TEST(TlsConfigTest, ProperHostFilesLoadWithTheirRole) {
  TestPki pki;
  auto m = LoadTlsConfig(pki.Host("host-a"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->common_name, "host-a");
  EXPECT_EQ(m->role, kHostRole);
  auto c = LoadTlsConfig(pki.Client("admin"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->role, kClientRole);
}

TEST(TlsConfigTest, MissingFileIsNamed) {
  TestPki pki;
  TlsConfig c = pki.Host("host-a");
  c.key_path = pki.dir() + "/nope.key";
  std::string err = ErrorOf(c);
  EXPECT_THAT(err, HasSubstr("private key file"));
  EXPECT_THAT(err, HasSubstr("nope.key"));
  EXPECT_THAT(err, HasSubstr("No such file"));
  TlsConfig empty;
  EXPECT_THAT(ErrorOf(empty), HasSubstr("--insecure"));
}

TEST(TlsConfigTest, NonPemFileIsNamed) {
  TestPki pki;
  TlsConfig c = pki.Host("host-a");
  ASSERT_TRUE(WriteFileWithMode(pki.dir() + "/junk.crt", "hello\n", 0644).ok());
  c.cert_path = pki.dir() + "/junk.crt";
  EXPECT_THAT(ErrorOf(c), HasSubstr("certificate " + c.cert_path + " is not a PEM certificate"));
  c = pki.Host("host-a");
  c.key_path = c.cert_path;
  EXPECT_THAT(ErrorOf(c), HasSubstr("is not an unencrypted PEM private key"));
}

TEST(TlsConfigTest, KeyOfAnotherCertificateIsRefused) {
  TestPki pki;
  TlsConfig a = pki.Host("host-a");
  TlsConfig b = pki.Host("host-b");
  a.key_path = b.key_path;
  std::string err = ErrorOf(a);
  EXPECT_THAT(err, HasSubstr("private key " + b.key_path + " does not match certificate " + a.cert_path));
}

TEST(TlsConfigTest, ExpiredOrForeignCertificateIsRefusedAtStartup) {
  TestPki pki;
  std::string expired = ErrorOf(pki.Host("host-old", CertValidity::Expired()));
  EXPECT_THAT(expired, HasSubstr("certificate has expired"));
  EXPECT_THAT(expired, HasSubstr("host-old.crt"));
  EXPECT_THAT(expired, HasSubstr("not after"));
  std::string foreign = ErrorOf(pki.HostFromOtherCa("host-x"));
  EXPECT_THAT(foreign, HasSubstr("does not verify against CA"));
  EXPECT_THAT(foreign, HasSubstr("unable to get local issuer certificate"));
}

TEST(TlsConfigTest, InsecureNeedsNoFiles) {
  TlsConfig c;
  c.insecure = true;
  EXPECT_TRUE(LoadTlsConfig(c).ok());
  EXPECT_TRUE(MakeServerCredentials(c).ok());
  EXPECT_TRUE(MakeChannel("127.0.0.1:1", "", c).ok());
}

TEST(TlsConfigTest, TlsChannelNeedsAnExpectedPeerName) {
  TestPki pki;
  auto ch = MakeChannel("127.0.0.1:1", "", pki.Host("host-a"));
  ASSERT_FALSE(ch.ok());
  EXPECT_THAT(std::string(ch.status().message()), HasSubstr("expected peer name"));
}

}  // namespace
}  // namespace ferry
