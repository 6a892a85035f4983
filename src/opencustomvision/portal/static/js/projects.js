// Projects: list with thumbnails and image counts, create, edit, delete.

import { useState } from "preact/hooks";
import { training } from "./api.js";
import { Confirm, Dialog, ErrorNote, go, html, useAction, useLoad } from "./ui.js";

async function projectCards() {
  const projects = await training("GET", "/projects");
  return Promise.all(projects.map(async (project) => {
    const [count, first] = await Promise.all([
      training("GET", `/projects/${project.id}/images/count`),
      training("GET", `/projects/${project.id}/images`, { query: { take: 1 } }),
    ]);
    return { project, count, thumbnail: first[0]?.thumbnailUri };
  }));
}

export function ProjectsPage() {
  const listing = useLoad(projectCards, []);
  // Apart from the cards (two requests a project), so that the new-project form has its domains at once.
  const domainList = useLoad(() => training("GET", "/domains"), []);
  const [editing, setEditing] = useState(null);  // null, "new", or a project
  const [deleting, setDeleting] = useState(null);
  const domains = domainList.data;
  const cards = (listing.data ?? []).map((card) => ({ ...card, domain: domains?.find((d) => d.id === card.project.settings.domainId) }));
  return html`<main class="projects">
    <header class="page-head"><h1>Projects</h1>
      <button type="button" class="primary" onClick=${() => setEditing("new")}>New project</button></header>
    <${ErrorNote} error=${listing.error ?? domainList.error} />
    ${listing.loading && !listing.data ? html`<p class="loading">Loading projects…</p>` : null}
    ${listing.data && cards.length === 0 ? html`<p class="empty">No projects yet. Create one to start.</p>` : null}
    <ul class="cards">
      ${cards.map(({ project, count, thumbnail, domain }) => html`<li key=${project.id} class="card project-card">
        <a href=${`#/projects/${project.id}/images`} class="card-link">
          ${thumbnail ? html`<img src=${thumbnail} alt="" loading="lazy" />` : html`<div class="no-thumb">no images</div>`}
          <h2>${project.name}</h2></a>
        <p class="muted">${domain?.type === "ObjectDetection" ? "Object detection" : project.settings.classificationType} · ${domain?.name ?? "?"}</p>
        <p><span class="count">${count}</span> images</p>
        ${project.description ? html`<p class="description">${project.description}</p>` : null}
        <div class="actions">
          <button type="button" onClick=${() => setEditing(project)}>Edit</button>
          <button type="button" class="danger" onClick=${() => setDeleting({ project, count })}>Delete</button>
        </div>
      </li>`)}
    </ul>
    ${editing ? html`<${ProjectForm} project=${editing === "new" ? null : editing} domains=${domains}
      onClose=${() => setEditing(null)} onSaved=${(saved) => { setEditing(null); editing === "new" ? go("projects", saved.id, "images") : listing.reload(); }} />` : null}
    ${deleting ? html`<${Confirm} title="Delete project" confirmLabel="Delete project"
      message=${`Delete "${deleting.project.name}" with its ${deleting.count} images, tags and iterations? This cannot be undone.`}
      onConfirm=${async () => { await training("DELETE", `/projects/${deleting.project.id}`); listing.reload(); }}
      onClose=${() => setDeleting(null)} />` : null}
  </main>`;
}

function ProjectForm({ project, domains: loaded, onClose, onSaved }) {
  const domains = loaded ?? [];  // undefined while GetDomains is on its way: nothing to submit yet
  const current = domains.find((d) => d.id === project?.settings.domainId);
  const [chosenType, setType] = useState(null);
  const type = chosenType ?? current?.type ?? "Classification";
  const [domainId, setDomainId] = useState(project?.settings.domainId ?? "");
  const [name, setName] = useState(project?.name ?? "");
  const [description, setDescription] = useState(project?.description ?? "");
  const action = useAction();
  const choices = domains.filter((d) => d.type === type && d.enabled);
  const chosen = choices.find((d) => d.id === domainId) ?? choices.find((d) => d.name.startsWith("General")) ?? choices[0];
  const submit = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const classificationType = type === "Classification" ? form.get("classificationType") : undefined;
    action.run(async () => {
      const saved = project
        ? await training("PATCH", `/projects/${project.id}`, { json: {
          name: form.get("name"), description: form.get("description"),
          settings: { domainId: form.get("domainId"), ...(classificationType ? { classificationType } : {}) } } })
        : await training("POST", "/projects", { query: {
          name: form.get("name"), description: form.get("description"), domainId: form.get("domainId"), classificationType } });
      onSaved(saved);
    });
  };
  return html`<${Dialog} title=${project ? "Edit project" : "New project"} onClose=${onClose}>
    <form onSubmit=${submit} class="stack" aria-label=${project ? "Edit project" : "New project"}>
      <label>Name <input name="name" required value=${name} onInput=${(e) => setName(e.target.value)} /></label>
      <label>Description <textarea name="description" rows="2" value=${description} onInput=${(e) => setDescription(e.target.value)}></textarea></label>
      <fieldset><legend>Project type</legend>
        ${["Classification", "ObjectDetection"].map((value) => html`<label class="inline">
          <input type="radio" name="projectType" value=${value} checked=${type === value} onChange=${() => setType(value)} />
          ${value === "ObjectDetection" ? "Object detection" : "Classification"}</label>`)}
      </fieldset>
      ${type === "Classification" ? html`<fieldset><legend>Classification type</legend>
        ${[["Multiclass", "Multiclass (one tag per image)"], ["Multilabel", "Multilabel (several tags per image)"]].map(([value, label]) => html`<label class="inline">
          <input type="radio" name="classificationType" value=${value}
            checked=${(project?.settings.classificationType ?? "Multiclass") === value} /> ${label}</label>`)}
      </fieldset>` : null}
      <label>Domain <select name="domainId" value=${chosen?.id} onChange=${(e) => setDomainId(e.target.value)}>
        ${loaded ? null : html`<option value="">loading the domains…</option>`}
        ${choices.map((d) => html`<option value=${d.id}>${d.name}${d.exportable ? " (exportable)" : ""}</option>`)}
      </select></label>
      <${ErrorNote} error=${action.error} />
      <div class="actions"><button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${action.busy || !chosen}>${project ? "Save" : "Create project"}</button></div>
    </form>
  <//>`;
}
