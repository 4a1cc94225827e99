// Exit codes of `ftune-train`, the contract with the worker agent, which
// decides from them whether an attempt is retried.
//
//   0  kExitOk           the job finished and its adapter is published.
//   1  kExitRetryable    a failure that may not recur on another attempt
//                        (I/O error on shared storage, internal error).
//   2  kExitBadInput     the spec, model or data is invalid; retrying cannot
//                        help. A {"type":"error"} line names the field.
//   3  kExitOutOfMemory  an allocation failed (CPU or GPU); the agent may
//                        retry with a smaller micro-batch.
//   4  kExitInterrupted  SIGTERM/SIGINT: a checkpoint was written and the run
//                        can resume from it (cancel or preemption).
//   5  kExitDiverged     the loss or gradient became NaN/Inf; deterministic,
//                        so not retried.
//   6  kExitPeerLost     a multi-rank run (worker/train/distributed.h) lost a
//                        peer: another rank exited, or the rendezvous or a
//                        collective timed out. Retryable from the last
//                        checkpoint, like 1.
//
// The one definition: worker/agent/trainer_process.h includes this file, so
// it must stay plain C++ (no LibTorch, no other includes).
#ifndef FTUNE_WORKER_TRAIN_EXIT_CODES_H_
#define FTUNE_WORKER_TRAIN_EXIT_CODES_H_

namespace ftune::train {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRetryable = 1;
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitOutOfMemory = 3;
inline constexpr int kExitInterrupted = 4;
inline constexpr int kExitDiverged = 5;
inline constexpr int kExitPeerLost = 6;

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_EXIT_CODES_H_
