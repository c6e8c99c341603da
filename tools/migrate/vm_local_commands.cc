#include "tools/migrate/commands.h"

namespace ferry::cli {

void AddVmLocalCommands(CLI::App& app, Globals& g) {}

}  // namespace ferry::cli
