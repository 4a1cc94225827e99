#!/usr/bin/env node
// Submit a fine-tuning job to ftune and watch it to the end (Node.js).
//
// The same client as examples/python/ftune_example.py, with @grpc/grpc-js
// and the .proto files loaded at run time by @grpc/proto-loader (field names
// as in the .proto files: keepCase; 64-bit integers as strings; enums as
// their names). It
//   1. connects (plaintext, or TLS with FTUNE_TLS_CA) and sends
//      "authorization: Bearer <FTUNE_API_KEY>" with every call;
//   2. uploads a JSONL dataset with FileService.UploadFile (metadata first,
//      then chunks of at most 1 MiB);
//   3. creates a job with JobService.CreateJob and a request_id;
//   4. follows it with JobService.WatchJob, resuming with after_sequence
//      after a broken stream, until the job is terminal;
//   5. on a refused call prints the status and the ErrorInfo from the
//      trailing metadata "ftune-error-bin".
//
// Usage (see README.md):
//   FTUNE_API_KEY=ftk_... node ftune_example.js --model llama-3.2-1b train.jsonl
//
// Exit codes: 0 the job SUCCEEDED; 1 the job FAILED or was CANCELLED, or the
// server refused a call; 2 usage error; 3 the server could not be reached.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const {once} = require('node:events');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const CHUNK_SIZE = 1 << 20;  // FileService accepts chunks of at most 1 MiB.
const DEFAULT_ADDRESS = '127.0.0.1:50051';
const EXIT_SUCCEEDED = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;

const USAGE = `usage: node ftune_example.js --model NAME [options] TRAINING_FILE

Upload a dataset, create an ftune job and watch it.

options:
  --model NAME          registered base model, e.g. llama-3.2-1b (required)
  --method lora|qlora   training method (default lora)
  --max-steps N         optimizer steps
  --epochs X            passes over the data (not with --max-steps)
  --chat-template NAME  for chat datasets: chatml, llama3, llama2, alpaca
                        (default: the model's own template)
  --gpus N              GPUs for the job (0 = CPU; server default 1)
  --cpu-threads N       trainer threads (server default: 4 on CPU)
  --request-id ID       idempotency key of CreateJob (default: a new UUID)
  --timeout SECONDS     deadline of each unary call (default 30)
  --protos DIR          the proto/ directory (default: ../../proto)
  -h, --help            this help

environment: FTUNE_ADDRESS (default ${DEFAULT_ADDRESS}), FTUNE_API_KEY
(required), FTUNE_TLS_CA (PEM roots; enables TLS).`;

class UsageError extends Error {}

// A small parser: "--name value" or "--name=value", one positional.
function parseArgs(argv) {
  const args = {
    method: 'lora',
    timeout: 30,
    protos: path.join(__dirname, '..', '..', 'proto'),
  };
  const numeric = {
    'max-steps': 'maxSteps',
    'epochs': 'epochs',
    'gpus': 'gpus',
    'cpu-threads': 'cpuThreads',
    'timeout': 'timeout',
  };
  const text = {
    'model': 'model',
    'method': 'method',
    'request-id': 'requestId',
    'chat-template': 'chatTemplate',
    'protos': 'protos',
  };
  const positional = [];
  for (let i = 0; i < argv.length; ++i) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      args.help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    let [name, value] = arg.slice(2).split(/=(.*)/s, 2);
    if (!(name in numeric) && !(name in text)) {
      throw new UsageError(`unknown flag --${name}`);
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      value = argv[++i];
    }
    if (name in numeric) {
      const n = Number(value);
      if (value === '' || !Number.isFinite(n)) {
        throw new UsageError(`--${name}: not a number: ${value}`);
      }
      args[numeric[name]] = n;
    } else {
      args[text[name]] = value;
    }
  }
  if (args.help) return args;
  if (positional.length !== 1) {
    throw new UsageError('expected exactly one TRAINING_FILE');
  }
  args.trainingFile = positional[0];
  if (!args.model) throw new UsageError('--model is required');
  if (args.method !== 'lora' && args.method !== 'qlora') {
    throw new UsageError(`--method: lora or qlora, not ${args.method}`);
  }
  if (args.maxSteps !== undefined && args.epochs !== undefined) {
    throw new UsageError('--max-steps and --epochs exclude each other');
  }
  return args;
}

// Loads the services and the ErrorInfo type from the .proto files.
function loadApi(protoDir) {
  const options = {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
    includeDirs: [protoDir],
  };
  const definition = protoLoader.loadSync(
      ['ftune/v1/file.proto', 'ftune/v1/job_service.proto'], options);
  const v1 = grpc.loadPackageDefinition(definition).ftune.v1;
  const errorInfo = protobuf.loadSync(path.join(protoDir, 'ftune/v1/common.proto'))
                        .lookupType('ftune.v1.ErrorInfo');
  return {v1, errorInfo};
}

