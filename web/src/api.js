// REST client for the public contract under /api/v1 (docs/contract.md).
// Keeps the tokens, refreshes them before they expire and once more on a 401.

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
   */
  constructor(base, onTokens) {
    this.base = base;
    this.onTokens = onTokens;
    this.tokens = null;
    this.refreshTimer = null;
    this.refreshing = null;
  }

  /** Adopts tokens (from login, refresh or storage) and schedules the next refresh. */
  setTokens(tokens) {
    this.tokens = tokens;
    clearTimeout(this.refreshTimer);
    if (tokens && tokens.expires_in) {
      const ms = Math.max(5, tokens.expires_in * 0.8) * 1000;
      this.refreshTimer = setTimeout(() => this.refresh().catch(() => {}), ms);
    }
    this.onTokens(tokens);
  }

  get accessToken() {
    return this.tokens ? this.tokens.access_token : null;
  }

  /** Gets new tokens with the refresh token; signs out (onTokens(null)) when it is refused. */
  refresh() {
    if (!this.refreshing) {
      const token = this.tokens && this.tokens.refresh_token;
      this.refreshing = this.raw('POST', '/auth/refresh', { refresh_token: token }, false)
        .then((t) => { this.setTokens(t); return t; })
        .catch((e) => {
          if (e instanceof ApiError && (e.status === 401 || e.status === 403)) this.setTokens(null);
          throw e;
        })
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
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

  history(peer, before, limit) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set('before', before);
    return this.call('GET', `/conversations/${encodeURIComponent(peer)}/messages?${q}`);
  }
}
