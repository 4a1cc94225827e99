#!/usr/bin/python3
"""Submit a fine-tuning job to ftune and watch it to the end.

What it shows, in the order a real client does it:
  1. connect (plaintext, or TLS with FTUNE_TLS_CA) and authenticate every call
     with the metadata "authorization: Bearer <FTUNE_API_KEY>";
  2. upload a JSONL dataset with FileService.UploadFile (a client stream:
     metadata first, then chunks of at most 1 MiB);
  3. create a job with JobService.CreateJob and a request_id, so that
     retrying after a lost answer cannot create a second job;
  4. follow it with JobService.WatchJob, resuming with after_sequence after a
     broken stream, until the job reaches a terminal state;
  5. on a refused call, print the status message and the ErrorInfo that the
     server attaches in the trailing metadata "ftune-error-bin".

Usage (see README.md; the stubs come from generate_stubs.sh):
  FTUNE_API_KEY=ftk_... /usr/bin/python3 ftune_example.py \
      --stubs gen --model llama-3.2-1b train.jsonl

Exit codes: 0 the job SUCCEEDED; 1 the job FAILED or was CANCELLED, or the
server refused a call; 2 usage error; 3 the server could not be reached.
"""

import argparse
import hashlib
import os
import sys
import time
import uuid

CHUNK_SIZE = 1 << 20  # FileService accepts chunks of at most 1 MiB.
DEFAULT_ADDRESS = "127.0.0.1:50051"

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Upload a dataset, create an ftune job and watch it.",
        epilog="Environment: FTUNE_ADDRESS (default %s), FTUNE_API_KEY "
        "(required), FTUNE_TLS_CA (PEM roots; enables TLS)." % DEFAULT_ADDRESS)
    parser.add_argument("training_file", help="JSONL dataset to upload")
    parser.add_argument("--stubs",
                        default=os.path.join(os.path.dirname(
                            os.path.abspath(__file__)), "gen"),
                        help="directory written by generate_stubs.sh "
                        "(default: gen/ next to this script)")
    parser.add_argument("--model", required=True,
                        help="registered base model, e.g. llama-3.2-1b")
    parser.add_argument("--method", choices=["lora", "qlora"], default="lora")
    parser.add_argument("--objective", choices=["sft", "dpo", "orpo"],
                        default="sft",
                        help="sft (default); dpo or orpo on a preference "
                        "file")
    parser.add_argument("--beta", type=float,
                        help="dpo: how closely the policy stays to the base "
                        "model (server default 0.1)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=float, help="passes over the data")
    parser.add_argument("--chat-template",
                        help="for chat datasets: chatml, llama3, llama2, "
                        "alpaca (default: the model's own template)")
    parser.add_argument("--gpus", type=int,
                        help="GPUs for the job (0 = CPU; server default 1)")
    parser.add_argument("--cpu-threads", type=int,
                        help="trainer threads (server default: 4 on CPU)")
    parser.add_argument("--request-id",
                        help="idempotency key of CreateJob (default: a new "
                        "UUID)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="deadline in seconds of each unary call "
                        "(default 30)")
    return parser.parse_args(argv)


def load_stubs(stubs_dir):
    """Imports grpc and the generated modules from `stubs_dir`.

    They become globals of this module; the stubs' directory is only known
    once the command line is parsed. Returns False if there are no stubs.
    """
    if not os.path.isdir(os.path.join(stubs_dir, "ftune", "v1")):
        print("ftune_example: no generated stubs in %s; run "
              "generate_stubs.sh %s first" % (stubs_dir, stubs_dir),
              file=sys.stderr)
        return False
    sys.path.insert(0, stubs_dir)
    global grpc, common_pb2, file_pb2, file_pb2_grpc, job_pb2
    global job_service_pb2, job_service_pb2_grpc, job_spec_pb2
    import grpc
    from ftune.v1 import common_pb2, file_pb2, file_pb2_grpc, job_pb2
    from ftune.v1 import job_service_pb2, job_service_pb2_grpc, job_spec_pb2
    return True


def report_rpc_error(what, err):
    """Prints a failed call: code, message, then the ErrorInfo fields."""
    print("ftune_example: %s: %s: %s" % (what, err.code().name, err.details()),
          file=sys.stderr)
    for key, value in err.trailing_metadata() or ():
        if key != "ftune-error-bin":
            continue
        info = common_pb2.ErrorInfo.FromString(value)
        for field in ("field", "line", "quota", "limit", "current_state",
                      "resource_id"):
            v = getattr(info, field)
            if v:
                print("  %s: %s" % (field, v), file=sys.stderr)


def exit_code_for(err):
    if err.code() in (grpc.StatusCode.UNAVAILABLE,
                      grpc.StatusCode.DEADLINE_EXCEEDED):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


def short_state(state):
    return job_pb2.JobState.Name(state).replace("JOB_STATE_", "")


def file_digest(path):
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_SIZE), b""):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()


