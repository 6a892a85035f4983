// Stored predictions (QueryPredictions): filter by tag, add the images to the training set, delete.

import { useState } from "preact/hooks";
import { training } from "./api.js";
import { BoxOverlay, Confirm, ErrorNote, html, isDetection, percent, useAction, useLoad } from "./ui.js";
import { describeStatus } from "./images.js";

const PAGE = 24;
const REGION_FLOOR = 0.5;

export function PredictionsPage({ project, domain }) {
  const tags = useLoad(() => training("GET", `/projects/${project.id}/tags`), [project.id]);
  const [tagId, setTagId] = useState("");
  const [minimum, setMinimum] = useState(0.5);
  const [results, setResults] = useState([]);
  const [token, setToken] = useState(null);
  const [selected, setSelected] = useState(new Set());
  const [tagAs, setTagAs] = useState("");
  const [report, setReport] = useState(null);
  const [deleting, setDeleting] = useState(false);
  const detection = isDetection(domain);
  const first = { maxCount: PAGE, orderBy: "Newest", tags: tagId ? [{ id: tagId, minThreshold: minimum, maxThreshold: 1 }] : [] };
  const listing = useLoad(async () => {
    const found = await training("POST", `/projects/${project.id}/predictions/query`, { json: first });
    setResults(found.results);
    setToken(found.token);
    setSelected(new Set());
    return found;
  }, [project.id, tagId, minimum]);
  const more = useAction();
  const action = useAction();
  const loadMore = () => more.run(async () => {
    const found = await training("POST", `/projects/${project.id}/predictions/query`, { json: token });
    setResults([...results, ...found.results]);
    setToken(found.token);
  });
  const toggle = (id) => setSelected((previous) => {
    const next = new Set(previous);
    next.has(id) ? next.delete(id) : next.add(id);
    return next;
  });
  const addToTraining = () => action.run(async () => {
    const chosen = results.filter((r) => selected.has(r.id));
    const images = chosen.map((r) => detection
      ? { id: r.id, regions: r.predictions.filter((p) => p.probability >= REGION_FLOOR && (!tagAs || p.tagId === tagAs))
        .map((p) => ({ tagId: p.tagId, ...p.boundingBox })) }
      : { id: r.id, tagIds: [tagAs || r.predictions[0]?.tagId].filter(Boolean) });
    const summary = await training("POST", `/projects/${project.id}/images/predictions`, { json: { images } });
    const counts = {};
    summary.images.forEach((i) => { counts[describeStatus(i.status)] = (counts[describeStatus(i.status)] ?? 0) + 1; });
    setReport(Object.entries(counts).map(([text, n]) => `${n} ${text}`).join("; "));
    setSelected(new Set());
  });
  return html`<section class="predictions-page">
    <div class="toolbar">
      <label>Tag <select value=${tagId} onChange=${(e) => setTagId(e.target.value)}>
        <option value="">any</option>${(tags.data ?? []).map((t) => html`<option value=${t.id}>${t.name}</option>`)}</select></label>
      ${tagId ? html`<label>at least <output>${percent(minimum)}</output>
        <input type="range" min="0" max="1" step="0.05" value=${minimum} aria-label="Minimum probability" onChange=${(e) => setMinimum(Number(e.target.value))} /></label>` : null}
      <span class="muted">${selected.size} selected</span>
      <label>Tag as <select value=${tagAs} onChange=${(e) => setTagAs(e.target.value)} aria-label="Tag as">
        <option value="">${detection ? `its boxes above ${percent(REGION_FLOOR)}` : "its top prediction"}</option>
        ${(tags.data ?? []).map((t) => html`<option value=${t.id}>${t.name}</option>`)}</select></label>
      <button type="button" class="primary" disabled=${!selected.size || action.busy} onClick=${addToTraining}>Add to training images</button>
      <button type="button" class="danger" disabled=${!selected.size} onClick=${() => setDeleting(true)}>Delete</button>
    </div>
    <${ErrorNote} error=${listing.error ?? action.error ?? more.error} />
    ${report ? html`<p class="ok" role="status">Added to training images: ${report}.</p>` : null}
    ${listing.data && !results.length ? html`<p class="empty">No stored predictions${tagId ? " for this tag" : ""}. Quick tests and prediction calls that store land here.</p>` : null}
    <ul class="grid prediction-grid" aria-label="Stored predictions">
      ${results.map((r) => html`<li key=${r.id} class=${selected.has(r.id) ? "selected" : ""}>
        <label class="thumb">
          <span class="labeler"><img src=${r.thumbnailUri} alt="" width="150" height="150" loading="lazy" />
            ${detection ? html`<${BoxOverlay} boxes=${r.predictions.filter((p) => p.probability >= REGION_FLOOR).map((p) => ({ ...p.boundingBox, kind: "prediction" }))} />` : null}</span>
          <span class="thumb-tags">${r.predictions.slice(0, 2).map((p) => `${p.tagName} ${percent(p.probability)}`).join(", ")}</span>
          <input type="checkbox" class="pick" checked=${selected.has(r.id)} onChange=${() => toggle(r.id)} aria-label="Select prediction" />
        </label></li>`)}
    </ul>
    ${token ? html`<button type="button" onClick=${loadMore} disabled=${more.busy}>More</button>` : null}
    ${deleting ? html`<${Confirm} title="Delete predictions" confirmLabel="Delete" message=${`Delete ${selected.size} stored predictions and their images?`}
      onConfirm=${async () => { await training("DELETE", `/projects/${project.id}/predictions`, { query: { ids: [...selected] } }); listing.reload(); }}
      onClose=${() => setDeleting(false)} />` : null}
  </section>`;
}
