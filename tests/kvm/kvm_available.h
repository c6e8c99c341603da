#pragma once
// Tests that need a real KVM skip, with the reason, where /dev/kvm is absent or unusable.

#include <gtest/gtest.h>

#include <string>

#include "engine/kvm/kvm_system.h"

#define FERRY_SKIP_WITHOUT_KVM()                                           \
  do {                                                                     \
    std::string _why;                                                      \
    if (!::ferry::KvmUsable(&_why)) GTEST_SKIP() << "needs KVM: " << _why; \
  } while (0)