def upload(files, metadata, path, timeout):
    """Streams `path` to FileService.UploadFile; returns the File."""
    size, sha256 = file_digest(path)

    def requests():
        # The first message describes the file; the server checks the size
        # and digest at the end, so a file changed meanwhile is refused.
        yield file_pb2.UploadFileRequest(metadata=file_pb2.UploadFileMetadata(
            filename=os.path.basename(path),
            purpose=file_pb2.FILE_PURPOSE_FINE_TUNE_TRAIN,
            expected_size_bytes=size,
            expected_sha256=sha256))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
                yield file_pb2.UploadFileRequest(chunk=chunk)

    # Uploads are streams without a fixed length: scale the deadline.
    return files.UploadFile(requests(), metadata=metadata,
                            timeout=timeout + size / (1 << 20))


def build_spec(args, training_file):
    spec = job_spec_pb2.JobSpec(model=args.model, training_file=training_file)
    spec.method = (common_pb2.TRAINING_METHOD_QLORA if args.method == "qlora"
                   else common_pb2.TRAINING_METHOD_LORA)
    if args.max_steps is not None:
        spec.hyperparameters.max_steps = args.max_steps
    if args.epochs is not None:
        spec.hyperparameters.epochs = args.epochs
    if args.chat_template:
        spec.hyperparameters.chat_template = args.chat_template
    if args.objective != "sft":
        # DPO / ORPO train on a preference file ({"prompt", "chosen",
        # "rejected"} lines); beta is DPO's, lambda ORPO's.
        spec.objective = (common_pb2.TRAINING_OBJECTIVE_DPO
                          if args.objective == "dpo"
                          else common_pb2.TRAINING_OBJECTIVE_ORPO)
        if args.objective == "dpo" and args.beta is not None:
            spec.preference.beta = args.beta
    elif args.beta is not None:
        sys.exit("ftune_example: --beta needs --objective dpo")
    if args.gpus is not None:
        spec.resources.gpus = args.gpus
    if args.cpu_threads is not None:
        spec.resources.cpu_threads = args.cpu_threads
    return spec


def create_job(jobs, metadata, spec, request_id, timeout):
    """CreateJob, retried on UNAVAILABLE: the request_id makes it safe."""
    request = job_service_pb2.CreateJobRequest(spec=spec,
                                               request_id=request_id)
    for attempt in range(5):
        try:
            return jobs.CreateJob(request, metadata=metadata,
                                  timeout=timeout).job
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == 4:
                raise
            print("ftune_example: CreateJob: UNAVAILABLE, retrying",
                  file=sys.stderr)
            time.sleep(0.5 * 2**attempt)


