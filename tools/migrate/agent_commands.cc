#include "tools/migrate/commands.h"

namespace ferry::cli {

void AddAgentCommands(CLI::App& app, Globals& g) {}

}  // namespace ferry::cli
