// Publish / unpublish an iteration, with its prediction URL and examples; export it and download the exports.

import { useEffect, useState } from "preact/hooks";
import { predictionUrl, training } from "./api.js";
import { CopyBlock, Dialog, ErrorNote, html, isDetection, useAction, useLoad } from "./ui.js";

const RESOURCE = "ocv.predictionResourceId";
// The spec's ExportPlatform values and, for each, its ExportFlavor values.
const FLAVORS = {
  ONNX: ["ONNX10", "ONNX12"], TensorFlow: ["TensorFlowNormal", "TensorFlowLite"], CoreML: [],
  DockerFile: ["Linux", "Windows", "ARM"], VAIDK: [],
};

export function PublishPanel({ project, domain, iteration, onChanged }) {
  const [publishing, setPublishing] = useState(false);
  const action = useAction();
  const unpublish = () => action.run(async () => {
    await training("DELETE", `/projects/${project.id}/iterations/${iteration.id}/publish`);
    onChanged();
  });
  return html`<section class="panel publish" aria-label="Publish">
    <h3>Prediction endpoint</h3>
    ${iteration.publishName
      ? html`<p>Published as <strong>${iteration.publishName}</strong>.
          <button type="button" onClick=${unpublish} disabled=${action.busy}>Unpublish</button></p>
        <${PredictionExamples} project=${project} domain=${domain} publishName=${iteration.publishName} />`
      : html`<p>Not published. <button type="button" class="primary" onClick=${() => setPublishing(true)}>Publish</button></p>`}
    <${ErrorNote} error=${action.error} />
    ${publishing ? html`<${PublishDialog} project=${project} iteration=${iteration}
      onClose=${() => setPublishing(false)} onPublished=${() => { setPublishing(false); onChanged(); }} />` : null}
  </section>`;
}

function PublishDialog({ project, iteration, onClose, onPublished }) {
  const action = useAction();
  const submit = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const resource = form.get("resource").trim();
    action.run(async () => {
      await training("POST", `/projects/${project.id}/iterations/${iteration.id}/publish`,
        { query: { publishName: form.get("name").trim(), predictionId: resource } });
      localStorage.setItem(RESOURCE, resource);
      onPublished();
    });
  };
  return html`<${Dialog} title="Publish model" onClose=${onClose}>
    <form onSubmit=${submit} class="stack" aria-label="Publish model">
      <label>Model name <input name="name" required value=${iteration.name.replace(/[^A-Za-z0-9_-]/g, "")} /></label>
      <label>Prediction resource ID <input name="resource" required value=${localStorage.getItem(RESOURCE) ?? ""}
        placeholder="the prediction resource id ocv serve printed" /></label>
      <${ErrorNote} error=${action.error} />
      <div class="actions"><button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${action.busy}>Publish</button></div>
    </form>
  <//>`;
}

function PredictionExamples({ project, domain, publishName }) {
  const kind = isDetection(domain) ? "detect" : "classify";
  const imageUrl = predictionUrl(project.id, kind, publishName, "image");
  const urlUrl = predictionUrl(project.id, kind, publishName, "url");
  const curl = `curl -X POST "${imageUrl}" \\\n  -H "Prediction-Key: $PREDICTION_KEY" \\\n  -H "Content-Type: application/octet-stream" \\\n  --data-binary @image.jpg`;
  const python = `from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from msrest.authentication import ApiKeyCredentials

predictor = CustomVisionPredictionClient("${location.origin}", ApiKeyCredentials(in_headers={"Prediction-key": PREDICTION_KEY}))
with open("image.jpg", "rb") as image:
    results = predictor.${kind}_image("${project.id}", "${publishName}", image.read())
for prediction in results.predictions:
    print(prediction.tag_name, f"{prediction.probability:.1%}"${kind === "detect" ? ", prediction.bounding_box" : ""})`;
  return html`<div class="examples">
    <p>Image file: <code class="prediction-url" data-input="image">${imageUrl}</code></p>
    <p>Image URL (JSON body <code>{"Url": "https://…"}</code>): <code class="prediction-url" data-input="url">${urlUrl}</code></p>
    <p class="muted">Send the resource's prediction key in the Prediction-Key header.</p>
    <${CopyBlock} label="curl" text=${curl} />
    <${CopyBlock} label="Python (azure-cognitiveservices-vision-customvision)" text=${python} />
  </div>`;
}

export function ExportPanel({ project, iteration }) {
  const platforms = iteration.exportableTo?.length ? iteration.exportableTo : Object.keys(FLAVORS);
  const [platform, setPlatform] = useState(platforms[0]);
  const [flavor, setFlavor] = useState("");
  const path = `/projects/${project.id}/iterations/${iteration.id}/export`;
  const exports = useLoad(() => training("GET", path), [iteration.id]);
  const action = useAction();
  const pending = (exports.data ?? []).some((e) => e.status === "Exporting");
  useEffect(() => {
    if (!pending) return undefined;
    const timer = setTimeout(exports.reload, 2000);
    return () => clearTimeout(timer);
  }, [exports.data]);
  const start = (event) => {
    event.preventDefault();
    action.run(async () => {
      await training("POST", path, { query: { platform, flavor: flavor || undefined } });
      exports.reload();
    });
  };
  return html`<section class="panel export" aria-label="Export">
    <h3>Export</h3>
    <form onSubmit=${start} class="row" aria-label="Export model">
      <label>Platform <select value=${platform} onChange=${(e) => { setPlatform(e.target.value); setFlavor(""); }}>
        ${platforms.map((p) => html`<option value=${p}>${p}</option>`)}</select></label>
      ${FLAVORS[platform]?.length ? html`<label>Flavor <select value=${flavor} onChange=${(e) => setFlavor(e.target.value)}>
        <option value="">default</option>${FLAVORS[platform].map((f) => html`<option value=${f}>${f}</option>`)}</select></label>` : null}
      <button type="submit" disabled=${action.busy}>Export</button>
    </form>
    <${ErrorNote} error=${action.error ?? exports.error} />
    ${exports.data?.length ? html`<table aria-label="Exports"><thead><tr><th>Platform</th><th>Flavor</th><th>Status</th><th>Download</th></tr></thead>
      <tbody>${exports.data.map((e, index) => html`<tr key=${index}><td>${e.platform}</td><td>${e.flavor ?? "default"}</td>
        <td class=${`status ${e.status}`}>${e.status}${e.newerVersionAvailable ? " (a newer version can be exported)" : ""}</td>
        <td>${e.status === "Done" && e.downloadUri ? html`<a href=${e.downloadUri} class="download" download>Download</a>` : "–"}</td></tr>`)}</tbody></table>`
      : exports.data ? html`<p class="muted">No exports of this iteration yet.</p>` : null}
  </section>`;
}
