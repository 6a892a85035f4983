// The portal's shell: sign-in, the hash router, the project's tabs.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, SIGNED_OUT, credentials, training } from "./api.js";
import { ErrorNote, go, html, lazy, useAction, useLoad } from "./ui.js";
import { ProjectsPage } from "./projects.js";
import { ImagesPage } from "./images.js";
import { TrainButton } from "./train.js";

const PerformancePage = lazy(() => import("./performance.js").then((module) => module.PerformancePage));
const QuickTestPage = lazy(() => import("./quicktest.js").then((module) => module.QuickTestPage));
const PredictionsPage = lazy(() => import("./predictions.js").then((module) => module.PredictionsPage));

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
}

function SignIn({ expired, onSignedIn }) {
  const action = useAction();
  const submit = (event) => {
    event.preventDefault();
    const key = new FormData(event.target).get("key").trim();
    action.run(async () => {
      try {
        await training("GET", "/projects", { key });
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) {
          throw new ApiError(401, error.code, `This training key is not valid here. ${error.message}`);
        }
        throw error;
      }
      credentials.signIn(key);
      onSignedIn();
    });
  };
  return html`<main class="sign-in">
    <h1>OpenCustomVision</h1>
    <form onSubmit=${submit} aria-label="Sign in">
      <label for="training-key">Training key</label>
      <input id="training-key" name="key" type="password" autocomplete="off" required autofocus
        placeholder="the training key ocv serve printed" />
      <button type="submit" class="primary" disabled=${action.busy}>Sign in</button>
      <${ErrorNote} error=${action.error ?? (expired && { code: expired.code, message: `You were signed out: ${expired.message}` })} />
    </form>
    <p class="hint">The key stays in this browser tab's session storage and is sent as the Training-Key header.</p>
  </main>`;
}

const TABS = [
  ["images", "Training images"],
  ["performance", "Performance"],
  ["predictions", "Predictions"],
  ["quicktest", "Quick test"],
];

function ProjectShell({ projectId, tab, rest }) {
  const project = useLoad(() => training("GET", `/projects/${projectId}`), [projectId]);
  const domains = useLoad(() => training("GET", "/domains"), []);
  if (project.error) return html`<main><${ErrorNote} error=${project.error} /><a href="#/">Back to projects</a></main>`;
  if (!project.data || !domains.data) return html`<main><p class="loading">Loading project…</p></main>`;
  const domain = domains.data.find((d) => d.id === project.data.settings.domainId);
  const context = { project: project.data, domain, reloadProject: project.reload };
  const Page = { images: ImagesPage, performance: PerformancePage, predictions: PredictionsPage, quicktest: QuickTestPage }[tab] ?? ImagesPage;
  return html`<main class="project">
    <header class="project-head">
      <div><a href="#/" class="crumb">Projects</a> / <h1>${project.data.name}</h1>
        <span class="muted"> ${domain ? `${domain.type === "ObjectDetection" ? "Object detection" : project.data.settings.classificationType}, ${domain.name}` : ""}</span></div>
      <${TrainButton} project=${project.data} domain=${domain} />
    </header>
    <nav class="tabs" aria-label="Project">
      ${TABS.map(([name, label]) => html`<a href=${`#/projects/${projectId}/${name}`} aria-current=${(tab ?? "images") === name ? "page" : undefined}>${label}</a>`)}
    </nav>
    <${Page} ...${context} rest=${rest} />
  </main>`;
}

function App() {
  const route = useHash();
  const [signedIn, setSignedIn] = useState(Boolean(credentials.trainingKey));
  const signOut = () => { credentials.signOut(); setSignedIn(false); go(); };
  const [expired, setExpired] = useState(null);
  useEffect(() => {
    const ended = (event) => { setExpired(event.detail); setSignedIn(false); };
    addEventListener(SIGNED_OUT, ended);
    return () => removeEventListener(SIGNED_OUT, ended);
  }, []);
  if (!signedIn) return html`<${SignIn} expired=${expired} onSignedIn=${() => { setExpired(null); setSignedIn(true); }} />`;
  const [section, projectId, tab, ...rest] = route;
  return html`<div class="shell">
    <header class="top"><a href="#/" class="brand">OpenCustomVision</a>
      <button type="button" class="link" onClick=${signOut}>Sign out</button></header>
    ${section === "projects" && projectId
      ? html`<${ProjectShell} key=${projectId} projectId=${projectId} tab=${tab} rest=${rest} />`
      : html`<${ProjectsPage} />`}
  </div>`;
}

const root = document.getElementById("app");
root.replaceChildren();
render(html`<${App} />`, root);
