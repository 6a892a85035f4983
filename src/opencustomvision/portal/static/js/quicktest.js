// Quick test: an uploaded file or a URL against a trained iteration; boxes drawn over the image for detection.

import { useEffect, useState } from "preact/hooks";
import { quickTestFile, training } from "./api.js";
import { BoxOverlay, ErrorNote, html, isDetection, percent, useAction, useLoad } from "./ui.js";
import { colourOf } from "./labeler.js";

export function QuickTestPage({ project, domain }) {
  const iterations = useLoad(async () => (await training("GET", `/projects/${project.id}/iterations`))
    .filter((it) => it.status === "Completed").sort((a, b) => (a.created < b.created ? 1 : -1)), [project.id]);
  const tags = useLoad(() => training("GET", `/projects/${project.id}/tags`), [project.id]);
  const [iterationId, setIterationId] = useState("");
  const [store, setStore] = useState(true);
  const [preview, setPreview] = useState(null);
  const [result, setResult] = useState(null);
  const [threshold, setThreshold] = useState(0.3);
  const action = useAction();
  const chosen = iterationId || iterations.data?.[0]?.id;
  useEffect(() => () => preview && URL.revokeObjectURL(preview), [preview]);
  const testFile = (file) => {
    if (!file) return;
    setPreview(URL.createObjectURL(file));
    setResult(null);
    action.run(async () => setResult(await quickTestFile(project.id, chosen, file, store)));
  };
  const testUrl = (event) => {
    event.preventDefault();
    const url = new FormData(event.target).get("url").trim();
    setPreview(null);
    setResult(null);
    action.run(async () => setResult(await training("POST", `/projects/${project.id}/quicktest/url`,
      { query: { iterationId: chosen, store }, json: { url } })));
  };
  const detection = isDetection(domain);
  const predictions = result?.predictions ?? [];
  const shown = detection ? predictions.filter((p) => p.probability >= threshold) : predictions;
  return html`<section class="quick-test">
    <${ErrorNote} error=${iterations.error} />
    ${iterations.data && !iterations.data.length ? html`<p class="empty">Train an iteration first.</p>` : null}
    <div class="row">
      <label>Iteration <select value=${chosen} onChange=${(e) => setIterationId(e.target.value)}>
        ${(iterations.data ?? []).map((it) => html`<option value=${it.id}>${it.name}${it.publishName ? ` (published as ${it.publishName})` : ""}</option>`)}
      </select></label>
      <label class="inline"><input type="checkbox" checked=${store} onChange=${(e) => setStore(e.target.checked)} /> Keep in Predictions</label>
    </div>
    <div class="row">
      <label class="button">Test an image file<input type="file" accept="image/*" class="visually-hidden" aria-label="Image file to test"
        onChange=${(e) => { testFile(e.target.files[0]); e.target.value = ""; }} /></label>
      <form onSubmit=${testUrl} class="row" aria-label="Test an image URL">
        <input name="url" type="url" placeholder="https://… image URL" aria-label="Image URL" required />
        <button type="submit" disabled=${action.busy || !chosen}>Test URL</button>
      </form>
    </div>
    ${action.busy ? html`<p class="loading">Predicting…</p>` : null}
    <${ErrorNote} error=${action.error} />
    ${detection && result ? html`<label>Show boxes above <output>${percent(threshold)}</output>
      <input type="range" min="0" max="1" step="0.01" value=${threshold} aria-label="Box threshold" onInput=${(e) => setThreshold(Number(e.target.value))} /></label>` : null}
    <div class="quick-result">
      ${preview ? html`<div class="labeler"><img src=${preview} alt="The tested image" class="tested" />
        ${detection ? html`<${BoxOverlay} boxes=${shown.map((p) => ({ ...p.boundingBox, kind: "prediction", label: `${p.tagName} ${percent(p.probability)}`, colour: colourOf(tags.data ?? [], p.tagId) }))} />` : null}
      </div>` : null}
      ${result ? html`<table class="predictions" aria-label="Predictions">
        <thead><tr><th>Tag</th><th>Probability</th>${detection ? html`<th>Box (left, top, width, height)</th>` : null}</tr></thead>
        <tbody>${shown.map((p, index) => html`<tr key=${index}><th scope="row">${p.tagName}</th><td>${percent(p.probability)}</td>
          ${detection ? html`<td>${["left", "top", "width", "height"].map((k) => p.boundingBox[k].toFixed(3)).join(", ")}</td>` : null}</tr>`)}</tbody>
      </table>` : null}
    </div>
  </section>`;
}
