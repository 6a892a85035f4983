// One image, large: its tags (classification) or its regions drawn with the mouse (object detection),
// region proposals and the smart labeler's suggestions to accept or reject, next / previous by keyboard.

import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { training } from "./api.js";
import { BoxOverlay, Confirm, Dialog, ErrorNote, html, isDetection, loadAnnotorious, percent, useAction, useKeys, useLoad } from "./ui.js";

const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#808000"];
export const colourOf = (tags, tagId) => COLOURS[Math.max(0, tags.findIndex((t) => t.id === tagId)) % COLOURS.length];
const SUGGESTION_FLOOR = 0.3;
const PROPOSALS_SHOWN = 8;

// The smart labeler (SuggestTagsAndRegions) answers for untagged images only, as on Azure.
async function latestCompletedIteration(projectId) {
  const iterations = await training("GET", `/projects/${projectId}/iterations`);
  return iterations.filter((it) => it.status === "Completed").sort((a, b) => (a.created < b.created ? 1 : -1))[0] ?? null;
}

const clamp = (value) => Math.min(1, Math.max(0, value));

function boxOfAnnotation(annotation, image) {
  const { x, y, w, h } = annotation.target.selector.geometry;
  const left = clamp(x / image.naturalWidth);
  const top = clamp(y / image.naturalHeight);
  return { left, top, width: clamp((x + w) / image.naturalWidth) - left, height: clamp((y + h) / image.naturalHeight) - top };
}

function annotationOfBox(id, box, image) {
  const x = box.left * image.naturalWidth;
  const y = box.top * image.naturalHeight;
  const w = box.width * image.naturalWidth;
  const h = box.height * image.naturalHeight;
  return { id, bodies: [], target: { annotation: id, selector: { type: "RECTANGLE", geometry: {
    x, y, w, h, bounds: { minX: x, minY: y, maxX: x + w, maxY: y + h } } } } };
}

export function ImageDetail({ project, domain, image: listed, tags, position, onPrevious, onNext, onChanged, onClose }) {
  const loaded = useLoad(async () => (await training("GET", `/projects/${project.id}/images/id`, { query: { imageIds: [listed.id] } }))[0], [listed.id]);
  const iteration = useLoad(() => latestCompletedIteration(project.id), [project.id]);
  const [deleting, setDeleting] = useState(false);
  useKeys((event) => {
    if ((event.key === "ArrowRight" || event.key === "n") && onNext) { event.preventDefault(); onNext(); }
    if ((event.key === "ArrowLeft" || event.key === "p") && onPrevious) { event.preventDefault(); onPrevious(); }
  });
  const image = loaded.data;
  return html`<${Dialog} title=${`Image ${position ?? ""}`} onClose=${onClose} wide>
    <div class="detail">
      <${ErrorNote} error=${loaded.error} />
      ${loaded.data === undefined && !loaded.error ? html`<p class="loading">Loading image…</p>` : null}
      ${image === null ? html`<p class="error">This image no longer exists.</p>` : null}
      ${image ? (isDetection(domain)
        ? html`<${RegionEditor} key=${image.id} project=${project} image=${image} tags=${tags} iteration=${iteration.data}
            onChanged=${() => { onChanged(); loaded.reload(); }} />`
        : html`<${TagEditor} key=${image.id} project=${project} image=${image} tags=${tags} iteration=${iteration.data}
            onChanged=${() => { onChanged(); loaded.reload(); }} />`) : null}
      <div class="actions detail-nav">
        <button type="button" disabled=${!onPrevious} onClick=${onPrevious} aria-keyshortcuts="ArrowLeft">Previous (←)</button>
        <button type="button" disabled=${!onNext} onClick=${onNext} aria-keyshortcuts="ArrowRight">Next (→)</button>
        ${image ? html`<a href=${image.originalImageUri} target="_blank" rel="noopener">Original file</a>` : null}
        <button type="button" class="danger" disabled=${!image} onClick=${() => setDeleting(true)}>Delete image</button>
      </div>
    </div>
    ${deleting ? html`<${Confirm} title="Delete image" confirmLabel="Delete image" message="Delete this image from the project?"
      onConfirm=${async () => { await training("DELETE", `/projects/${project.id}/images`, { query: { imageIds: [image.id] } }); onChanged(); onClose(); }}
      onClose=${() => setDeleting(false)} />` : null}
  <//>`;
}

