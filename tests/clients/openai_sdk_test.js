// Drives ftune's OpenAI-compatible HTTP API with the official `openai` npm
// package (examples/node/package-lock.json), as an OpenAI user would:
// upload, create, list, retrieve, events, checkpoints, pause, resume and
// cancel, plus the SDK's typed errors for refusals. Run by clients_test
// (OpenAiSdkTest) against a real scheduler and a worker with the stand-in
// trainer. Environment: OPENAI_BASE_URL, OPENAI_API_KEY, FTUNE_MODEL,
// FTUNE_NODE_EXAMPLE_DIR (where node_modules/openai is). Prints
// "ok: <what>" lines; exits 1 with the reason on the first failure.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { createRequire } = require('node:module');

const requireExample = createRequire(
    path.join(process.env.FTUNE_NODE_EXAMPLE_DIR, 'package.json'));
const OpenAI = requireExample('openai');
const { toFile } = OpenAI;

const client = new OpenAI({
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: process.env.OPENAI_API_KEY,
  maxRetries: 0,
  timeout: 30000,
});
const model = process.env.FTUNE_MODEL;

function chatJsonl(n) {
  let out = '';
  for (let i = 0; i < n; i++) {
    out += JSON.stringify({messages: [
      {role: 'user', content: `add ${i} and 1`},
      {role: 'assistant', content: String(i + 1)},
    ]}) + '\n';
  }
  return out;
}

