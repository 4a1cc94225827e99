// ftunectl: the command-line client of the ftune scheduler. Everything but
// reading argv and the environment lives in the ftune_client library
// (client/commands.h); docs/cli.md is the user's guide.
#include <iostream>
#include <string>
#include <vector>

#include "client/commands.h"
#include "client/flags.h"
#include "client/output.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return ftune::client::RunFtunectl(args, ftune::client::ProcessEnvironment(),
                                    std::cout, std::cerr,
                                    ftune::client::ProcessTerminal());
}
