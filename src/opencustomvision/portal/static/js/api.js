// The public Training and Prediction APIs, as any client calls them: the portal has no other way in.

const TRAINING = "/customvision/v3.3/training";
const KEY = "ocv.trainingKey";
export const SIGNED_OUT = "ocv:signed-out";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const credentials = {
  get trainingKey() { return sessionStorage.getItem(KEY); },
  signIn(key) { sessionStorage.setItem(KEY, key); },
  signOut() { sessionStorage.removeItem(KEY); },
};

function url(path, query) {
  const target = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    target.searchParams.set(name, Array.isArray(value) ? value.join(",") : String(value));
  }
  return target;
}

async function send(target, init) {
  let response;
  try {
    response = await fetch(target, init);
  } catch (error) {
    throw new ApiError(0, "NetworkError", `The server cannot be reached (${error.message}).`);
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    throw new ApiError(response.status, body?.code ?? `HTTP${response.status}`, body?.message ?? (text || response.statusText));
  }
  return body;
}

/** One Training API call. `json` is sent as the body; answers are parsed JSON (null for 204). */
export function training(method, path, { query, json, key } = {}) {
  const headers = { "Training-Key": key ?? credentials.trainingKey ?? "", Accept: "application/json" };
  const init = { method, headers };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  return send(url(TRAINING + path, query), init).catch((error) => {
    // The signed-in key stopped working (a rotated key, another server): sign the tab out.
    if (key === undefined && error.status === 401) {
      credentials.signOut();
      dispatchEvent(new CustomEvent(SIGNED_OUT, { detail: error }));
    }
    throw error;
  });
}

/** A file as the base64 text ImageFileCreateEntry.contents carries. */
export function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).slice(String(reader.result).indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function quickTestFile(projectId, iterationId, file, store) {
  const form = new FormData();
  form.append("imageData", file);
  const headers = { "Training-Key": credentials.trainingKey ?? "", Accept: "application/json" };
  return send(url(`${TRAINING}/projects/${projectId}/quicktest/image`, { iterationId, store }), { method: "POST", headers, body: form });
}

/** Every page of a listing that takes `take` / `skip`, up to `limit` items. */
export async function allPages(path, query = {}, limit = 10000) {
  const found = [];
  for (let skip = 0; skip < limit; skip += 256) {
    const page = await training("GET", path, { query: { ...query, take: 256, skip } });
    found.push(...page);
    if (page.length < 256) break;
  }
  return found;
}

/** The Prediction API's address for a published iteration, as a user's own code calls it. */
export function predictionUrl(projectId, kind, publishName, input) {
  return `${location.origin}/customvision/v3.0/Prediction/${projectId}/${kind}/iterations/${encodeURIComponent(publishName)}/${input}`;
}
