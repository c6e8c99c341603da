#include "engine/agent/agent_context.h"

namespace ferry {

void MigrationTable::Add(const std::string& id, PrecopySource* source) {
  std::lock_guard lock(mu_);
  records_[id].source = source;
}

void MigrationTable::Update(const std::string& id, const v1::MigrationEvent& e) {
  std::lock_guard lock(mu_);
  records_[id].last = e;
}

void MigrationTable::Finish(const std::string& id) {
  std::lock_guard lock(mu_);
  records_[id].source = nullptr;
}

bool MigrationTable::Cancel(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = records_.find(id);
  if (it == records_.end() || !it->second.source) return false;
  it->second.source->Cancel();
  return true;
}

bool MigrationTable::Get(const std::string& id, v1::MigrationEvent* last) const {
  std::lock_guard lock(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return false;
  *last = it->second.last;
  return true;
}

}  // namespace ferry
