// Training images: the tag sidebar, the paged grid, bulk tagging, upload with per-file results.

import { useEffect, useMemo, useState } from "preact/hooks";
import { base64Of, training } from "./api.js";
import { Confirm, Dialog, ErrorNote, html, isDetection, lazy, useAction, useLoad } from "./ui.js";

const ImageDetail = lazy(() => import("./labeler.js").then((module) => module.ImageDetail));

export const PAGE_SIZE = 48;
// A batch stays well under the API's 64 images and the request body limit; two are in flight at once.
const BATCH_FILES = 32;
const BATCH_BYTES = 24 * 1024 * 1024;
const PARALLEL_BATCHES = 2;

const STATUS_TEXT = {
  OK: "uploaded",
  OKDuplicate: "duplicate: this project already has this image",
  ErrorSource: "refused: the file could not be read",
  ErrorImageFormat: "refused: not an image in a supported format (JPEG, PNG, BMP, GIF)",
  ErrorImageSize: "refused: too large (at most 6 MiB and 10240 pixels a side)",
  ErrorStorage: "refused: the server could not store it",
  ErrorLimitExceed: "refused: the project holds as many images as it may",
  ErrorTagLimitExceed: "refused: too many tags on the image",
  ErrorRegionLimitExceed: "refused: too many regions on the image",
  ErrorNegativeAndRegularTagOnSameImage: "refused: a Negative tag cannot sit beside other tags",
  ErrorUnknown: "refused: the server failed on this file",
};

export const describeStatus = (status) => STATUS_TEXT[status] ?? status;

export function useTags(projectId) {
  return useLoad(() => training("GET", `/projects/${projectId}/tags`), [projectId]);
}