function useSuggestions(project, image, iteration) {
  const action = useAction();
  const [suggested, setSuggested] = useState(null);
  const suggest = () => action.run(async () => {
    const [found] = await training("POST", `/projects/${project.id}/tagsandregions/suggestions`,
      { query: { iterationId: iteration.id, imageIds: [image.id] } });
    setSuggested((found?.predictions ?? []).filter((p) => p.probability >= SUGGESTION_FLOOR));
  });
  const dismiss = (prediction) => setSuggested((list) => list.filter((p) => p !== prediction));
  return { action, suggested, suggest, dismiss };
}

function TagEditor({ project, image, tags, iteration, onChanged }) {
  const action = useAction();
  const smart = useSuggestions(project, image, iteration);
  const own = new Set((image.tags ?? []).map((t) => t.tagId));
  const add = (tagId) => action.run(async () => {
    await training("POST", `/projects/${project.id}/images/tags`, { json: { tags: [{ imageId: image.id, tagId }] } });
    onChanged();
  });
  const remove = (tagId) => action.run(async () => {
    await training("DELETE", `/projects/${project.id}/images/tags`, { query: { imageIds: [image.id], tagIds: [tagId] } });
    onChanged();
  });
  return html`<div class="detail-body">
    <div class="detail-image"><img src=${image.resizedImageUri} alt="The image, large" /></div>
    <div class="detail-side">
      <h3>Tags</h3>
      <ul class="chips" aria-label="Tags of this image">
        ${(image.tags ?? []).map((t) => html`<li key=${t.tagId} class="chip">${t.tagName}
          <button type="button" class="icon" aria-label=${`Remove tag ${t.tagName}`} onClick=${() => remove(t.tagId)}>×</button></li>`)}
        ${(image.tags ?? []).length ? null : html`<li class="muted">untagged</li>`}
      </ul>
      <label>Add tag <select aria-label="Add tag" onChange=${(e) => { if (e.target.value) add(e.target.value); e.target.value = ""; }}>
        <option value="">choose…</option>
        ${tags.filter((t) => !own.has(t.id)).map((t) => html`<option value=${t.id}>${t.name}</option>`)}
      </select></label>
      <${ErrorNote} error=${action.error} />
      ${iteration && !own.size ? html`<h3>Smart labeler</h3>
        <button type="button" onClick=${smart.suggest} disabled=${smart.action.busy}>Suggest tags (${iteration.name})</button>
        <${ErrorNote} error=${smart.action.error} />
        ${smart.suggested ? html`<ul class="suggestions" aria-label="Suggested tags">
          ${smart.suggested.length ? null : html`<li class="muted">No tag above ${percent(SUGGESTION_FLOOR)}.</li>`}
          ${smart.suggested.map((p) => html`<li key=${p.tagId}>${p.tagName} <span class="muted">${percent(p.probability)}</span>
            <button type="button" disabled=${own.has(p.tagId)} onClick=${() => { add(p.tagId); smart.dismiss(p); }}>Accept</button>
            <button type="button" onClick=${() => smart.dismiss(p)}>Reject</button></li>`)}
        </ul>` : null}` : null}
    </div>
  </div>`;
}

