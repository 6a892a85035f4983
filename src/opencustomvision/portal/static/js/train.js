// Train: Quick (Regular) or Advanced with a budget; then the iteration's live status.

import { useEffect, useState } from "preact/hooks";
import { training } from "./api.js";
import { Dialog, ErrorNote, go, html, useAction } from "./ui.js";

export function TrainButton({ project, domain }) {
  const [open, setOpen] = useState(false);
  return html`<div>
    <button type="button" class="primary" onClick=${() => setOpen(true)}>Train</button>
    ${open ? html`<${TrainDialog} project=${project} domain=${domain} onClose=${() => setOpen(false)} />` : null}
  </div>`;
}

function TrainDialog({ project, onClose }) {
  const [type, setType] = useState("Regular");
  const action = useAction();
  const submit = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    action.run(async () => {
      const iteration = await training("POST", `/projects/${project.id}/train`, { query: {
        trainingType: type,
        reservedBudgetInHours: type === "Advanced" ? form.get("budget") : undefined,
        notificationEmailAddress: form.get("email") || undefined,
      } });
      onClose();
      go("projects", project.id, "performance", iteration.id);
    });
  };
  return html`<${Dialog} title="Choose a training type" onClose=${onClose}>
    <form onSubmit=${submit} class="stack" aria-label="Train">
      <fieldset><legend>Training type</legend>
        <label class="inline"><input type="radio" name="type" checked=${type === "Regular"} onChange=${() => setType("Regular")} />
          Quick training</label>
        <label class="inline"><input type="radio" name="type" checked=${type === "Advanced"} onChange=${() => setType("Advanced")} />
          Advanced training (fine-tunes the backbone; the server must enable it)</label>
      </fieldset>
      ${type === "Advanced" ? html`<label>Training budget (hours) <input name="budget" type="number" min="1" max="96" value="1" /></label>` : null}
      <label>Email me when training ends (optional) <input name="email" type="email" autocomplete="email" /></label>
      <${ErrorNote} error=${action.error} />
      <div class="actions"><button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${action.busy}>Train</button></div>
    </form>
  <//>`;
}

const clock = (seconds) => `${Math.floor(seconds / 60)}:${String(Math.floor(seconds % 60)).padStart(2, "0")}`;

/** While an iteration trains: its status from GetIteration every two seconds, and the time it has taken. */
export function TrainingStatus({ project, iteration, onDone }) {
  const [now, setNow] = useState(Date.now());
  const [error, setError] = useState(null);
  useEffect(() => {
    const tick = setInterval(() => setNow(Date.now()), 1000);
    const poll = setInterval(async () => {
      try {
        const latest = await training("GET", `/projects/${project.id}/iterations/${iteration.id}`);
        setError(null);
        if (latest.status !== "Training") onDone(latest);
      } catch (caught) {
        setError(caught);
      }
    }, 2000);
    return () => { clearInterval(tick); clearInterval(poll); };
  }, [iteration.id]);
  const elapsed = Math.max(0, (now - Date.parse(iteration.created)) / 1000);
  return html`<div class="training-status" role="status">
    <progress aria-label="Training"></progress>
    <p><strong>${iteration.name}</strong> is training (${iteration.trainingType}) — ${clock(elapsed)} so far.
      The worker embeds each image, fits the classifier and cross-validates it; this page updates when it finishes.</p>
    <${ErrorNote} error=${error} />
  </div>`;
}