export function ImagesPage({ project, domain }) {
  const tags = useTags(project.id);
  const [filter, setFilter] = useState({ status: "All", tagIds: [] });
  const [page, setPage] = useState(0);
  const [selected, setSelected] = useState(new Set());
  const [opened, setOpened] = useState(null);  // index on the page
  const [uploading, setUploading] = useState(null);  // null or the dropped files
  const [bulk, setBulk] = useState(null);  // "tag" | "untag" | "delete"
  const [dragging, setDragging] = useState(false);
  const query = { taggingStatus: filter.status, tagIds: filter.status === "Untagged" ? [] : filter.tagIds };
  const listing = useLoad(async () => {
    const [images, count] = await Promise.all([
      training("GET", `/projects/${project.id}/images`, { query: { ...query, take: PAGE_SIZE, skip: page * PAGE_SIZE } }),
      training("GET", `/projects/${project.id}/images/count`, { query }),
    ]);
    return { images, count };
  }, [project.id, filter, page]);
  useEffect(() => setSelected(new Set()), [filter, page]);
  const images = listing.data?.images ?? [];
  const count = listing.data?.count ?? 0;
  const pages = Math.max(1, Math.ceil(count / PAGE_SIZE));
  const refresh = () => { listing.reload(); tags.reload(); };
  // An open image refreshes only the tag counts; the grid refreshes when it closes, so an image tagged in the
  // Untagged view stays open.
  const changeFilter = (next) => { setFilter(next); setPage(0); };
  const toggle = (id) => setSelected((previous) => {
    const next = new Set(previous);
    next.has(id) ? next.delete(id) : next.add(id);
    return next;
  });
  const drop = (event) => {
    event.preventDefault();
    setDragging(false);
    if (event.dataTransfer?.files?.length) setUploading([...event.dataTransfer.files]);
  };
  return html`<section class=${`images-page ${dragging ? "dragging" : ""}`}
      onDragOver=${(e) => { e.preventDefault(); setDragging(true); }} onDragLeave=${() => setDragging(false)} onDrop=${drop}>
    <${TagSidebar} project=${project} tags=${tags} filter=${filter} onFilter=${changeFilter} onChanged=${refresh} />
    <div class="images-main">
      <div class="toolbar">
        <button type="button" class="primary" onClick=${() => setUploading([])}>Add images</button>
        <span class="muted">${count} image${count === 1 ? "" : "s"}${selected.size ? `, ${selected.size} selected` : ""}</span>
        <button type="button" onClick=${() => setSelected(selected.size === images.length ? new Set() : new Set(images.map((i) => i.id)))}
          disabled=${!images.length}>${selected.size === images.length && images.length ? "Select none" : "Select page"}</button>
        ${isDetection(domain) ? null : html`
          <button type="button" disabled=${!selected.size} onClick=${() => setBulk("tag")}>Tag selected</button>
          <button type="button" disabled=${!selected.size} onClick=${() => setBulk("untag")}>Untag selected</button>`}
        <button type="button" class="danger" disabled=${!selected.size} onClick=${() => setBulk("delete")}>Delete selected</button>
      </div>
      <${ErrorNote} error=${listing.error} />
      ${listing.data && !images.length ? html`<p class="empty">No images here. Drop files on this page or use "Add images".</p>` : null}
      <ul class="grid" aria-label="Images" aria-busy=${listing.loading ? "true" : "false"}>
        ${images.map((image, index) => html`<li key=${image.id} class=${selected.has(image.id) ? "selected" : ""}>
          <button type="button" class="thumb" onClick=${() => setOpened(index)} aria-label=${`Open image ${index + 1 + page * PAGE_SIZE}`}>
            <img src=${image.thumbnailUri} alt="" width="150" height="150" loading="lazy" decoding="async" />
            <span class="thumb-tags">${isDetection(domain) ? (image.regions?.length ? `${image.regions.length} region${image.regions.length > 1 ? "s" : ""}` : "")
              : (image.tags ?? []).map((t) => t.tagName).join(", ")}</span>
          </button>
          <input type="checkbox" class="pick" aria-label="Select image" checked=${selected.has(image.id)} onChange=${() => toggle(image.id)} />
        </li>`)}
      </ul>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled=${page === 0} onClick=${() => setPage(page - 1)}>Previous</button>
        <span>Page ${page + 1} of ${pages}</span>
        <button type="button" disabled=${page + 1 >= pages} onClick=${() => setPage(page + 1)}>Next</button>
      </nav>
    </div>
    ${opened !== null && images[opened] ? html`<${ImageDetail} project=${project} domain=${domain} image=${images[opened]}
      tags=${tags.data ?? []} position=${`${opened + 1 + page * PAGE_SIZE} of ${count}`}
      onPrevious=${opened > 0 ? () => setOpened(opened - 1) : null}
      onNext=${opened + 1 < images.length ? () => setOpened(opened + 1) : null}
      onChanged=${tags.reload}
      onClose=${() => { setOpened(null); refresh(); }} />` : null}
    ${uploading ? html`<${UploadDialog} project=${project} domain=${domain} tags=${tags.data ?? []} initialFiles=${uploading}
      onClose=${() => { setUploading(null); refresh(); }} />` : null}
    ${bulk === "delete" ? html`<${Confirm} title="Delete images" confirmLabel=${`Delete ${selected.size} images`}
      message=${`Delete the ${selected.size} selected images? Iterations already trained keep them.`}
      onConfirm=${async () => { await training("DELETE", `/projects/${project.id}/images`, { query: { imageIds: [...selected] } }); refresh(); }}
      onClose=${() => setBulk(null)} />` : null}
    ${bulk === "tag" || bulk === "untag" ? html`<${BulkTagDialog} project=${project} tags=${tags.data ?? []} imageIds=${[...selected]}
      remove=${bulk === "untag"} onClose=${() => { setBulk(null); refresh(); }} />` : null}
  </section>`;
}

