// The whole of ftunectl behind main(): parse the command line, print usage
// or run the command against the server, return the exit code (flags.h,
// docs/cli.md).
//
// Thread-safe: runs share nothing.
#ifndef FTUNE_CLIENT_COMMANDS_H_
#define FTUNE_CLIENT_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

#include "client/flags.h"
#include "client/output.h"

namespace ftune::client {

// `args` is argv without argv[0]. Data goes to `out`, messages to `err`.
// `terminal` says whether they are terminals (live progress lines are drawn
// only there) and how wide.
int RunFtunectl(const std::vector<std::string>& args, const Environment& env,
                std::ostream& out, std::ostream& err,
                const TerminalInfo& terminal = {});

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_COMMANDS_H_
