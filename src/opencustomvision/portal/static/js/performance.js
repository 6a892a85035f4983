// Performance of each iteration: the numbers at any threshold (GetIterationPerformance), a precision-recall
// curve, a confusion matrix and the images the model got wrong (GetImagePerformances: out-of-fold predictions).

import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { allPages, training } from "./api.js";
import { Confirm, ErrorNote, go, html, isDetection, loadPlot, percent, useLoad } from "./ui.js";
import { TrainingStatus } from "./train.js";
import { ImageDetail } from "./labeler.js";
import { useTags } from "./images.js";
import { ExportPanel, PublishPanel } from "./publish.js";

const CURVE_THRESHOLDS = [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99];
const WRONG_SHOWN = 48;

const newestFirst = (a, b) => (a.created < b.created ? 1 : -1);

export function PerformancePage({ project, domain, rest }) {
  const iterations = useLoad(async () => (await training("GET", `/projects/${project.id}/iterations`)).sort(newestFirst), [project.id]);
  const list = iterations.data ?? [];
  const chosen = list.find((it) => it.id === rest[0]) ?? list[0];
  return html`<section class="performance-page">
    <aside class="sidebar" aria-label="Iterations">
      <h2>Iterations</h2>
      <${ErrorNote} error=${iterations.error} />
      ${iterations.data && !list.length ? html`<p class="empty">No iteration yet: add tagged images, then Train.</p>` : null}
      <ul class="iteration-list">
        ${list.map((it) => html`<li key=${it.id}><a href=${`#/projects/${project.id}/performance/${it.id}`}
            aria-current=${chosen?.id === it.id ? "page" : undefined}>
          <strong>${it.name}</strong> <span class=${`status ${it.status}`}>${it.status}</span>
          ${it.publishName ? html`<span class="badge">published as ${it.publishName}</span>` : null}
          <span class="muted">${new Date(it.created).toLocaleString()}</span></a></li>`)}
      </ul>
    </aside>
    <div class="performance-main">
      ${chosen ? html`<${IterationView} key=${chosen.id} project=${project} domain=${domain} iteration=${chosen} onChanged=${iterations.reload} />` : null}
    </div>
  </section>`;
}

function IterationView({ project, domain, iteration, onChanged }) {
  const [deleting, setDeleting] = useState(false);
  return html`<div class="iteration">
    <header class="page-head"><h2>${iteration.name}</h2>
      <span class=${`status ${iteration.status}`}>${iteration.status}</span>
      <span class="muted">${iteration.trainingType} training${iteration.trainedAt ? `, finished ${new Date(iteration.trainedAt).toLocaleString()}` : ""}
        ${iteration.trainingTimeInMinutes ? ` (${iteration.trainingTimeInMinutes} min)` : ""}</span>
      <button type="button" class="danger" onClick=${() => setDeleting(true)}>Delete iteration</button></header>
    ${iteration.status === "Training" ? html`<${TrainingStatus} project=${project} iteration=${iteration} onDone=${onChanged} />` : null}
    ${iteration.status === "Failed" ? html`<p class="error" role="alert">Training failed. Check the images and tags, then train again.</p>` : null}
    ${iteration.status === "Completed" ? html`
      <${Metrics} project=${project} domain=${domain} iteration=${iteration} />
      <${PublishPanel} project=${project} domain=${domain} iteration=${iteration} onChanged=${onChanged} />
      <${ExportPanel} project=${project} iteration=${iteration} />` : null}
    ${deleting ? html`<${Confirm} title="Delete iteration" confirmLabel="Delete iteration"
      message=${`Delete ${iteration.name} and its trained model?`}
      onConfirm=${async () => { await training("DELETE", `/projects/${project.id}/iterations/${iteration.id}`); go("projects", project.id, "performance"); onChanged(); }}
      onClose=${() => setDeleting(false)} />` : null}
  </div>`;
}

function useDebounced(value, milliseconds) {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), milliseconds);
    return () => clearTimeout(timer);
  }, [value]);
  return settled;
}