function TagSidebar({ project, tags, filter, onFilter, onChanged }) {
  const action = useAction();
  const [deleting, setDeleting] = useState(null);
  const addTag = (event) => {
    event.preventDefault();
    const input = event.target.elements.name;
    action.run(async () => {
      await training("POST", `/projects/${project.id}/tags`, { query: { name: input.value.trim() } });
      input.value = "";
      onChanged();
    });
  };
  const toggleTag = (id) => onFilter({
    status: filter.status === "Untagged" ? "All" : filter.status,
    tagIds: filter.tagIds.includes(id) ? filter.tagIds.filter((t) => t !== id) : [...filter.tagIds, id],
  });
  return html`<aside class="sidebar" aria-label="Filter">
    <fieldset><legend>Show</legend>
      ${["All", "Tagged", "Untagged"].map((status) => html`<label class="inline">
        <input type="radio" name="status" checked=${filter.status === status}
          onChange=${() => onFilter({ status, tagIds: status === "Untagged" ? [] : filter.tagIds })} /> ${status}</label>`)}
    </fieldset>
    <h2>Tags</h2>
    <${ErrorNote} error=${tags.error} />
    <ul class="tag-list">
      ${(tags.data ?? []).map((tag) => html`<li key=${tag.id}>
        <label class="inline"><input type="checkbox" checked=${filter.tagIds.includes(tag.id)} onChange=${() => toggleTag(tag.id)} />
          ${tag.name}${tag.type === "Negative" ? " (negative)" : ""} <span class="count">${tag.imageCount}</span></label>
        <button type="button" class="icon" aria-label=${`Delete tag ${tag.name}`} onClick=${() => setDeleting(tag)}>×</button>
      </li>`)}
    </ul>
    <form onSubmit=${addTag} class="row" aria-label="Add tag">
      <input name="name" placeholder="New tag" aria-label="New tag name" required />
      <button type="submit" disabled=${action.busy}>Add</button>
    </form>
    <${ErrorNote} error=${action.error} />
    ${deleting ? html`<${Confirm} title="Delete tag" confirmLabel="Delete tag"
      message=${`Delete the tag "${deleting.name}"? It is removed from its ${deleting.imageCount} images (and their regions).`}
      onConfirm=${async () => { await training("DELETE", `/projects/${project.id}/tags/${deleting.id}`); onFilter({ ...filter, tagIds: filter.tagIds.filter((t) => t !== deleting.id) }); onChanged(); }}
      onClose=${() => setDeleting(null)} />` : null}
  </aside>`;
}

function TagChooser({ tags, chosen, onChange, allowNew, newTags, onNewTags }) {
  return html`<fieldset class="tag-chooser"><legend>Tags</legend>
    ${tags.map((tag) => html`<label class="inline" key=${tag.id}>
      <input type="checkbox" checked=${chosen.includes(tag.id)}
        onChange=${() => onChange(chosen.includes(tag.id) ? chosen.filter((t) => t !== tag.id) : [...chosen, tag.id])} /> ${tag.name}</label>`)}
    ${allowNew ? html`<label>New tags (comma-separated) <input value=${newTags} onInput=${(e) => onNewTags(e.target.value)} /></label>` : null}
  </fieldset>`;
}

async function tagIdsFor(project, tags, chosen, newTags) {
  const names = newTags.split(",").map((n) => n.trim()).filter(Boolean);
  const created = [];
  for (const name of names) {
    const existing = tags.find((t) => t.name.toLowerCase() === name.toLowerCase());
    created.push(existing ? existing.id : (await training("POST", `/projects/${project.id}/tags`, { query: { name } })).id);
  }
  return [...new Set([...chosen, ...created])];
}