// ftune's own options for a CPU job on the stand-in trainer.
function ftuneOptions(extra) {
  return {
    hyperparameters: Object.assign({chat_template: 'chatml'}, extra),
    resources: {gpus: 0, cpu_threads: 1},
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(id, pred, what, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  let job;
  for (;;) {
    job = await client.fineTuning.jobs.retrieve(id);
    if (pred(job)) return job;
    if (Date.now() > deadline) {
      throw new Error(`job ${id} never became ${what}: ${JSON.stringify(job)}`);
    }
    await sleep(100);
  }
}

async function main() {
  // Files.
  const content = chatJsonl(8);
  const file = await client.files.create({
    file: await toFile(Buffer.from(content), 'train.jsonl'),
    purpose: 'fine-tune',
  });
  assert.match(file.id, /^file-/);
  assert.equal(file.object, 'file');
  assert.equal(file.bytes, Buffer.byteLength(content));
  assert.equal(file.purpose, 'fine-tune');
  const again = await client.files.retrieve(file.id);
  assert.deepEqual(again, file);
  const listed = [];
  for await (const f of client.files.list()) listed.push(f.id);
  assert.ok(listed.includes(file.id));
  const body = await client.files.content(file.id);
  assert.equal(await body.text(), content);
  console.log('ok: files');

  // A job that runs to the end: events with metrics, checkpoints, adapter.
  const done = await client.fineTuning.jobs.create({
    model,
    training_file: file.id,
    validation_file: file.id,
    suffix: 'sdk',
    seed: 7,
    metadata: {run: 'short'},
    method: {
      type: 'supervised',
      supervised: {hyperparameters: {
        n_epochs: 'auto', batch_size: 2, learning_rate_multiplier: 2}},
    },
    ftune: ftuneOptions({max_steps: 6, checkpoint_every_steps: 2}),
  });
  assert.match(done.id, /^job-/);
  assert.equal(done.object, 'fine_tuning.job');
  assert.ok(['queued', 'running'].includes(done.status), done.status);
  assert.equal(done.seed, 7);
  assert.equal(done.user_provided_suffix, 'sdk');
  assert.equal(done.hyperparameters.batch_size, 2);
  assert.equal(done.hyperparameters.learning_rate_multiplier, 2);
  assert.deepEqual(done.metadata, {run: 'short'});
  const finished = await waitFor(done.id, (j) => j.status === 'succeeded',
                                 'succeeded');
  assert.ok(finished.fine_tuned_model, 'no fine_tuned_model');
  assert.ok(finished.finished_at >= finished.created_at);
  console.log(`ok: job ${done.id} succeeded as ${finished.fine_tuned_model}`);

  // Events, 4 a page: the SDK pages with `after`.
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(done.id,
                                                          {limit: 4})) {
    events.push(e);
  }
  assert.equal(new Set(events.map((e) => e.id)).size, events.length,
               'an event was listed twice');
  const metrics = events.filter((e) => e.type === 'metrics');
  // Every step once per attempt (a lost lease under load may repeat some).
  assert.deepEqual([...new Set(metrics.map((e) => e.data.step))].sort(
                       (a, b) => a - b),
                   [1, 2, 3, 4, 5, 6], JSON.stringify(metrics));
  // A validation loss that arrives after its step's training point was
  // sent is a point (and an event) of its own: an event carries one loss or
  // both, and every step's training loss is reported.
  for (const m of metrics) {
    assert.ok(typeof m.data.train_loss === 'number' ||
                  typeof m.data.valid_loss === 'number',
              JSON.stringify(m));
  }
  assert.deepEqual(
      [...new Set(metrics.filter((e) => typeof e.data.train_loss === 'number')
                      .map((e) => e.data.step))]
          .sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6], JSON.stringify(metrics));
  assert.ok(metrics.some((e) => typeof e.data.valid_loss === 'number'),
            'no validation loss reported');
  assert.ok(events.some((e) => e.type === 'message' &&
                               e.data.status === 'succeeded'));
  console.log(`ok: ${events.length} events, ${metrics.length} with metrics`);

  const checkpoints = [];
  for await (const c of client.fineTuning.jobs.checkpoints.list(done.id)) {
    checkpoints.push(c);
  }
  assert.ok(checkpoints.length >= 1, 'no checkpoints');
  for (const c of checkpoints) {
    assert.equal(c.object, 'fine_tuning.job.checkpoint');
    assert.equal(c.fine_tuning_job_id, done.id);
    assert.ok(c.step_number > 0);
  }
  console.log(`ok: checkpoints at steps ${
      checkpoints.map((c) => c.step_number).join(',')}`);

  // A long job: pause, resume, cancel while it runs.
  const long = await client.fineTuning.jobs.create({
    model,
    training_file: file.id,
    metadata: {run: 'long'},
    ftune: ftuneOptions({max_steps: 5000, checkpoint_every_steps: 5}),
  });
  const isRunningWithSteps = (j) => j.status === 'running' && j.ftune.step > 0;
  await waitFor(long.id, isRunningWithSteps, 'running');
  await client.fineTuning.jobs.pause(long.id);
  const paused = await waitFor(long.id, (j) => j.status === 'paused',
                               'paused');
  console.log(`ok: paused at step ${paused.ftune.step}`);
  const resumed = await client.fineTuning.jobs.resume(long.id);
  assert.ok(['queued', 'running'].includes(resumed.status), resumed.status);
  await waitFor(long.id,
                (j) => isRunningWithSteps(j) && j.ftune.step > paused.ftune.step,
                'running again');
  console.log('ok: resumed');
  await client.fineTuning.jobs.cancel(long.id);
  const cancelled = await waitFor(long.id, (j) => j.status === 'cancelled',
                                  'cancelled');
  assert.ok(cancelled.finished_at);
  console.log('ok: cancelled');

  // Listing: newest first, by metadata.
  const all = [];
  for await (const j of client.fineTuning.jobs.list({limit: 1})) {
    all.push(j.id);
  }
  assert.deepEqual(all, [long.id, done.id]);
  const shortOnly = [];
  for await (const j of client.fineTuning.jobs.list(
                 {metadata: {run: 'short'}})) {
    shortOnly.push(j.id);
  }
  assert.deepEqual(shortOnly, [done.id]);
  console.log('ok: list');

  // Refusals as the SDK's typed errors.
  await assert.rejects(
      client.fineTuning.jobs.retrieve('job-' + 'a'.repeat(24)),
      (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
  await assert.rejects(
      client.fineTuning.jobs.create({model, training_file: file.id,
                                     method: {type: 'reinforcement'}}),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'method.type' &&
             /reinforcement is not supported/.test(e.message));
  // DPO is ftune's preference objective: a supervised file is refused.
  await assert.rejects(
      client.fineTuning.jobs.create({model, training_file: file.id,
                                     method: {type: 'dpo'}}),
      (e) => e instanceof OpenAI.BadRequestError &&
             /trains on preference pairs/.test(e.message));
  await assert.rejects(
      client.fineTuning.jobs.create({model: 'no-such-model',
                                     training_file: file.id}),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'model');
  const stranger = new OpenAI({baseURL: process.env.OPENAI_BASE_URL,
                               apiKey: 'ftk_wrong', maxRetries: 0});
  await assert.rejects(stranger.files.list().then((p) => p.data),
                       (e) => e instanceof OpenAI.AuthenticationError);
  console.log('ok: errors');
}

main().then(() => console.log('ok: all'), (err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
