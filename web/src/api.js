// REST client for the public contract under /api/v1 (docs/contract.md).
// Keeps the tokens, refreshes them before they expire and once more on a 401.

/** How long a tab keeps the refresh lock after storing new tokens: other tabs see the stored value
 * a moment later (localStorage is copied between a browser's processes asynchronously). */
const SETTLE_MS = 300;

/** How long a tab may hold the localStorage lease (``storageLock``) before others take it anyway. */
const LEASE_MS = 10000;

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

function readLease(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null;
  }
}

/** Runs ``fn`` while holding a lease in localStorage: the tabs of a browser take turns where Web Locks
 * are missing (they exist in secure contexts only: HTTPS or localhost). A tab writes its claim, waits
 * for the other tabs' writes to land (SETTLE_MS) and goes on only if the claim is still its own. */
async function storageLock(key, fn) {
  const me = `${Date.now()}-${Math.random()}`;
  for (;;) {
    const held = readLease(key);
    if (!held || held.until < Date.now()) {
      localStorage.setItem(key, JSON.stringify({ owner: me, until: Date.now() + LEASE_MS }));
      await sleep(SETTLE_MS);
      const now = readLease(key);
      if (now && now.owner === me) break;
    }
    await sleep(50 + Math.random() * 100);
  }
  try {
    return await fn();
  } finally {
    const now = readLease(key);
    if (now && now.owner === me) localStorage.removeItem(key);
  }
}

export class ApiError extends Error {
  /** @param {number} status @param {string} detail */
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** Turns FastAPI's error body (a string, or a list of validation errors) into one line. */
function detailOf(body, status) {
  const d = body && body.detail;
  if (typeof d === 'string') return d;
  if (Array.isArray(d) && d.length) {
    return d.map((e) => `${(e.loc || []).slice(1).join('.')}: ${e.msg}`).join('; ');
  }
  return `HTTP ${status}`;
}

export class Api {
  /**
   * @param {string} base  the API's origin and prefix, e.g. "/api/v1"
   * @param {(tokens: object|null) => void} onTokens  called whenever the tokens change (null: signed out)
   * @param {() => object|null} readShared  the tokens the browser's other tabs share (the last stored)
   */
  constructor(base, onTokens, readShared = () => null) {
    this.base = base;
    this.onTokens = onTokens;
    this.readShared = readShared;
    this.tokens = null;
    this.refreshTimer = null;
    this.refreshing = null;
  }

  /** Adopts tokens (from login, refresh or storage) and schedules the next refresh: at 60-80 % of the
   * access token's life, at random, so that tabs sharing the tokens seldom try at the same time. */
  setTokens(tokens) {
    this.tokens = tokens;
    clearTimeout(this.refreshTimer);
    if (tokens && tokens.expires_in) {
      const ms = Math.max(5, tokens.expires_in * (0.6 + 0.2 * Math.random())) * 1000;
      this.refreshTimer = setTimeout(() => this.refresh().catch(() => {}), ms);
    }
    this.onTokens(tokens);
  }

  /** Takes tokens another tab of this browser got, when they are the same user's and newer than ours. */
  adopt(shared) {
    if (shared && this.tokens && shared.user_id === this.tokens.user_id
        && shared.refresh_token !== this.tokens.refresh_token) {
      this.setTokens(shared);
      return true;
    }
    return false;
  }

  get accessToken() {
    return this.tokens ? this.tokens.access_token : null;
  }

  /** Gets new tokens with the refresh token; signs out (onTokens(null)) when it is refused.
   *
   * Refresh tokens rotate: each is spent when used, and using a spent one again ends the login on
   * the server (unless the operator set a grace, ``refresh_reuse_grace``). The tabs of a browser share one
   * login, so they take turns (a Web Lock, where the browser has them, else a lease in localStorage)
   * and a tab whose refresh token another tab already spent adopts that tab's new tokens instead of
   * sending its own. */
  refresh() {
    if (!this.refreshing) {
      const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
      // under the lock: once refreshed, hold it a moment more, until the other tabs see the new tokens
      const locked = async () => {
        const before = this.tokens;
        const t = await this.refreshOnce();
        if (this.tokens !== before && this.tokens === t) await new Promise((r) => { setTimeout(r, SETTLE_MS); });
        return t;
      };
      const run = locks ? locks.request('chatmq:refresh', locked) : storageLock('chatmq:refresh-lease', locked);
      this.refreshing = run.finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async refreshOnce() {
    if (this.adopt(this.readShared())) return this.tokens;
    const token = this.tokens && this.tokens.refresh_token;
    try {
      const t = await this.raw('POST', '/auth/refresh', { refresh_token: token }, false);
      this.setTokens(t);
      return t;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) this.setTokens(null);
      throw e;
    }
  }

  async raw(method, path, body, auth) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth && this.accessToken) headers.Authorization = `Bearer ${this.accessToken}`;
    const res = await fetch(this.base + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status, detailOf(data, res.status));
    return data;
  }

  /** An authenticated request; on 401 refreshes the tokens once and tries again. */
  async call(method, path, body) {
    try {
      return await this.raw(method, path, body, true);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !this.tokens) throw e;
      await this.refresh();
      return this.raw(method, path, body, true);
    }
  }

  register(username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return this.raw('POST', '/auth/register', body, false);
  }

  async login(username, password) {
    const tokens = await this.raw('POST', '/auth/login', { username, password }, false);
    this.setTokens(tokens);
    return tokens;
  }

  logout() {
    this.setTokens(null);
  }

  me() { return this.call('GET', '/users/me'); }
  user(id) { return this.call('GET', `/users/${encodeURIComponent(id)}`); }
  syncContacts(usernames) { return this.call('POST', '/contacts/sync', { usernames }); }
  groups() { return this.call('GET', '/groups'); }
  group(id) { return this.call('GET', `/groups/${encodeURIComponent(id)}`); }
  createGroup(name, members) { return this.call('POST', '/groups', { name, members }); }
  renameGroup(id, name) { return this.call('PATCH', `/groups/${encodeURIComponent(id)}`, { name }); }
  addMembers(id, members) { return this.call('POST', `/groups/${encodeURIComponent(id)}/members`, { members }); }
  removeMember(id, userId) {
    return this.call('DELETE', `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`);
  }

  // --- issue 15: conversations, contacts, presence, blocks, search --------------------------
  conversations(limit) { return this.call('GET', `/conversations?limit=${limit}`); }
  markRead(peer, upTo) { return this.call('POST', `/conversations/${encodeURIComponent(peer)}/read`, { up_to: upTo }); }
  contacts() { return this.call('GET', '/contacts'); }
  addContact(userId) { return this.call('PUT', `/contacts/${encodeURIComponent(userId)}`); }
  presence(userIds) { return this.call('GET', `/presence?users=${userIds.map(encodeURIComponent).join(',')}`); }
  blocks() { return this.call('GET', '/blocks'); }
  block(userId) { return this.call('PUT', `/blocks/${encodeURIComponent(userId)}`); }
  unblock(userId) { return this.call('DELETE', `/blocks/${encodeURIComponent(userId)}`); }
  search(q, limit = 20) { return this.call('GET', `/search?${new URLSearchParams({ q, limit: String(limit) })}`); }

  history(peer, before, limit) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set('before', before);
    return this.call('GET', `/conversations/${encodeURIComponent(peer)}/messages?${q}`);
  }
}
