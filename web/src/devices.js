// The Devices page: the user's devices (online, last seen), one device's latest telemetry with a small
// chart of one field, its shadow (edit the desired state), a command form and jobs. Everything goes
// through the REST API (api.call); all user-provided text goes into the DOM as text, never as HTML.

import { el } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const POLL_MS = 5000;

function when(ts) {
  return ts ? new Date(ts).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' }) : 'never';
}

function messageOf(err) {
  return err && err.message ? err.message : String(err);
}

function parseObject(text, what) {
  let value;
  try {
    value = JSON.parse(text || '{}');
  } catch {
    throw new Error(`${what} is not JSON`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value;
}

/** A small line chart of [{ts, value}] as an SVG (no axes: the first and last values are labelled). */
function chart(points, field) {
  const w = 320;
  const h = 80;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${field}: ${points.length} readings`);
  if (points.length < 2) return svg;
  const ts = points.map((p) => p.ts);
  const vs = points.map((p) => p.value);
  const [t0, t1] = [Math.min(...ts), Math.max(...ts)];
  const [v0, v1] = [Math.min(...vs), Math.max(...vs)];
  const x = (t) => (t1 === t0 ? 0 : ((t - t0) / (t1 - t0)) * (w - 4) + 2);
  const y = (v) => (v1 === v0 ? h / 2 : h - 2 - ((v - v0) / (v1 - v0)) * (h - 4));
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points.map((p) => `${x(p.ts).toFixed(1)},${y(p.value).toFixed(1)}`).join(' '));
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', 'currentColor');
  line.setAttribute('stroke-width', '1.5');
  svg.append(line);
  return svg;
}

export class DevicesPage {
  constructor(api, root) {
    this.api = api;
    this.root = root;
    this.devices = [];
    this.selected = null;
    this.jobs = []; // job ids started from this page, newest first
    this.timer = null;
    this.list = el('ul', { class: 'device-list', 'aria-label': 'Your devices' });
    this.detail = el('div', { class: 'device-detail' });
    this.error = el('p', { class: 'error', role: 'alert' });
    const nameInput = el('input', { id: 'device-name', maxlength: '100', required: true });
    this.created = el('p', { class: 'hint', 'aria-live': 'polite' });
    const addForm = el('form', { class: 'inline-form', onsubmit: (e) => { e.preventDefault(); this.add(nameInput); } },
      el('label', { for: 'device-name', text: 'Register a device' }),
      el('div', { class: 'row' }, nameInput, el('button', { type: 'submit', text: 'Register' })));
    root.replaceChildren(el('h2', { id: 'devices-title', text: 'Devices' }), this.error, addForm, this.created,
      this.list, this.detail);
  }

  show() {
    this.root.hidden = false;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
  }

  hide() {
    this.root.hidden = true;
    clearInterval(this.timer);
    this.timer = null;
  }

  async guard(fn, out = this.error) {
    out.textContent = '';
    try {
      return await fn();
    } catch (err) {
      out.textContent = messageOf(err);
      return undefined;
    }
  }

  async add(input) {
    const name = input.value.trim();
    if (!name) return;
    const made = await this.guard(() => this.api.call('POST', '/devices', { name }));
    if (!made) return;
    input.value = '';
    this.created.textContent = `Device ${made.device_id} registered; its MQTT password (shown once): ${made.secret}`;
    await this.refresh();
  }

  async refresh() {
    const listed = await this.guard(() => this.api.call('GET', '/devices'));
    if (!listed) return;
    const details = await Promise.all(listed.map((d) => this.api.call('GET', `/devices/${encodeURIComponent(d.device_id)}`)
      .catch(() => ({ ...d, online: false, last_seen: null }))));
    this.devices = details;
    this.list.replaceChildren(...details.map((d) => el('li', {},
      el('button', { type: 'button', class: 'device', 'data-device': d.device_id,
        'aria-current': d.device_id === this.selected ? 'true' : null, onclick: () => this.select(d.device_id) },
      el('span', { class: 'name', text: d.name }),
      el('span', { class: `status ${d.online ? 'online' : 'offline'}`,
        text: d.online ? 'online' : `offline, last seen ${when(d.last_seen)}` })))));
    if (!details.length) this.list.replaceChildren(el('li', { class: 'hint', text: 'No devices yet.' }));
  }

  async select(deviceId) {
    this.selected = deviceId;
    await this.refresh();
    const d = this.devices.find((x) => x.device_id === deviceId);
    if (!d) return;
    const path = `/devices/${encodeURIComponent(deviceId)}`;
    const telemetry = el('section', { 'aria-label': 'Latest telemetry' }, el('h3', { text: 'Latest telemetry' }));
    const shadow = el('section', { 'aria-label': 'Shadow' }, el('h3', { text: 'Shadow' }));
    const command = el('section', { 'aria-label': 'Command' }, el('h3', { text: 'Command' }));
    const jobs = el('section', { 'aria-label': 'Jobs' }, el('h3', { text: 'Jobs' }));
    this.detail.replaceChildren(el('h3', { class: 'device-title', text: `${d.name} (${deviceId})` }),
      telemetry, shadow, command, jobs);
    this.renderTelemetry(telemetry, path);
    this.renderShadow(shadow, path);
    this.renderCommand(command, path);
    this.renderJobs(jobs, deviceId);
  }

  async renderTelemetry(box, path) {
    const out = el('p', { class: 'hint', 'aria-live': 'polite' });
    box.append(out);
    let latest;
    try {
      latest = await this.api.call('GET', `${path}/telemetry/latest`);
    } catch (err) {
      out.textContent = err.status === 503 ? 'Telemetry read-back is not available on this server.' : messageOf(err);
      return;
    }
    const fields = Object.keys(latest.fields);
    if (!fields.length) { out.textContent = 'No readings yet.'; return; }
    box.append(el('table', { class: 'telemetry' }, el('tbody', {}, ...fields.map((f) => el('tr', {},
      el('th', { scope: 'row', text: f }), el('td', { text: String(latest.fields[f].value) }),
      el('td', { text: when(latest.fields[f].ts) }))))));
    const select = el('select', { 'aria-label': 'Field to chart' }, ...fields.map((f) => el('option', { value: f, text: f })));
    const plot = el('div', { class: 'chart-box' });
    const draw = async () => {
      const field = select.value;
      const got = await this.guard(() => this.api.call('GET', `${path}/telemetry?field=${encodeURIComponent(field)}`), out);
      if (got) plot.replaceChildren(chart(got.points, field));
    };
    select.addEventListener('change', draw);
    box.append(select, plot);
    draw();
  }

  async renderShadow(box, path) {
    const out = el('p', { class: 'error', role: 'alert' });
    const state = el('pre', { class: 'shadow', 'aria-label': 'Shadow document' });
    const desired = el('textarea', { id: 'shadow-desired', rows: '3', spellcheck: 'false' });
    let version = 0;
    const load = async () => {
      const doc = await this.guard(() => this.api.call('GET', `${path}/shadow`), out);
      if (!doc) return;
      version = doc.version;
      state.textContent = JSON.stringify({ version: doc.version, reported: doc.reported, desired: doc.desired,
        delta: doc.delta }, null, 2);
      desired.value = JSON.stringify(doc.desired);
    };
    const save = async (e) => {
      e.preventDefault();
      await this.guard(async () => {
        await this.api.call('PATCH', `${path}/shadow`, { desired: parseObject(desired.value, 'The desired state'), version });
        await load();
      }, out);
    };
    box.append(state, el('form', { class: 'inline-form', onsubmit: save },
      el('label', { for: 'shadow-desired', text: 'Desired state (JSON; null deletes a key)' }), desired,
      el('div', { class: 'row' }, el('button', { type: 'submit', text: 'Save desired state' }),
        el('button', { type: 'button', class: 'secondary', text: 'Reload shadow', onclick: load }))), out);
    await load();
  }

  renderCommand(box, path) {
    const name = el('input', { id: 'command-name', required: true, value: 'reboot', spellcheck: 'false' });
    const params = el('input', { id: 'command-params', value: '{}', spellcheck: 'false' });
    const out = el('p', { class: 'hint command-result', 'aria-live': 'polite' });
    const send = async (e) => {
      e.preventDefault();
      out.textContent = 'Waiting for the device…';
      const answer = await this.guard(() => this.api.call('POST', `${path}/commands`, {
        name: name.value.trim(), params: parseObject(params.value, 'The params'), timeout_s: 15,
      }), out);
      if (answer) out.textContent = `${answer.status}: ${JSON.stringify(answer.status === 'succeeded' ? answer.result : answer.error)}`;
    };
    box.append(el('form', { class: 'inline-form', onsubmit: send },
      el('label', { for: 'command-name', text: 'Name' }), name,
      el('label', { for: 'command-params', text: 'Params (JSON)' }), params,
      el('button', { type: 'submit', text: 'Send command' })), out);
  }

  renderJobs(box, deviceId) {
    const doc = el('input', { id: 'job-document', value: '{"firmware": "1.1"}', spellcheck: 'false' });
    const out = el('p', { class: 'error', role: 'alert' });
    const list = el('ul', { class: 'job-list', 'aria-label': 'Jobs started here' });
    const show = async () => {
      const views = await Promise.all(this.jobs.map((id) => this.api.call('GET', `/jobs/${encodeURIComponent(id)}`)
        .catch(() => null)));
      list.replaceChildren(...views.filter(Boolean).map((j) => el('li', { 'data-job': j.job_id },
        el('span', { text: `${j.job_id}: ` }),
        el('span', { class: 'counts', text: Object.entries(j.counts).filter(([, n]) => n).map(([s, n]) => `${s} ${n}`)
          .join(', ') || 'no devices' }),
        j.canceled ? el('span', { class: 'kind', text: 'canceled' }) : el('button', {
          type: 'button', class: 'secondary small', text: 'Cancel',
          onclick: () => this.guard(async () => { await this.api.call('POST', `/jobs/${encodeURIComponent(j.job_id)}/cancel`); await show(); }, out),
        }))));
    };
    const start = async (e) => {
      e.preventDefault();
      await this.guard(async () => {
        const made = await this.api.call('POST', '/jobs', { document: parseObject(doc.value, 'The job document'),
          devices: [deviceId] });
        this.jobs.unshift(made.job_id);
        await show();
      }, out);
    };
    box.append(el('form', { class: 'inline-form', onsubmit: start },
      el('label', { for: 'job-document', text: 'Job document (JSON) for this device' }), doc,
      el('div', { class: 'row' }, el('button', { type: 'submit', text: 'Start job' }),
        el('button', { type: 'button', class: 'secondary', text: 'Refresh jobs', onclick: show }))), out, list);
    show();
  }
}