function RegionEditor({ project, image, tags, iteration, onChanged }) {
  const holder = useRef(null);
  const annotator = useRef(null);
  const picture = useRef(null);
  const regions = useRef(new Map());  // annotation id -> {regionId, tagId}
  const creating = useRef(new Map());  // annotation id -> the promise of its region id, while the API creates it
  const [currentTag, setCurrentTag] = useState(tags[0]?.id ?? "");
  const current = useRef(currentTag);
  current.current = currentTag;
  const [version, setVersion] = useState(0);
  const [selectedId, setSelectedId] = useState(null);
  const [proposals, setProposals] = useState(null);
  const action = useAction();
  const smart = useSuggestions(project, image, iteration);
  const proposing = useAction();
  const changed = useCallback(() => {
    setVersion((v) => v + 1);
    annotator.current?.setStyle(styleOf);
    onChanged();
  }, [onChanged]);
  const styleOf = (annotation) => {
    const colour = colourOf(tags, regions.current.get(annotation.id)?.tagId);
    return { stroke: colour, strokeWidth: 2, fill: colour, fillOpacity: 0.12 };
  };

  const createRegion = async (box, tagId) => {
    const summary = await training("POST", `/projects/${project.id}/images/regions`,
      { json: { regions: [{ imageId: image.id, tagId, ...box }] } });
    if (!summary.created?.length) throw { code: "BadRequest", message: summary.exceeded?.length ? "This image holds as many regions as it may." : "This region exists already." };
    return summary.created[0].regionId;
  };
  const deleteRegion = (regionId) => training("DELETE", `/projects/${project.id}/images/regions`, { query: { regionIds: [regionId] } });

  useEffect(() => {
    let disposed = false;
    const element = document.createElement("img");
    element.src = image.resizedImageUri;
    element.alt = "The image: drag on it to draw a region";
    element.className = "labeler-image";
    holder.current.append(element);
    picture.current = element;
    const start = async () => {
      const Annotorious = await loadAnnotorious();
      await element.decode().catch(() => {});
      if (disposed) return;
      const anno = Annotorious.createImageAnnotator(element, { autoSave: true, drawingEnabled: true, style: styleOf });
      annotator.current = anno;
      regions.current = new Map((image.regions ?? []).map((r) => [r.regionId, { regionId: r.regionId, tagId: r.tagId }]));
      anno.setAnnotations((image.regions ?? []).map((r) => annotationOfBox(r.regionId, r, element)));
      anno.on("createAnnotation", (annotation) => action.run(async () => {
        const tagId = current.current;
        const created = tagId ? createRegion(boxOfAnnotation(annotation, element), tagId)
          : Promise.reject({ code: "BadRequest", message: "Add a tag first (in the sidebar), then draw its regions." });
        creating.current.set(annotation.id, created);
        try {
          regions.current.set(annotation.id, { regionId: await created, tagId });
        } catch (error) {
          anno.removeAnnotation(annotation.id);
          throw error;
        } finally {
          creating.current.delete(annotation.id);
        }
        changed();
      }));
      anno.on("updateAnnotation", (annotation) => action.run(async () => {
        const known = regions.current.get(annotation.id);
        if (!known) return;
        // The API has no region update: the moved box is created first, so a failure loses nothing.
        const regionId = await createRegion(boxOfAnnotation(annotation, element), known.tagId);
        await deleteRegion(known.regionId);
        regions.current.set(annotation.id, { regionId, tagId: known.tagId });
        changed();
      }));
      anno.on("deleteAnnotation", (annotation) => action.run(async () => {
        // A box deleted while the API still creates its region goes once the region exists (or fails to).
        await creating.current.get(annotation.id)?.catch(() => {});
        const known = regions.current.get(annotation.id);
        if (!known) return;
        regions.current.delete(annotation.id);
        await deleteRegion(known.regionId);
        changed();
      }));
      anno.on("selectionChanged", (selected) => setSelectedId(selected[0]?.id ?? null));
      setVersion((v) => v + 1);
    };
    start().catch((error) => action.setError({ code: "Portal", message: String(error.message ?? error) }));
    return () => {
      disposed = true;
      annotator.current?.destroy();
      annotator.current = null;
      holder.current?.replaceChildren();
    };
  }, [image.id]);

  const accept = (box, tagId) => action.run(async () => {
    const regionId = await createRegion(box, tagId);
    regions.current.set(regionId, { regionId, tagId });
    annotator.current.addAnnotation(annotationOfBox(regionId, box, picture.current));
    changed();
  });
  const retag = (annotationId, tagId) => action.run(async () => {
    const known = regions.current.get(annotationId);
    const box = boxOfAnnotation(annotator.current.getAnnotationById(annotationId), picture.current);
    const regionId = await createRegion(box, tagId);
    await deleteRegion(known.regionId);
    regions.current.set(annotationId, { regionId, tagId });
    changed();
  });
  const remove = (annotationId) => annotator.current?.removeAnnotation(annotationId);
  const propose = () => proposing.run(async () => {
    const found = await training("POST", `/projects/${project.id}/images/${image.id}/regionproposals`);
    setProposals(found.proposals.slice(0, PROPOSALS_SHOWN));
  });
  useKeys((event) => {
    if ((event.key === "Delete" || event.key === "Backspace") && selectedId) { event.preventDefault(); remove(selectedId); }
    const digit = Number(event.key);
    if (digit >= 1 && digit <= tags.length) setCurrentTag(tags[digit - 1].id);
  });

  const listed = annotator.current ? [...regions.current.entries()].map(([annotationId, known]) => ({ annotationId, ...known })) : [];
  const overlay = [
    ...(proposals ?? []).map((p, index) => ({ ...p.boundingBox, kind: "proposal", label: `${index + 1}` })),
    ...(smart.suggested ?? []).map((p) => ({ ...p.boundingBox, kind: "suggestion", label: `${p.tagName} ${percent(p.probability)}` })),
  ];
  return html`<div class="detail-body" data-version=${version}>
    <div class="detail-image">
      <div class="labeler" data-image-id=${image.id} data-ready=${annotator.current ? "true" : "false"}>
        <div ref=${holder} class="labeler-holder"></div>
        <${BoxOverlay} boxes=${overlay} />
      </div>
      <p class="muted">Drag on the image to draw a region of the current tag; click a region to move or resize it.
        Keys: 1–9 choose the tag, Delete removes the selected region, ← → previous / next image, Ctrl+Z undo.</p>
    </div>
    <div class="detail-side">
      <label>Current tag <select value=${currentTag} onChange=${(e) => setCurrentTag(e.target.value)} aria-label="Current tag">
        ${tags.length ? null : html`<option value="">no tags yet</option>`}
        ${tags.map((t, i) => html`<option value=${t.id}>${i < 9 ? `${i + 1}. ` : ""}${t.name}</option>`)}
      </select></label>
      <h3>Regions</h3>
      <ul class="regions" aria-label="Regions of this image">
        ${listed.length ? null : html`<li class="muted">none yet</li>`}
        ${listed.map((r) => html`<li key=${r.annotationId} class=${selectedId === r.annotationId ? "selected" : ""}>
          <span class="swatch" style=${{ background: colourOf(tags, r.tagId) }}></span>
          <select aria-label="Region tag" value=${r.tagId} onChange=${(e) => retag(r.annotationId, e.target.value)}>
            ${tags.map((t) => html`<option value=${t.id}>${t.name}</option>`)}</select>
          <button type="button" onClick=${() => annotator.current.setSelected(r.annotationId)}>Select</button>
          <button type="button" class="icon" aria-label="Delete region" onClick=${() => remove(r.annotationId)}>×</button>
        </li>`)}
      </ul>
      <${ErrorNote} error=${action.error} />
      <h3>Suggestions</h3>
      <button type="button" onClick=${propose} disabled=${proposing.busy}>Region proposals</button>
      ${iteration && !(image.tags ?? []).length ? html` <button type="button" onClick=${smart.suggest} disabled=${smart.action.busy}>Smart labeler (${iteration.name})</button>` : null}
      <${ErrorNote} error=${proposing.error ?? smart.action.error} />
      ${proposals ? html`<ul class="suggestions" aria-label="Region proposals">
        ${proposals.map((p, index) => html`<li key=${index}>#${index + 1} <span class="muted">${percent(p.confidence)}</span>
          <button type="button" disabled=${!currentTag} onClick=${() => { accept(p.boundingBox, currentTag); setProposals(proposals.filter((q) => q !== p)); }}>
            Add as ${tags.find((t) => t.id === currentTag)?.name ?? "…"}</button></li>`)}
      </ul>` : null}
      ${smart.suggested ? html`<ul class="suggestions" aria-label="Suggested regions">
        ${smart.suggested.length ? null : html`<li class="muted">No region above ${percent(SUGGESTION_FLOOR)}.</li>`}
        ${smart.suggested.map((p, index) => html`<li key=${index}>${p.tagName} <span class="muted">${percent(p.probability)}</span>
          <button type="button" onClick=${() => { accept(p.boundingBox, p.tagId); smart.dismiss(p); }}>Accept</button>
          <button type="button" onClick=${() => smart.dismiss(p)}>Reject</button></li>`)}
      </ul>` : null}
    </div>
  </div>`;
}