function Metrics({ project, domain, iteration }) {
  const detection = isDetection(domain);
  const [threshold, setThreshold] = useState(0.5);
  const [overlap, setOverlap] = useState(0.3);
  const asked = useDebounced({ threshold, overlap }, 150);
  const base = `/projects/${project.id}/iterations/${iteration.id}`;
  const performance = useLoad(() => training("GET", `${base}/performance`, {
    query: { threshold: asked.threshold, overlapThreshold: detection ? asked.overlap : undefined } }), [iteration.id, asked.threshold, asked.overlap]);
  const curve = useLoad(() => Promise.all(CURVE_THRESHOLDS.map(async (t) => ({ threshold: t, report: await training("GET", `${base}/performance`,
    { query: { threshold: t, overlapThreshold: detection ? asked.overlap : undefined } }) }))), [iteration.id, asked.overlap]);
  const judged = useLoad(() => allPages(`${base}/performance/images`), [iteration.id]);
  const report = performance.data;
  // Each chart is redrawn when its data or the threshold changes, not at every render of the page.
  const drawCurve = useCallback((Plot) => precisionRecallChart(Plot, curve.data, threshold), [curve.data, threshold]);
  const drawMatrix = useCallback((Plot) => confusionChart(Plot, confusion(judged.data, threshold, iteration.classificationType)),
    [judged.data, threshold]);
  return html`<section class="metrics" aria-label="Performance">
    <div class="sliders">
      <label>Probability threshold <output id="threshold-value">${percent(threshold)}</output>
        <input type="range" min="0" max="1" step="0.01" value=${threshold} aria-label="Probability threshold"
          onInput=${(e) => setThreshold(Number(e.target.value))} /></label>
      ${detection ? html`<label>Overlap threshold <output>${percent(overlap)}</output>
        <input type="range" min="0.05" max="0.95" step="0.05" value=${overlap} aria-label="Overlap threshold"
          onInput=${(e) => setOverlap(Number(e.target.value))} /></label>` : null}
    </div>
    <${ErrorNote} error=${performance.error} />
    ${report ? html`<div class="headline" aria-busy=${performance.loading ? "true" : "false"}>
      <div class="figure"><span class="label">Precision</span><span class="value" data-metric="precision">${percent(report.precision)}</span></div>
      <div class="figure"><span class="label">Recall</span><span class="value" data-metric="recall">${percent(report.recall)}</span></div>
      <div class="figure"><span class="label">${detection ? "mAP" : "AP"}</span><span class="value" data-metric="ap">${percent(report.averagePrecision)}</span></div>
    </div>
    <table class="per-tag" aria-label="Performance per tag">
      <thead><tr><th>Tag</th><th>Precision</th><th>Recall</th><th>AP</th></tr></thead>
      <tbody>${report.perTagPerformance.map((tag) => html`<tr key=${tag.id}><th scope="row">${tag.name}</th>
        <td>${percent(tag.precision)}${tag.precisionStdDeviation ? html` <span class="muted">± ${percent(tag.precisionStdDeviation)}</span>` : null}</td>
        <td>${percent(tag.recall)}${tag.recallStdDeviation ? html` <span class="muted">± ${percent(tag.recallStdDeviation)}</span>` : null}</td>
        <td>${percent(tag.averagePrecision)}</td></tr>`)}</tbody>
    </table>` : null}
    <p class="muted">Measured on images the model did not train on (${detection ? "a held-out fifth of the images" : "cross-validation: each image judged by a model trained without it"}).</p>
    <div class="charts">
      <figure><figcaption>Precision–recall curve</figcaption>
        <${ErrorNote} error=${curve.error} />
        ${curve.data ? html`<${Chart} draw=${drawCurve} label="Precision-recall curve" />` : html`<p class="loading">Computing the curve…</p>`}
      </figure>
      ${detection ? null : html`<figure><figcaption>Confusion matrix at ${percent(threshold)}</figcaption>
        <${ErrorNote} error=${judged.error} />
        ${judged.data ? html`<${Chart} draw=${drawMatrix} label="Confusion matrix" />` : null}
      </figure>`}
    </div>
    ${judged.data ? html`<${WrongImages} project=${project} domain=${domain} judged=${judged.data} threshold=${threshold} overlap=${overlap} onRetagged=${judged.reload} />` : null}
  </section>`;
}

/** A Plot chart: `draw(Plot)` returns the SVG (or figure) element, redrawn when `draw` changes. */
function Chart({ draw, label }) {
  const holder = useRef(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let cancelled = false;
    loadPlot().then((Plot) => {
      if (cancelled) return;
      const chart = draw(Plot);
      chart.setAttribute("aria-label", label);
      holder.current.replaceChildren(chart);
    }).catch((caught) => setError({ code: "Portal", message: String(caught.message ?? caught) }));
    return () => { cancelled = true; };
  }, [draw]);
  return html`<div><div ref=${holder} class="chart"></div><${ErrorNote} error=${error} /></div>`;
}

function precisionRecallChart(Plot, curve, threshold) {
  const points = curve.flatMap(({ threshold: t, report }) => [
    { tag: "all tags", threshold: t, precision: report.precision, recall: report.recall },
    ...report.perTagPerformance.map((tag) => ({ tag: tag.name, threshold: t, precision: tag.precision, recall: tag.recall })),
  ]).filter((p) => p.recall > 0);
  const nearest = curve.reduce((best, c) => (Math.abs(c.threshold - threshold) < Math.abs(best.threshold - threshold) ? c : best), curve[0]);
  const marked = points.filter((p) => p.threshold === nearest.threshold && p.tag === "all tags");
  return Plot.plot({
    width: 460, height: 320, grid: true, color: { legend: true },
    x: { domain: [0, 1], label: "Recall", tickFormat: "%" },
    y: { domain: [0, 1], label: "Precision", tickFormat: "%" },
    marks: [
      Plot.line(points, { x: "recall", y: "precision", stroke: "tag", sort: "threshold", marker: "dot" }),
      Plot.dot(marked, { x: "recall", y: "precision", r: 7, stroke: "black", strokeWidth: 2, title: (p) => `threshold ${percent(p.threshold)}` }),
    ],
  });
}

