#include "engine/agent/agent_observer.h"

namespace ferry {

AgentObserver& NoAgentObserver() {
  static AgentObserver none;
  return none;
}

}  // namespace ferry
