// Attachments: an "Attach a file" button in the composer that uploads (POST /files) with a progress
// bar and then sends the file in a message; files in messages shown as an image preview (from the
// thumbnail) and a download button. main.js hooks in with setupAttachments() and renderAttachment().
// File names are user input: they go into the DOM as text only.

import { ApiError } from './api.js';

const previews = new Map(); // file id -> Promise of an object URL (the DOM is redrawn often)

function detailOf(xhr) {
  try {
    const data = JSON.parse(xhr.responseText);
    if (data && typeof data.detail === 'string') return data.detail;
  } catch { /* not JSON */ }
  return `HTTP ${xhr.status}`;
}

function post(api, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${api.base}/files`);
    xhr.setRequestHeader('Authorization', `Bearer ${api.accessToken}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener('load', () => {
      if (xhr.status === 201) resolve(JSON.parse(xhr.responseText));
      else reject(new ApiError(xhr.status, detailOf(xhr)));
    });
    xhr.addEventListener('error', () => reject(new Error('the upload failed: the server cannot be reached')));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

/** Uploads a File (XMLHttpRequest: fetch cannot report upload progress); refreshes the tokens once on 401. */
export async function uploadFile(api, file, onProgress = () => {}) {
  try {
    return await post(api, file, onProgress);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    await api.refresh();
    return post(api, file, onProgress);
  }
}

async function fetchFile(api, fileId) {
  const get = () => fetch(`${api.base}/files/${encodeURIComponent(fileId)}`,
    { headers: { Authorization: `Bearer ${api.accessToken}` } });
  let res = await get();
  if (res.status === 401) {
    await api.refresh();
    res = await get();
  }
  if (!res.ok) throw new ApiError(res.status, res.status === 404 ? 'the file is not available' : `HTTP ${res.status}`);
  return res.blob();
}

function previewOf(api, fileId) {
  if (!previews.has(fileId)) {
    const url = fetchFile(api, fileId).then((blob) => URL.createObjectURL(blob));
    url.catch(() => previews.delete(fileId)); // try again on the next draw
    previews.set(fileId, url);
  }
  return previews.get(fileId);
}

function sizeText(size) {
  if (typeof size !== 'number') return '';
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

/** Whether a message body carries a file. */
export function isAttachment(body) {
  return !!body && typeof body.file === 'string';
}

/** A message's file: an image preview when it has a thumbnail, and a button that downloads it. */
export function renderAttachment(api, body) {
  const name = typeof body.name === 'string' && body.name ? body.name : 'file';
  const box = document.createElement('span');
  box.className = 'attachment';
  if (typeof body.thumbnail === 'string') {
    const img = document.createElement('img');
    img.className = 'preview';
    img.alt = `Preview of ${name}`;
    previewOf(api, body.thumbnail).then((url) => { img.src = url; }, () => { img.alt = `${name}: no preview`; });
    box.append(img);
  }
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'secondary download';
  const size = sizeText(body.size);
  button.textContent = `Download ${name}${size ? ` (${size})` : ''}`;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const url = URL.createObjectURL(await fetchFile(api, body.file));
      const a = document.createElement('a');
      a.href = url;
      a.download = name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      button.textContent = `${name}: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
  box.append(button);
  return box;
}

/**
 * Adds the attach button, its file input and the progress bar to the composer form.
 * @param {{api: object, composer: HTMLFormElement, canSend: () => boolean,
 *          send: (body: object) => void, fail: (message: string) => void}} hooks
 */
export function setupAttachments({ api, composer, canSend, send, fail }) {
  const input = document.createElement('input');
  input.type = 'file';
  input.hidden = true;
  input.id = 'attach-input';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'secondary attach';
  button.textContent = 'Attach';
  button.title = 'Attach a file';
  button.setAttribute('aria-label', 'Attach a file');
  const progress = document.createElement('progress');
  progress.max = 1;
  progress.value = 0;
  progress.hidden = true;
  progress.setAttribute('aria-label', 'Upload progress');
  button.addEventListener('click', () => input.click());
  input.addEventListener('change', async () => {
    const file = input.files && input.files[0];
    input.value = '';
    if (!file || !canSend()) return;
    button.disabled = true;
    progress.value = 0;
    progress.hidden = false;
    try {
      const up = await uploadFile(api, file, (done) => { progress.value = done; });
      progress.value = 1;
      const body = { file: up.file_id, name: file.name.slice(0, 255), size: up.size, content_type: up.content_type };
      if (up.thumbnail) body.thumbnail = up.thumbnail;
      send(body);
    } catch (err) {
      fail(`Not sent: ${file.name}: ${err.message}`);
    } finally {
      button.disabled = false;
      progress.hidden = true;
    }
  });
  composer.prepend(input, button);
  composer.append(progress);
}
