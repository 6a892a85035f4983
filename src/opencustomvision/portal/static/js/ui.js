// Shared pieces of the page: the template tag, error notes, dialogs, loading data, lazy libraries.

import { h } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

export const go = (...parts) => { location.hash = "#/" + parts.map(encodeURIComponent).join("/"); };

export const percent = (value) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`);

export const isDetection = (domain) => domain?.type === "ObjectDetection";

/** The API's CustomVisionError, next to what caused it. */
export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert"><strong>${error.code ?? "Error"}</strong>: ${error.message}</p>`;
}

/** Data loaded by `load` whenever `deps` change; `reload` fetches again. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const generation = useRef(0);
  const run = useCallback(async () => {
    const mine = ++generation.current;
    setState((previous) => ({ ...previous, loading: true }));
    try {
      const data = await load();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState({ data: undefined, error, loading: false });
    }
  }, deps);
  useEffect(() => { run(); }, [run]);
  return { ...state, reload: run };
}

/** An action's busy flag and error, so a button can show both. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = useCallback(async (action) => {
    setBusy(true);
    setError(null);
    try {
      return await action();
    } catch (caught) {
      setError(caught);
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run, setError };
}

/** `handler(event)` for every key pressed while the component is shown (the latest handler, not the first). */
export function useKeys(handler) {
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => {
    const listener = (event) => {
      if (["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName) || event.defaultPrevented) return;
      latest.current(event);
    };
    document.addEventListener("keydown", listener);
    return () => document.removeEventListener("keydown", listener);
  }, []);
}

/** A modal <dialog>: Escape and the close button call onClose. */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog.open) dialog.showModal();
    const cancel = (event) => { event.preventDefault(); onClose(); };
    dialog.addEventListener("cancel", cancel);
    return () => dialog.removeEventListener("cancel", cancel);
  }, [onClose]);
  return html`<dialog ref=${ref} class=${wide ? "wide" : ""} aria-label=${title}>
    <header class="dialog-head"><h2>${title}</h2>
      <button type="button" class="icon" aria-label="Close" onClick=${onClose}>×</button></header>
    ${children}
  </dialog>`;
}

export function Confirm({ title, message, confirmLabel, onConfirm, onClose }) {
  const action = useAction();
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <p>${message}</p>
    <${ErrorNote} error=${action.error} />
    <div class="actions">
      <button type="button" onClick=${onClose}>Cancel</button>
      <button type="button" class="danger" disabled=${action.busy}
        onClick=${() => action.run(async () => { await onConfirm(); onClose(); })}>${confirmLabel}</button>
    </div>
  <//>`;
}

const scripts = new Map();

/** A vendored classic script (d3, Plot, Annotorious), loaded the first time a page needs it. */
export function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const element = document.createElement("script");
      element.src = src;
      element.onload = resolve;
      element.onerror = () => reject(new Error(`${src} did not load`));
      document.head.append(element);
    }));
  }
  return scripts.get(src);
}

/** A component whose module loads when it is first shown: the images page, opened first, waits for none of the
 * other pages' code. `load` resolves to the component. */
export function lazy(load) {
  let loaded = null;
  return function Lazy(props) {
    const [found, setFound] = useState(() => loaded);
    const [error, setError] = useState(null);
    useEffect(() => {
      if (found) return;
      load().then((component) => { loaded = component; setFound(() => component); })
        .catch((failure) => setError({ code: "Portal", message: `This part of the portal did not load: ${failure.message ?? failure}` }));
    }, []);
    if (error) return html`<${ErrorNote} error=${error} />`;
    return found ? h(found, props) : html`<p class="loading">Loading…</p>`;
  };
}

export async function loadPlot() {
  await loadScript("/portal/vendor/d3/d3.min.js");
  await loadScript("/portal/vendor/plot/plot.umd.min.js");
  return window.Plot;
}

export async function loadAnnotorious() {
  await loadScript("/portal/vendor/annotorious/annotorious.js");
  return window.Annotorious;
}

/** Text to copy, with a button that copies it. */
export function CopyBlock({ label, text }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      setCopied(false);
    }
  };
  return html`<div class="copy-block">
    <div class="copy-head"><span>${label}</span><button type="button" onClick=${copy}>${copied ? "Copied" : "Copy"}</button></div>
    <pre tabindex="0">${text}</pre>
  </div>`;
}

/** Draws `boxes` ({left, top, width, height, label, kind}) over whatever it is laid on, in normalised units. */
export function BoxOverlay({ boxes, onPick }) {
  return html`<svg class="box-overlay" viewBox="0 0 1 1" preserveAspectRatio="none" aria-hidden=${onPick ? "false" : "true"}>
    ${boxes.map((box, index) => html`<g key=${index} class=${`box ${box.kind ?? ""}`}
        onClick=${onPick ? () => onPick(box) : undefined}>
      <rect x=${box.left} y=${box.top} width=${box.width} height=${box.height} vector-effect="non-scaling-stroke"
        style=${box.colour ? { stroke: box.colour } : undefined} />
    </g>`)}
  </svg>
  <div class="box-labels">
    ${boxes.filter((box) => box.label).map((box, index) => html`<span key=${index} class=${`box-label ${box.kind ?? ""}`}
      style=${{ left: `${100 * box.left}%`, top: `${100 * box.top}%`, ...(box.colour ? { background: box.colour } : {}) }}>${box.label}</span>`)}
  </div>`;
}
