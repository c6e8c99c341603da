#include "tools/migrate/commands.h"

namespace ferry::cli {

void AddPrecheckCommands(CLI::App& app, Globals& g) {}

}  // namespace ferry::cli
