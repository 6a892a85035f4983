// Runs an exported TensorFlow.js package the way Azure's customvision-tfjs does: loads model.json as a graph
// model, reads the input size from its first input and the pixel format from its metadata, and executes it
// (asynchronously: detection has dynamic ops) asking for Azure's output names.
//   node run_model.js MODEL_DIR INPUT.bin OUTPUT_NAMES
// INPUT.bin: float32 pixels of N images (N, S, S, 3), already resized, in the order the metadata declares, run one
// at a time. Prints JSON: {"inputShape", "metadata", "outputs": [{name: {"shape", "data"}}, ... one per image]}.
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");

function fileHandler(directory) {
  return {
    async load() {
      const model = JSON.parse(fs.readFileSync(path.join(directory, "model.json"), "utf8"));
      const specs = [];
      const buffers = [];
      for (const group of model.weightsManifest) {
        specs.push(...group.weights);
        for (const file of group.paths) buffers.push(fs.readFileSync(path.join(directory, file)));
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: model.modelTopology,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        signature: model.signature,
        userDefinedMetadata: model.userDefinedMetadata,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
  };
}

async function main() {
  const [directory, inputFile, names] = process.argv.slice(2);
  await tf.setBackend("cpu");
  const model = await tf.loadGraphModel(fileHandler(directory));
  const shape = model.inputs[0].shape;
  const raw = fs.readFileSync(inputFile);
  const pixels = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const size = shape[1] * shape[2] * 3;
  const outputNames = names.split(",");
  const results = [];
  for (let start = 0; start < pixels.length; start += size) {
    const input = tf.tensor(pixels.subarray(start, start + size), [1, shape[1], shape[2], 3], "float32");
    let outputs = await model.executeAsync(input, outputNames);
    if (!Array.isArray(outputs)) outputs = [outputs];
    const result = {};
    for (let i = 0; i < outputNames.length; i++) {
      result[outputNames[i]] = { shape: outputs[i].shape, data: Array.from(await outputs[i].data()) };
    }
    tf.dispose([input, ...outputs]);
    results.push(result);
  }
  process.stdout.write(JSON.stringify({ inputShape: shape, metadata: model.metadata, outputs: results }));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
