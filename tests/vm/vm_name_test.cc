// The one rule for VM names, and the gates that apply it (spec files, spec messages, VM creation).
#include "engine/vm/vm_name.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/vm/vm.h"
#include "engine/vm/vm_spec_proto.h"

namespace ferry {
namespace {

TEST(VmName, AcceptsSimpleNames) {
  for (const char* name : {"web1", "a", "db-2.prod_eu", "9lives", "A.b-C_d"}) {
    EXPECT_TRUE(ValidateVmName(name).ok()) << name;
  }
  EXPECT_TRUE(ValidateVmName(std::string(kMaxVmNameLength, 'x')).ok());
}

TEST(VmName, RefusesPathsControlCharactersAndLongNames) {
  for (const std::string& name :
       {std::string(""), std::string("a/b"), std::string(".."), std::string("."), std::string("../../etc"),
        std::string("/abs"), std::string(".hidden"), std::string("-x"), std::string("a..b"), std::string("a b"),
        std::string("tab\there"), std::string("nl\n"), std::string("nul\0x", 5), std::string("\xc3\xa9t\xc3\xa9"),
        std::string(kMaxVmNameLength + 1, 'x')}) {
    absl::Status st = ValidateVmName(name);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(st.message().find("VM name"), std::string::npos) << st.message();
  }
}

TEST(VmName, ErrorsNameTheProblemAndStayShort) {
  absl::Status st = ValidateVmName("a/b");
  EXPECT_NE(st.message().find("'/' at position 2"), std::string::npos) << st.message();
  st = ValidateVmName("bad\x01");
  EXPECT_NE(st.message().find("\\x01"), std::string::npos) << st.message();
  st = ValidateVmName(std::string(10000, 'a'));
  EXPECT_NE(st.message().find("is 10000 characters long"), std::string::npos) << st.message();
  EXPECT_LT(st.message().size(), 250u) << st.message();
}

TEST(VmName, EverySpecMessageAndVmCreationChecksIt) {
  v1::VmSpec p;
  p.set_name("../../x");
  p.set_backend(v1::BACKEND_KIND_SYNTHETIC);
  p.set_memory_bytes(16 << 20);
  p.set_vcpus(1);
  EXPECT_EQ(VmSpecFromProto(p).status().code(), absl::StatusCode::kInvalidArgument);
  VmSpec s;
  s.name = "a/b";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 16 << 20;
  EXPECT_EQ(CreateVmForBoot(s).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateVmForRestore(s).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