function batchesOf(files) {
  const batches = [];
  let current = [];
  let bytes = 0;
  files.forEach((file, index) => {
    if (current.length && (current.length === BATCH_FILES || bytes + file.size > BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(index);
    bytes += file.size;
  });
  if (current.length) batches.push(current);
  return batches;
}

export function UploadDialog({ project, domain, tags, initialFiles, onClose }) {
  const [files, setFiles] = useState(initialFiles);
  const [chosen, setChosen] = useState([]);
  const [newTags, setNewTags] = useState("");
  const [results, setResults] = useState([]);  // per file: {status, text} or undefined while waiting
  const [done, setDone] = useState(0);
  const [running, setRunning] = useState(false);
  const [finished, setFinished] = useState(false);
  const action = useAction();
  const tally = useMemo(() => {
    const counts = { ok: 0, duplicate: 0, refused: 0 };
    results.forEach((r) => { if (r) counts[r.status === "OK" ? "ok" : r.status === "OKDuplicate" ? "duplicate" : "refused"] += 1; });
    return counts;
  }, [results]);

  const upload = () => action.run(async () => {
    setRunning(true);
    setFinished(false);
    const tagIds = isDetection(domain) ? [] : await tagIdsFor(project, tags, chosen, newTags);
    const outcome = new Array(files.length);
    let completed = 0;
    const queue = batchesOf(files);
    const worker = async () => {
      for (let batch = queue.shift(); batch; batch = queue.shift()) {
        try {
          const images = await Promise.all(batch.map(async (index) => ({ name: files[index].name, contents: await base64Of(files[index]) })));
          const summary = await training("POST", `/projects/${project.id}/images/files`, { json: { images, tagIds } });
          summary.images.forEach((result, position) => { outcome[batch[position]] = { status: result.status, text: describeStatus(result.status) }; });
        } catch (error) {
          batch.forEach((index) => { outcome[index] = { status: error.code, text: `refused: ${error.message}` }; });
        }
        completed += batch.length;
        setDone(completed);
        setResults([...outcome]);
      }
    };
    await Promise.all(Array.from({ length: PARALLEL_BATCHES }, worker));
    setRunning(false);
    setFinished(true);
  });

  const pick = (list) => { setFiles([...files, ...list]); setResults([]); setDone(0); setFinished(false); };
  return html`<${Dialog} title="Add images" onClose=${running ? () => {} : onClose} wide>
    <div class="drop-zone" onDragOver=${(e) => e.preventDefault()}
      onDrop=${(e) => { e.preventDefault(); e.stopPropagation(); pick([...e.dataTransfer.files]); }}>
      <p>Drop image files here, or</p>
      <label class="button">Choose files<input type="file" multiple accept="image/*" class="visually-hidden" aria-label="Choose image files"
        onChange=${(e) => { pick([...e.target.files]); e.target.value = ""; }} /></label>
      <p class="muted">${files.length} file${files.length === 1 ? "" : "s"} chosen. JPEG, PNG, BMP or GIF, up to 6 MiB each.</p>
    </div>
    ${isDetection(domain) ? html`<p class="muted">Object detection: draw the regions on each image after the upload.</p>`
      : html`<${TagChooser} tags=${tags} chosen=${chosen} onChange=${setChosen} allowNew newTags=${newTags} onNewTags=${setNewTags} />`}
    <progress max=${files.length || 1} value=${done} aria-label="Upload progress"></progress>
    <p class="upload-tally" aria-live="polite">${done} of ${files.length} processed: ${tally.ok} uploaded, ${tally.duplicate} duplicate${tally.duplicate === 1 ? "" : "s"}, ${tally.refused} refused${finished ? ". Done." : ""}</p>
    <${ErrorNote} error=${action.error} />
    ${results.length ? html`<ol class="upload-results" aria-label="Upload results">
      ${files.map((file, index) => results[index] ? html`<li key=${index} class=${results[index].status === "OK" ? "ok" : results[index].status === "OKDuplicate" ? "duplicate" : "refused"}>
        <span class="file-name">${file.name}</span> <span class="file-status">${results[index].text}</span></li>` : null)}
    </ol>` : null}
    <div class="actions">
      <button type="button" onClick=${onClose} disabled=${running}>${finished ? "Close" : "Cancel"}</button>
      <button type="button" class="primary" disabled=${running || !files.length || finished} onClick=${upload}>
        Upload ${files.length} file${files.length === 1 ? "" : "s"}</button>
    </div>
  <//>`;
}

function BulkTagDialog({ project, tags, imageIds, remove, onClose }) {
  const [chosen, setChosen] = useState([]);
  const [newTags, setNewTags] = useState("");
  const [result, setResult] = useState(null);
  const action = useAction();
  const apply = () => action.run(async () => {
    if (remove) {
      await training("DELETE", `/projects/${project.id}/images/tags`, { query: { imageIds, tagIds: chosen } });
      setResult(`Removed ${chosen.length} tag(s) from ${imageIds.length} images.`);
      return;
    }
    const tagIds = await tagIdsFor(project, tags, chosen, newTags);
    const pairs = imageIds.flatMap((imageId) => tagIds.map((tagId) => ({ imageId, tagId })));
    let created = 0;
    let exceeded = 0;
    for (let start = 0; start < pairs.length; start += 256) {
      const summary = await training("POST", `/projects/${project.id}/images/tags`, { json: { tags: pairs.slice(start, start + 256) } });
      created += summary.created?.length ?? 0;
      exceeded += summary.exceeded?.length ?? 0;
    }
    setResult(`Added ${created} tag(s)${exceeded ? `; ${exceeded} refused (too many tags on the image)` : ""}.`);
  });
  return html`<${Dialog} title=${remove ? "Untag images" : "Tag images"} onClose=${onClose}>
    <p>${imageIds.length} images selected.</p>
    <${TagChooser} tags=${tags} chosen=${chosen} onChange=${setChosen} allowNew=${!remove} newTags=${newTags} onNewTags=${setNewTags} />
    <${ErrorNote} error=${action.error} />
    ${result ? html`<p class="ok" role="status">${result}</p>` : null}
    <div class="actions"><button type="button" onClick=${onClose}>Close</button>
      <button type="button" class="primary" disabled=${action.busy || (!chosen.length && !newTags.trim())} onClick=${apply}>${remove ? "Remove tags" : "Add tags"}</button></div>
  <//>`;
}
