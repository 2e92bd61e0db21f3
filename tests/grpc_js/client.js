// A grpc-js client of augserve (protobufjs parses what the server sends): `node client.js TARGET` with a
// plan on stdin, {"augment": request, "stream": [requests], "dataset": request, "waveform": request, "texts":
// request} in proto-loader's object form (bytes as base64). Prints what came back: each tensor's dtype, shape,
// length and sha256, the valid lengths and the sentences.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const proto = path.join(__dirname, "..", "..", "protos", "augserve", "v1", "augserve.proto");
const definition = protoLoader.loadSync(proto,
  { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const { Augmentation } = grpc.loadPackageDefinition(definition).augserve.v1;

const tensor = (t) => t ? { dtype: t.dtype, shape: t.shape, bytes: t.data.length,
  sha256: crypto.createHash("sha256").update(t.data).digest("hex") } : null;
const answer = (a) => a ? { x: tensor(a.x), labels: tensor(a.labels), lengths: a.lengths, texts: a.texts } : null;

function collect(call) {
  return new Promise((resolve, reject) => {
    const answers = [];
    call.on("data", (message) => answers.push(message));
    call.on("error", reject);
    call.on("end", () => resolve(answers));
  });
}

async function main() {
  const plan = JSON.parse(fs.readFileSync(0, "utf8"));
  const client = new Augmentation(process.argv[2], grpc.credentials.createInsecure());
  const deadline = () => ({ deadline: Date.now() + 60000 });
  const augment = (request) => new Promise((resolve, reject) =>
    client.Augment(request, deadline(), (error, response) => error ? reject(error) : resolve(response)));
  const augmented = await augment(plan.augment);
  const stream = client.AugmentStream(deadline());
  const streamed = collect(stream);
  plan.stream.forEach((request) => stream.write(request));
  stream.end();
  const batches = await collect(client.StreamDataset(plan.dataset, deadline()));
  const waveform = await augment(plan.waveform);
  const texts = await augment(plan.texts);
  console.log(JSON.stringify({
    augment: answer(augmented),
    stream: (await streamed).sort((a, b) => a.request_id - b.request_id).map(answer),
    dataset: batches.map((b) => ({ batch_index: b.batch_index, sample_indices: b.sample_indices, ...answer(b.batch) })),
    waveform: answer(waveform),
    texts: answer(texts),
  }));
  client.close();
}

main().catch((error) => { console.error(error); process.exit(1); });