class Watcher:
    """Follows one job over as many WatchJob streams as it takes.

    `cursor` is the sequence of the last event or metric point printed; a
    new stream asks for everything after it, so nothing is lost or printed
    twice across reconnects.
    """

    def __init__(self, jobs, metadata, job_id):
        self.jobs = jobs
        self.metadata = metadata
        self.job_id = job_id
        self.cursor = 0  # The first stream replays the whole history.
        self.job = None
        self.state = None

    def note_state(self, state, why):
        if state != self.state:
            self.state = state
            print("state: %s%s" % (short_state(state),
                                   " (%s)" % why if why else ""))

    def print_metric(self, point):
        total = self.job.progress.total_steps if self.job else 0
        step = "%d/%d" % (point.step, total) if total else str(point.step)
        parts = ["step %s" % step]
        if point.HasField("train_loss"):
            parts.append("loss %.4f" % point.train_loss)
        if point.HasField("preference"):
            parts.append("reward_acc %.2f" % point.preference.reward_accuracy)
        if point.HasField("eval_loss"):
            parts.append("eval_loss %.4f" % point.eval_loss)
        if point.HasField("eval_preference"):
            parts.append("eval_reward_acc %.2f"
                         % point.eval_preference.reward_accuracy)
        if point.learning_rate:
            parts.append("lr %.3g" % point.learning_rate)
        print("  ".join(parts))

    def handle(self, msg):
        """Handles one WatchJobResponse; returns False once truncated."""
        kind = msg.WhichOneof("update")
        if kind == "job":
            # Snapshots carry the whole job (progress, adapter, error); the
            # state changes themselves are printed from the events, which
            # arrive in order, each once, also when history is replayed.
            self.job = msg.job
        elif kind == "event":
            self.cursor = msg.sequence
            event = msg.event
            if event.to_state:
                self.note_state(event.to_state, event.message)
            elif event.message:
                print("event: %s: %s" % (job_pb2.JobEventType.Name(
                    event.type).replace("JOB_EVENT_TYPE_", ""), event.message))
        elif kind == "metric":
            self.cursor = msg.sequence
            self.print_metric(msg.metric)
        elif kind == "metrics":
            self.cursor = msg.sequence
            for point in msg.metrics.points:
                self.print_metric(point)
        elif kind == "truncated":
            # We fell behind; continue right after what we have.
            self.cursor = msg.truncated.resume_after_sequence
            return False
        return True

    def terminal(self):
        return self.job is not None and self.job.state in (
            job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED,
            job_pb2.JOB_STATE_CANCELLED)

    def run(self, give_up_after=60.0):
        """Watches until the job is terminal; returns the final Job.

        Reconnects after UNAVAILABLE (server restart, network) with
        after_sequence = cursor, for up to `give_up_after` seconds without
        any message; other errors propagate as grpc.RpcError.
        """
        backoff = 0.25
        last_progress = time.monotonic()
        while True:
            request = job_service_pb2.WatchJobRequest(
                job_id=self.job_id, after_sequence=self.cursor)
            try:
                for msg in self.jobs.WatchJob(request, metadata=self.metadata):
                    last_progress = time.monotonic()
                    backoff = 0.25
                    if not self.handle(msg):
                        break
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                if time.monotonic() - last_progress > give_up_after:
                    raise
                print("ftune_example: watch: UNAVAILABLE (%s); reconnecting "
                      "after sequence %d" % (err.details(), self.cursor),
                      file=sys.stderr)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            # The stream ended with OK: after the final snapshot of a
            # terminal job, or after `truncated`.
            if self.terminal():
                return self.job


def print_outcome(job):
    if job.state == job_pb2.JOB_STATE_SUCCEEDED:
        print("adapter: %s" % job.adapter.name)
        print("adapter path: %s" % job.adapter.path)
        for f in job.adapter.files:
            print("  %s  %d bytes  sha256 %s" % (f.path, f.size_bytes,
                                                 f.sha256))
        return EXIT_SUCCEEDED
    if job.error.message:
        print("error: %s: %s" % (job_pb2.ErrorReason.Name(job.error.reason),
                                 job.error.message))
    return EXIT_FAILED


def main(argv):
    args = parse_args(argv)
    api_key = os.environ.get("FTUNE_API_KEY", "")
    if not api_key:
        print("ftune_example: set FTUNE_API_KEY to a tenant API key",
              file=sys.stderr)
        return EXIT_USAGE
    if not os.path.isfile(args.training_file):
        print("ftune_example: %s: no such file" % args.training_file,
              file=sys.stderr)
        return EXIT_USAGE
    if not load_stubs(args.stubs):
        return EXIT_USAGE
    sys.stdout.reconfigure(line_buffering=True)

    address = os.environ.get("FTUNE_ADDRESS", DEFAULT_ADDRESS)
    ca_path = os.environ.get("FTUNE_TLS_CA", "")
    if ca_path:
        with open(ca_path, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(address, creds)
    else:
        channel = grpc.insecure_channel(address)
    # Every tenant call carries the key; the server never sees it elsewhere.
    metadata = (("authorization", "Bearer " + api_key),)
    files = file_pb2_grpc.FileServiceStub(channel)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)

    step = "UploadFile"
    try:
        uploaded = upload(files, metadata, args.training_file, args.timeout)
        print("file: %s (%d examples, %s)" % (
            uploaded.id, uploaded.example_count,
            file_pb2.FileFormat.Name(uploaded.format)))

        step = "CreateJob"
        request_id = args.request_id or str(uuid.uuid4())
        job = create_job(jobs, metadata, build_spec(args, uploaded.id),
                         request_id, args.timeout)
        print("job: %s (request id %s)" % (job.id, request_id))

        step = "WatchJob"
        final = Watcher(jobs, metadata, job.id).run()
    except grpc.RpcError as err:
        report_rpc_error(step, err)
        return exit_code_for(err)
    finally:
        channel.close()
    return print_outcome(final)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