/** Each image's actual tags against the tags predicted at `threshold` (Multiclass: the top tag, if above it). */
function predictedTags(image, threshold, classificationType) {
  const above = image.predictions.filter((p) => p.probability >= threshold);
  return classificationType === "Multilabel" ? above.map((p) => p.tagName) : above.slice(0, 1).map((p) => p.tagName);
}

function confusion(judged, threshold, classificationType) {
  const cells = new Map();
  for (const image of judged) {
    const predicted = predictedTags(image, threshold, classificationType);
    for (const actual of (image.tags ?? []).map((t) => t.tagName)) {
      for (const guess of predicted.length ? predicted : ["(none)"]) {
        const key = `${actual}\u0000${guess}`;
        cells.set(key, (cells.get(key) ?? 0) + 1);
      }
    }
  }
  return [...cells].map(([key, count]) => { const [actual, predicted] = key.split("\u0000"); return { actual, predicted, count }; });
}

function confusionChart(Plot, cells) {
  return Plot.plot({
    width: 460, height: 320, marginLeft: 110, marginBottom: 60, padding: 0.05,
    color: { scheme: "blues", legend: false },
    x: { label: "Predicted", tickRotate: -20 }, y: { label: "Actual" },
    marks: [
      Plot.cell(cells, { x: "predicted", y: "actual", fill: "count", inset: 0.5 }),
      Plot.text(cells, { x: "predicted", y: "actual", text: "count", fill: (d) => (d.count > 0 ? "black" : "gray"), fontSize: 14 }),
    ],
  });
}

function iou(a, b) {
  const x1 = Math.max(a.left, b.left);
  const y1 = Math.max(a.top, b.top);
  const x2 = Math.min(a.left + a.width, b.left + b.width);
  const y2 = Math.min(a.top + a.height, b.top + b.height);
  const inter = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}

/** Detection: boxes above `threshold` left without a region of their tag at `overlap`, and regions left unfound. */
function detectionMistakes(image, threshold, overlap) {
  const unmatched = [...(image.regions ?? [])];
  let falsePositives = 0;
  for (const p of image.predictions.filter((q) => q.probability >= threshold)) {
    const hit = unmatched.findIndex((r) => r.tagId === p.tagId && iou(r, p.boundingBox) >= overlap);
    hit >= 0 ? unmatched.splice(hit, 1) : (falsePositives += 1);
  }
  return { falsePositives, missed: unmatched.length };
}

function WrongImages({ project, domain, judged, threshold, overlap, onRetagged }) {
  const tags = useTags(project.id);
  const [opened, setOpened] = useState(null);
  const detection = isDetection(domain);
  const wrong = useMemo(() => judged.map((image) => {
    if (detection) {
      const { falsePositives, missed } = detectionMistakes(image, threshold, overlap);
      return falsePositives || missed ? { image, note: `${missed} missed, ${falsePositives} false detection${falsePositives === 1 ? "" : "s"}` } : null;
    }
    const actual = (image.tags ?? []).map((t) => t.tagName).sort();
    const predicted = predictedTags(image, threshold, project.settings.classificationType).sort();
    return actual.join() === predicted.join() ? null : {
      image, note: `tagged ${actual.join(", ") || "nothing"}; predicted ${predicted.join(", ") || "nothing"} (${image.predictions.slice(0, 2).map((p) => `${p.tagName} ${percent(p.probability)}`).join(", ")})`,
    };
  }).filter(Boolean), [judged, threshold, overlap]);
  return html`<section class="wrong" aria-label="Images the model got wrong">
    <h3>Images the model got wrong at ${percent(threshold)}: ${wrong.length} of ${judged.length}</h3>
    <ul class="grid wrong-grid">
      ${wrong.slice(0, WRONG_SHOWN).map(({ image, note }, index) => html`<li key=${image.id}>
        <button type="button" class="thumb" onClick=${() => setOpened(index)} aria-label=${`Re-tag: ${note}`}>
          <img src=${image.thumbnailUri} alt="" width="150" height="150" loading="lazy" />
          <span class="thumb-tags">${note}</span></button></li>`)}
    </ul>
    ${wrong.length > WRONG_SHOWN ? html`<p class="muted">${wrong.length - WRONG_SHOWN} more not shown.</p>` : null}
    ${opened !== null && wrong[opened] ? html`<${ImageDetail} project=${project} domain=${domain} image=${wrong[opened].image}
      tags=${tags.data ?? []} position=${`${opened + 1} of ${wrong.length} wrong`}
      onPrevious=${opened > 0 ? () => setOpened(opened - 1) : null}
      onNext=${opened + 1 < wrong.length ? () => setOpened(opened + 1) : null}
      onChanged=${tags.reload} onClose=${() => { setOpened(null); onRetagged(); }} />` : null}
  </section>`;
}
