#include "tools/migrate/commands.h"

namespace ferry::cli {

void AddCertsCommands(CLI::App& app, Globals& g) {}

}  // namespace ferry::cli
