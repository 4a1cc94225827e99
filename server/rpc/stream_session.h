// StreamSession: the lifecycle that the server-streaming sessions of
// JobService share (WatchJob: job_watch.cc; StreamJobLog: job_log.cc), so
// each of them only says what to send:
//   - one write in flight at a time, taken from the subclass's queue;
//   - the end decided once (TerminateLocked), the call finished only after
//     the queued messages are written (finishing_ -> finished_);
//   - the client cancelling, a broken stream, and WatchHub::Shutdown()
//     (which cancels a write to a client that never reads, so the stream
//     ends now);
//   - the reactor gone after OnDone (reactor_ null), the hub unsubscribed.
// SessionReactor is the gRPC reactor that forwards to it.
//
// A session lives in a shared_ptr: its reactor holds one until OnDone, the
// hub one while subscribed, and its background work one each.
// Thread-safety: every member is guarded by mu_ unless noted; Pump() and
// the callbacks are called without it.
#ifndef FTUNE_SERVER_RPC_STREAM_SESSION_H_
#define FTUNE_SERVER_RPC_STREAM_SESSION_H_

#include <memory>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/engine/watch_hub.h"

namespace ftune::server::rpc {

template <typename Response>
class StreamSession : public engine::WatchHub::Subscriber {
 public:
  using Reactor = grpc::ServerWriteReactor<Response>;

  // ---- WatchHub::Subscriber (Shutdown thread) ----
  void OnShutdown() override {
    bool cancel_write = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      TerminateLocked(absl::UnavailableError("server shutting down"));
      // A write to a client that does not read may never complete; cancel
      // it so the stream ends now. Pump() must not Finish (and so free
      // ctx_) while we are in TryCancel.
      if (writing_) cancel_write = cancelling_ = true;
    }
    if (cancel_write) {
      ctx_->TryCancel();
      absl::MutexLock lock(&mu_);
      cancelling_ = false;
    }
    Pump();
  }

  // ---- from the reactor (gRPC threads) ----
  void OnWriteDone(bool ok) {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finishing_) {
        TerminateLocked(absl::CancelledError("the stream broke"));
      }
    }
    AfterWriteDone();
    Pump();
  }

  void OnCancel() {
    {
      absl::MutexLock lock(&mu_);
      if (!finishing_) {
        TerminateLocked(absl::CancelledError("cancelled by the client"));
      }
    }
    Pump();
  }

  void OnDone() {
    {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
      finished_ = true;
      DropQueuedLocked();
    }
    slot_.reset();  // The tenant may open another stream.
    AfterDone();
  }

  // Holds `slot` (a tenant's stream slot, engine/tenant_limits.h) until the
  // call is done. Call before the session starts.
  void HoldSlot(std::shared_ptr<void> slot) { slot_ = std::move(slot); }

 protected:
  // `ctx` and `reactor` are gRPC's; both stay valid until OnDone.
  StreamSession(grpc::CallbackServerContext* ctx, Reactor* reactor)
      : ctx_(ctx), reactor_(reactor) {}

  // Writes the next queued message, or finishes the call once nothing is
  // queued and the end is decided. Called without mu_ held.
  virtual void Pump() { WriteNext(); }

  // The write-or-finish step of Pump().
  void WriteNext() {
    Reactor* reactor = nullptr;
    bool write = false;
    bool corked = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || reactor_ == nullptr || writing_ || cancelling_) return;
      if (TakeNextLocked(&current_)) {
        writing_ = write = true;
        // More are queued: gRPC may hold this one and send it with the
        // next (fewer frames and syscalls per stream); the last message of
        // a burst is written without the hint and flushes them all.
        corked = HasQueuedLocked();
      } else if (finishing_) {
        finished_ = true;
        status = final_status_;
      } else {
        return;
      }
      reactor = reactor_;
    }
    if (write) {
      reactor->StartWrite(&current_,
                          corked ? grpc::WriteOptions().set_buffer_hint()
                                 : grpc::WriteOptions());
    } else {
      reactor->Finish(status);
    }
  }

  // Moves the next queued message to `out`; false when none is queued.
  virtual bool TakeNextLocked(Response* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Whether another message is queued after the one just taken.
  virtual bool HasQueuedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return false;
  }
  // Drops what is queued (the call is over).
  virtual void DropQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Decides that the stream ends with `status` (mapped by ToGrpcStatus with
  // ctx_, so it carries its ErrorInfo) once what is queued is written.
  virtual void TerminateLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // After a write completed, before Pump(); without mu_.
  virtual void AfterWriteDone() {}
  // After OnDone (unsubscribe, release); without mu_.
  virtual void AfterDone() {}

  grpc::CallbackServerContext* const ctx_;
  absl::Mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_);  // Null after OnDone.
  Response current_;                       // Owned by gRPC while writing_.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelling_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // Finish once drained.
  bool finished_ ABSL_GUARDED_BY(mu_) = false;   // Finish called.
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);

 private:
  // Set before the session starts, released in OnDone (gRPC calls it once).
  std::shared_ptr<void> slot_;
};

// The reactor of a streaming call: forwards gRPC's callbacks to its session
// (none when the request was refused before one was made) and deletes
// itself when the call is done.
template <typename Response>
class SessionReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  void set_session(std::shared_ptr<StreamSession<Response>> session) {
    session_ = std::move(session);
  }
  void OnWriteDone(bool ok) override {
    if (session_) session_->OnWriteDone(ok);
  }
  void OnCancel() override {
    if (session_) session_->OnCancel();
  }
  void OnDone() override {
    if (session_) session_->OnDone();
    delete this;
  }

 private:
  std::shared_ptr<StreamSession<Response>> session_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_STREAM_SESSION_H_