function deadlineIn(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

function unary(client, method, request, metadata, timeoutS) {
  return new Promise((resolve, reject) => {
    client[method](
        request, metadata, {deadline: deadlineIn(timeoutS)},
        (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function shortState(state) {
  return String(state).replace(/^JOB_STATE_/, '');
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function fileDigest(filePath) {
  const sha = crypto.createHash('sha256');
  let size = 0;
  for await (const block of fs.createReadStream(filePath)) {
    sha.update(block);
    size += block.length;
  }
  return {size, sha256: sha.digest('hex')};
}

// Streams `filePath` to FileService.UploadFile; resolves to the File.
async function upload(files, metadata, filePath, timeoutS) {
  const {size, sha256} = await fileDigest(filePath);
  let call;
  const answer = new Promise((resolve, reject) => {
    // Uploads have no fixed length: scale the deadline with the size.
    call = files.UploadFile(
        metadata, {deadline: deadlineIn(timeoutS + size / CHUNK_SIZE)},
        (err, file) => (err ? reject(err) : resolve(file)));
  });
  // The server may refuse before it has read everything (a bad line): stop
  // writing then and report its answer.
  let refused = false;
  answer.catch(() => {
    refused = true;
  });
  const send = async (message) => {
    if (!call.write(message)) {
      await Promise.race([once(call, 'drain'), answer]);
    }
  };
  // The first message describes the file; the server checks the size and
  // digest at the end, so a file changed meanwhile is refused.
  await send({
    metadata: {
      filename: path.basename(filePath),
      purpose: 'FILE_PURPOSE_FINE_TUNE_TRAIN',
      expected_size_bytes: String(size),
      expected_sha256: sha256,
    },
  });
  for await (const chunk of fs.createReadStream(
      filePath, {highWaterMark: CHUNK_SIZE})) {
    if (refused) break;
    await send({chunk});
  }
  call.end();
  return answer;
}

function buildSpec(args, trainingFile) {
  const spec = {
    model: args.model,
    training_file: trainingFile,
    method: args.method === 'qlora' ? 'TRAINING_METHOD_QLORA' :
                                      'TRAINING_METHOD_LORA',
    hyperparameters: {},
    resources: {},
  };
  if (args.maxSteps !== undefined) {
    spec.hyperparameters.max_steps = String(args.maxSteps);
  }
  if (args.epochs !== undefined) spec.hyperparameters.epochs = args.epochs;
  if (args.chatTemplate) {
    spec.hyperparameters.chat_template = args.chatTemplate;
  }
  if (args.gpus !== undefined) spec.resources.gpus = args.gpus;
  if (args.cpuThreads !== undefined) {
    spec.resources.cpu_threads = args.cpuThreads;
  }
  return spec;
}

// CreateJob, retried on UNAVAILABLE: the request_id makes that safe.
async function createJob(jobs, metadata, spec, requestId, timeoutS) {
  const request = {spec, request_id: requestId};
  for (let attempt = 0;; ++attempt) {
    try {
      const response =
          await unary(jobs, 'CreateJob', request, metadata, timeoutS);
      return response.job;
    } catch (err) {
      if (err.code !== grpc.status.UNAVAILABLE || attempt === 4) throw err;
      console.error('ftune_example: CreateJob: UNAVAILABLE, retrying');
      await sleep(500 * 2 ** attempt);
    }
  }
}

const TERMINAL =
    new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED']);

// Follows one job over as many WatchJob streams as it takes. `cursor` is
// the sequence of the last event or metric point printed; a new stream asks
// for everything after it, so nothing is lost or printed twice.
class Watcher {
  constructor(jobs, metadata, jobId) {
    this.jobs = jobs;
    this.metadata = metadata;
    this.jobId = jobId;
    this.cursor = '0';  // The first stream replays the whole history.
    this.job = null;
    this.state = null;
  }

  noteState(state, why) {
    if (state === this.state) return;
    this.state = state;
    console.log(`state: ${shortState(state)}${why ? ` (${why})` : ''}`);
  }

  printMetric(point) {
    const total = Number(this.job?.progress?.total_steps || 0);
    const step = Number(point.step || 0);
    const parts = [`step ${total ? `${step}/${total}` : step}`];
    if (point.train_loss != null) {
      parts.push(`loss ${point.train_loss.toFixed(4)}`);
    }
    if (point.eval_loss != null) {
      parts.push(`eval_loss ${point.eval_loss.toFixed(4)}`);
    }
    if (point.learning_rate) {
      parts.push(`lr ${Number(point.learning_rate.toPrecision(3))}`);
    }
    console.log(parts.join('  '));
  }

  // Handles one WatchJobResponse.
  handle(msg) {
    const sequence = msg.sequence || '0';
    switch (msg.update) {
      case 'job':
        // Snapshots carry the whole job (progress, adapter, error); state
        // changes are printed from the events, which arrive in order, each
        // once, also when history is replayed.
        this.job = msg.job;
        break;
      case 'event': {
        this.cursor = sequence;
        const event = msg.event;
        if (event.to_state) {
          this.noteState(event.to_state, event.message);
        } else if (event.message) {
          const type = String(event.type).replace(/^JOB_EVENT_TYPE_/, '');
          console.log(`event: ${type}: ${event.message}`);
        }
        break;
      }
      case 'metric':
        this.cursor = sequence;
        this.printMetric(msg.metric);
        break;
      case 'metrics':
        this.cursor = sequence;
        for (const point of msg.metrics.points || []) this.printMetric(point);
        break;
      case 'truncated':
        // We fell behind; the stream ends; continue right after this.
        this.cursor = msg.truncated.resume_after_sequence || '0';
        break;
    }
  }

  // One WatchJob stream; resolves when it ends with OK.
  watchOnce() {
    return new Promise((resolve, reject) => {
      const call = this.jobs.WatchJob(
          {job_id: this.jobId, after_sequence: this.cursor}, this.metadata);
      call.on('data', (msg) => {
        this.lastProgress = Date.now();
        this.backoffMs = 250;
        this.handle(msg);
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
  }

  // Watches until the job is terminal; resolves to the final Job.
  // Reconnects after UNAVAILABLE (server restart, network) for up to
  // `giveUpAfterMs` without any message; other errors reject.
  async run(giveUpAfterMs = 60000) {
    this.backoffMs = 250;
    this.lastProgress = Date.now();
    for (;;) {
      try {
        await this.watchOnce();
      } catch (err) {
        if (err.code !== grpc.status.UNAVAILABLE ||
            Date.now() - this.lastProgress > giveUpAfterMs) {
          throw err;
        }
        console.error(`ftune_example: watch: UNAVAILABLE (${
            err.details}); reconnecting after sequence ${this.cursor}`);
        await sleep(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, 5000);
        continue;
      }
      // Ended with OK: after the final snapshot of a terminal job, or after
      // `truncated`.
      if (this.job && TERMINAL.has(this.job.state)) return this.job;
    }
  }
}

function reportRpcError(errorInfo, what, err) {
  const code = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) ||
      String(err.code);
  console.error(`ftune_example: ${what}: ${code}: ${err.details}`);
  const values = err.metadata ? err.metadata.get('ftune-error-bin') : [];
  for (const value of values) {
    const info = errorInfo.toObject(errorInfo.decode(value), {longs: String});
    for (const field of ['field', 'line', 'quota', 'limit', 'current_state',
                         'resource_id']) {
      if (info[field] && info[field] !== '0') {
        console.error(`  ${field}: ${info[field]}`);
      }
    }
  }
}

function printOutcome(job) {
  if (job.state === 'JOB_STATE_SUCCEEDED') {
    const adapter = job.adapter || {};
    console.log(`adapter: ${adapter.name}`);
    console.log(`adapter path: ${adapter.path}`);
    for (const f of adapter.files || []) {
      console.log(`  ${f.path}  ${f.size_bytes || 0} bytes  sha256 ${f.sha256}`);
    }
    return EXIT_SUCCEEDED;
  }
  if (job.error && job.error.message) {
    console.log(`error: ${job.error.reason}: ${job.error.message}`);
  }
  return EXIT_FAILED;
}

async function main(argv) {
  let args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`ftune_example: ${err.message}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (args.help) {
    console.log(USAGE);
    return EXIT_SUCCEEDED;
  }
  const apiKey = process.env.FTUNE_API_KEY || '';
  if (!apiKey) {
    console.error('ftune_example: set FTUNE_API_KEY to a tenant API key');
    return EXIT_USAGE;
  }
  if (!fs.existsSync(args.trainingFile) ||
      !fs.statSync(args.trainingFile).isFile()) {
    console.error(`ftune_example: ${args.trainingFile}: no such file`);
    return EXIT_USAGE;
  }
  const {v1, errorInfo} = loadApi(args.protos);

  const address = process.env.FTUNE_ADDRESS || DEFAULT_ADDRESS;
  const caPath = process.env.FTUNE_TLS_CA || '';
  const credentials = caPath ?
      grpc.credentials.createSsl(fs.readFileSync(caPath)) :
      grpc.credentials.createInsecure();
  // Every tenant call carries the key.
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${apiKey}`);
  const files = new v1.FileService(address, credentials);
  const jobs = new v1.JobService(address, credentials);

  let step = 'UploadFile';
  try {
    const file = await upload(files, metadata, args.trainingFile, args.timeout);
    console.log(`file: ${file.id} (${file.example_count || 0} examples, ${
        file.format})`);

    step = 'CreateJob';
    const requestId = args.requestId || crypto.randomUUID();
    const job = await createJob(
        jobs, metadata, buildSpec(args, file.id), requestId, args.timeout);
    console.log(`job: ${job.id} (request id ${requestId})`);

    step = 'WatchJob';
    const final = await new Watcher(jobs, metadata, job.id).run();
    return printOutcome(final);
  } catch (err) {
    if (err.code === undefined) throw err;  // Not a gRPC status.
    reportRpcError(errorInfo, step, err);
    return err.code === grpc.status.UNAVAILABLE ||
            err.code === grpc.status.DEADLINE_EXCEEDED ?
        EXIT_UNREACHABLE :
        EXIT_FAILED;
  } finally {
    files.close();
    jobs.close();
  }
}

main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      console.error(`ftune_example: ${err.stack || err}`);
      process.exitCode = EXIT_FAILED;
    });
