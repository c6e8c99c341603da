#include "tools/migrate/commands.h"

namespace ferry::cli {

void AddDemoCommand(CLI::App& app, Globals& g) {}

}  // namespace ferry::cli
