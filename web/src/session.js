// The signed-in user's chat state and its MQTT connection (MQTT.js over WebSocket).
//
// Speaks only the public contract: CONNECT with username = user id and password = access
// token, subscribe users/{me}/inbox (QoS 1) on every connect (the server replays what is
// pending), publish envelopes to users/{me}/outbox. Every message received gets a
// `delivered` receipt at once; a conversation on screen is marked read on the server
// (POST /conversations/{id}/read), which sends the `read` receipts and tells the user's other devices.
// The conversation list, unread counts, contacts and blocks come from the server (issue 15), so a
// fresh browser shows what another one did.
// Messages without an `ack` are published again, with the same client id, on every
// connect (the server dedupes them). The server replays a message until it gets our
// `delivered`, so repeats are dropped here by server id.

import mqtt from 'mqtt';

export const PAGE = 30;
/** The server's default `max_payload` (bytes of an outbox envelope). */
const MAX_PAYLOAD = 65536;
/** The most ids one receipt may carry (the server's MAX_RECEIPT_IDS). */
const MAX_RECEIPT_IDS = 1000;
const STATUS_RANK = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 };
/** How many conversations the list loads at the start (the server's page limit). */
const CONVERSATIONS = 100;
/** Typing: `start` again after this long while still composing; `stop` after this long idle. */
const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 4000;
/** A contact's "is typing" goes away this long after its last `start` when no `stop` came. */
const TYPING_SHOWN_MS = 6000;

function uuid() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return 'c' + Date.now().toString(16) + Math.random().toString(16).slice(2);
}

/** Sort key of a message: server ids are time-ordered fixed-width hex; unacked ones go last. */
function sortKey(m) {
  return m.id || `~${String(m.seq).padStart(12, '0')}`;
}

export class ChatSession extends EventTarget {
  /**
   * @param {import('./api.js').Api} api  signed in
   * @param {{user_id: string, username: string, display_name: string|null}} me
   * @param {string} mqttUrl  e.g. ws://127.0.0.1:8083/mqtt
   */
  constructor(api, me, mqttUrl) {
    super();
    this.api = api;
    this.me = me;
    this.mqttUrl = mqttUrl;
    this.users = new Map([[me.user_id, me]]);
    this.groups = new Map();
    this.convs = new Map();
    this.msgById = new Map();
    this.outgoing = new Map(); // client id -> message waiting for its ack
    this.openKey = null;
    this.connection = 'connecting';
    this.client = null;
    /** MQTT 5, until a server refuses it at the first connect: then 3.1.1 (4) from then on. */
    this.protocolVersion = 5;
    this.seq = 0;
    this.lastError = null;
    this.pendingDelivered = [];
    this.changeQueued = false;
    this.contactIds = new Set(); // the server-side contact list (GET/PUT /contacts)
    this.blocked = new Set(); // whom this user blocks (GET/PUT/DELETE /blocks)
    this.presence = new Map(); // user id -> {state, last_seen} (GET /presence, inbox `presence`)
    this.typing = new Map(); // conversation key -> Map(user id -> timer of its "is typing")
    this.typingKey = null; // the conversation this tab told `typing start` to, and when
    this.typingAt = 0;
    this.typingIdle = null;
    this.actions = new Map(); // client id -> {env, undo} of an action (edit, delete, reaction) waiting for its ack
  }

  changed() {
    if (this.changeQueued) return;
    this.changeQueued = true;
    queueMicrotask(() => {
      this.changeQueued = false;
      this.dispatchEvent(new Event('change'));
    });
  }

  // --- start and stop ---------------------------------------------------------
  /** Connects, then loads the conversation list, contacts, blocks, groups, the contacts' presence and the
   * first history page of each conversation. */
  async start() {
    this.connect();
    const [groups, list, contacts, blocks] = await Promise.all([
      this.api.groups(), this.api.conversations(CONVERSATIONS), this.api.contacts(), this.api.blocks()]);
    for (const g of groups) this.putGroup(g);
    for (const item of list.conversations) {
      const c = this.conv(item.kind === 'group' ? item.group.group_id : item.peer);
      Object.assign(c, { lastMessage: item.last_message, serverLast: item.last_message.id, serverUnread: item.unread });
    }
    for (const { user_id: id } of contacts.contacts) {
      this.contactIds.add(id);
      this.conv(id);
    }
    for (const id of blocks.blocked) this.blocked.add(id);
    this.changed();
    await this.moveStoredContacts();
    await Promise.all([
      this.refreshPresence(this.contacts()),
      ...[...this.convs.keys()].slice(0, 50).map((k) => this.loadOlder(k).catch(() => {})),
    ]);
    this.changed();
  }

  stop() {
    if (this.client) this.client.end(true);
    this.client = null;
  }

  // The server keeps messages pending per MQTT client id (each is one of the user's devices): this
  // tab keeps its name across reconnects and reloads (sessionStorage: one per tab, so two tabs do not
  // take over each other's session) instead of becoming a new device each time.
  deviceName() {
    const key = `chatmq:${this.me.user_id}:device`;
    let name = null;
    try { name = sessionStorage.getItem(key); } catch { /* storage refused: a new name */ }
    if (!name) {
      name = uuid().slice(0, 8);
      try { sessionStorage.setItem(key, name); } catch { /* kept for this page only */ }
    }
    return name;
  }

  connect() {
    const clientId = `web-${this.me.user_id}-${this.deviceName()}`;
    const client = mqtt.connect(this.mqttUrl, {
      clientId,
      username: this.me.user_id,
      password: this.api.accessToken,
      protocolVersion: this.protocolVersion,
      clean: true,
      resubscribe: false, // we subscribe on every connect ourselves
      reconnectPeriod: 1000,
      connectTimeout: 10000,
      keepalive: 30,
    });
    this.client = client;
    const inbox = `users/${this.me.user_id}/inbox`;
    let accepted = false; // a CONNACK accepted this client once
    let sentConnect = false; // a CONNECT went out on an open connection
    const fallBack = () => {
      // a server without MQTT 5 refuses it (CONNACK 0x84, or 3.1.1's 1) or closes unanswered: speak 3.1.1
      if (accepted || this.protocolVersion !== 5 || this.client !== client) return false;
      this.protocolVersion = 4;
      client.end(true);
      this.connect();
      return true;
    };
    client.on('packetsend', (packet) => {
      if (packet.cmd === 'connect') sentConnect = true;
    });
    client.on('connect', () => {
      accepted = true;
      client.subscribe(inbox, { qos: 1 }, (err, granted) => {
        if (err || !granted || granted.some((g) => g.qos === 128)) {
          this.lastError = 'The server refused the inbox subscription';
          this.changed();
          return;
        }
        this.setConnection('online');
        for (const m of this.outgoing.values()) this.publish(this.envelopeOf(m));
        for (const { env } of this.actions.values()) this.publish(env);
      });
    });
    client.on('reconnect', () => {
      client.options.password = this.api.accessToken; // tokens are refreshed in the background
      this.setConnection('connecting');
    });
    client.on('close', () => {
      if (!(sentConnect && fallBack())) this.setConnection('offline');
    });
    client.on('offline', () => this.setConnection('offline'));
    client.on('error', (err) => {
      if (err && (err.code === 132 || err.code === 1) && fallBack()) return;
      if (err && [4, 5, 134, 135].includes(err.code)) {
        // bad or expired token (3.1.1: 4, 5; MQTT 5: 0x86, 0x87): refresh it and connect again
        // (MQTT.js does not retry refusals)
        this.setConnection('offline');
        this.api.refresh().then(() => {
          client.options.password = this.api.accessToken;
          client.reconnect();
        }).catch(() => {});
      }
    });
    client.on('message', (_topic, payload) => {
      let env;
      try {
        env = JSON.parse(new TextDecoder().decode(payload));
      } catch {
        return;
      }
      this.onEnvelope(env);
    });
  }

  setConnection(state) {
    if (this.connection === state) return;
    this.connection = state;
    this.changed();
  }

  publish(envelope) {
    if (!this.client) return;
    this.client.publish(`users/${this.me.user_id}/outbox`, JSON.stringify(envelope), { qos: 1 });
  }

  // --- conversations ------------------------------------------------------------
  /** The conversation with a user id or in a group id (group ids start with "g"). */
  conv(key) {
    let c = this.convs.get(key);
    if (!c) {
      c = {
        key, isGroup: key.startsWith('g'), messages: [], nextBefore: undefined, loading: false,
        // unread: the list's count (of messages up to serverLast), and others' messages that came since;
        // readUpTo: the newest server id this user read (on any of its devices)
        lastMessage: null, serverLast: null, serverUnread: 0, live: new Set(), readUpTo: null,
      };
      this.convs.set(key, c);
      if (!c.isGroup) this.profile(key);
    }
    return c;
  }

  unreadCount(key) {
    const c = this.convs.get(key);
    if (!c) return 0;
    const read = (id) => c.readUpTo !== null && id <= c.readUpTo;
    let n = c.serverLast && !read(c.serverLast) ? c.serverUnread : 0;
    for (const id of c.live) if ((!c.serverLast || id > c.serverLast) && !read(id)) n += 1;
    return n;
  }

  /** The newest message of a conversation: loaded, or the list's `last_message`. */
  lastOf(key) {
    const c = this.convs.get(key);
    const loaded = c.messages.at(-1);
    if (!c.lastMessage) return loaded;
    return loaded && sortKey(loaded) >= c.lastMessage.id ? loaded : c.lastMessage;
  }

  title(key) {
    if (key.startsWith('g')) {
      const g = this.groups.get(key);
      return g ? g.name : 'Group';
    }
    return this.nameOf(key);
  }

  nameOf(userId) {
    const u = this.users.get(userId);
    if (!u) return userId;
    return u.display_name || u.username;
  }

  /** Fetches (once) the public profile of a user id, for names. */
  profile(userId) {
    if (this.users.has(userId)) return;
    this.users.set(userId, { user_id: userId, username: userId, display_name: null, loading: true });
    this.api.user(userId).then((u) => {
      this.users.set(userId, u);
      this.changed();
    }).catch(() => {});
  }

  /** Conversation keys, the most recent activity first. */
  conversationKeys() {
    const last = (c) => {
      const m = this.lastOf(c.key);
      return m ? (m.id || sortKey(m)) : '';
    };
    return [...this.convs.values()]
      .filter((c) => c.key !== this.me.user_id && (!c.isGroup || this.groups.has(c.key)))
      .sort((a, b) => (last(b) > last(a) ? 1 : last(b) < last(a) ? -1 : this.title(a.key).localeCompare(this.title(b.key))))
      .map((c) => c.key);
  }

  contacts() {
    return [...this.convs.values()].filter((c) => !c.isGroup && c.key !== this.me.user_id).map((c) => c.key);
  }

  /** Earlier versions of this client kept the contacts (usernames) and unread ids in localStorage: the
   * contacts go to the server-side list once, then both keys go. */
  async moveStoredContacts() {
    const key = `chatmq:${this.me.user_id}:contacts`;
    let names = [];
    try {
      names = JSON.parse(localStorage.getItem(key)) || [];
    } catch { /* unreadable: nothing to move */ }
    if (Array.isArray(names) && names.length) await this.syncContacts(names.filter((n) => typeof n === 'string'));
    localStorage.removeItem(key);
    localStorage.removeItem(`chatmq:${this.me.user_id}:unread`);
  }

  /** Looks usernames up (POST /contacts/sync) and puts them on the server-side contact list (PUT
   * /contacts/{id}); returns the ones that are not registered. */
  async syncContacts(usernames) {
    const names = [...new Set(usernames.map((n) => n.trim().toLowerCase()).filter(Boolean))];
    if (!names.length) return [];
    const { registered } = await this.api.syncContacts(names);
    const added = Object.values(registered).filter((id) => id !== this.me.user_id);
    await Promise.all(added.map((id) => this.api.addContact(id)));
    for (const id of added) {
      this.contactIds.add(id);
      this.conv(id);
    }
    this.changed();
    await this.refreshPresence(added);
    return names.filter((n) => !(n in registered));
  }

  // --- presence and typing --------------------------------------------------------------
  /** Asks the server for the presence of users (GET /presence; up to 100 at a time). */
  async refreshPresence(userIds) {
    for (let i = 0; i < userIds.length; i += 100) {
      const { presence } = await this.api.presence(userIds.slice(i, i + 100));
      for (const p of presence) this.presence.set(p.user, { state: p.state, last_seen: p.last_seen });
    }
    this.changed();
  }

  /** Who is typing in a conversation now (user ids). */
  typingIn(key) {
    const t = this.typing.get(key);
    return t ? [...t.keys()] : [];
  }

  onTyping(env) {
    if (env.from === this.me.user_id) return;
    const key = env.group || env.from;
    let t = this.typing.get(key);
    if (!t) this.typing.set(key, (t = new Map()));
    clearTimeout(t.get(env.from));
    t.delete(env.from);
    if (env.state === 'start') {
      t.set(env.from, setTimeout(() => { t.delete(env.from); this.changed(); }, TYPING_SHOWN_MS));
    }
  }

  typingEnvelope(key, state) {
    return key.startsWith('g') ? { type: 'typing', group: key, state } : { type: 'typing', to: key, state };
  }

  /** The user typed into the message box of a conversation: `typing start` now and then (at most every
   * TYPING_REPEAT_MS, well below the server's 1/s), `stop` once idle. */
  composing(key) {
    if (this.typingKey && this.typingKey !== key) this.stopTyping();
    const now = Date.now();
    if (this.typingKey !== key || now - this.typingAt >= TYPING_REPEAT_MS) {
      this.typingKey = key;
      this.typingAt = now;
      this.publish(this.typingEnvelope(key, 'start'));
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingIdle);
    if (!this.typingKey) return;
    this.publish(this.typingEnvelope(this.typingKey, 'stop'));
    this.typingKey = null;
  }

  /** Loads the next older history page of a conversation (GET /conversations/{id}/messages). */
  async loadOlder(key) {
    const c = this.conv(key);
    if (c.loading || c.nextBefore === null) return;
    c.loading = true;
    try {
      const page = await this.api.history(key, c.nextBefore, PAGE);
      for (const env of page.messages) this.addMessage(env, 'sent');
      c.nextBefore = page.next_before;
    } finally {
      c.loading = false;
      this.changed();
    }
  }

  hasOlder(key) {
    const c = this.convs.get(key);
    return !!c && c.nextBefore !== null;
  }

  /** Adds a server message envelope (dropping repeats); returns it, or null for a repeat. */
  addMessage(env, ownStatus) {
    if (this.msgById.has(env.id)) return null;
    const mine = env.from === this.me.user_id;
    const key = env.group || (mine ? env.to : env.from);
    const c = this.conv(key);
    let m = mine && env.client_id ? this.outgoing.get(env.client_id) : undefined;
    if (m) {
      this.outgoing.delete(env.client_id);
      Object.assign(m, { id: env.id, ts: env.ts, status: 'sent' });
    } else {
      m = {
        ...env, reactions: env.reactions || {}, seq: ++this.seq, status: mine ? (env.status || ownStatus) : null,
        deliveredBy: new Set(), readBy: new Set(),
      };
      c.messages.push(m);
    }
    if (!mine) this.profile(env.from);
    this.msgById.set(env.id, m);
    c.messages.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
    return m;
  }

  // --- sending --------------------------------------------------------------------
  envelopeOf(m) {
    const env = { type: 'message', id: m.client_id, body: m.body };
    if (m.group) env.group = m.group;
    else env.to = m.to;
    if (m.reply_to) env.reply_to = m.reply_to;
    return env;
  }

  /** Sends a text (or a message body: a file) to a conversation, as a reply to server id `replyTo` when
   * given; it shows at once as pending until the ack. */
  send(key, text, replyTo = null) {
    const c = this.conv(key);
    if (this.typingKey === key) this.stopTyping();
    const m = {
      id: null, client_id: uuid(), from: this.me.user_id, to: c.isGroup ? null : key, group: c.isGroup ? key : null,
      body: typeof text === 'string' ? { text } : text, ts: Date.now(), seq: ++this.seq, status: 'pending', deliveredBy: new Set(), readBy: new Set(),
      reply_to: replyTo, reactions: {},
    };
    c.messages.push(m);
    this.lastError = null;
    const size = new TextEncoder().encode(JSON.stringify(this.envelopeOf(m))).length;
    if (size > MAX_PAYLOAD) {
      // the server would refuse it without naming it (client_id null): refuse it here
      m.status = 'failed';
      m.error = `too large: ${size} bytes, the limit is ${MAX_PAYLOAD}`;
      this.lastError = `Not sent: ${m.error}`;
    } else {
      this.outgoing.set(m.client_id, m);
      if (this.connection === 'online') this.publish(this.envelopeOf(m));
    }
    this.changed();
  }

  // --- message actions (edit, delete, reaction) ----------------------------------------
  /** Publishes an action (kept until its ack, and sent again on reconnect, as messages are); `undo` puts
   * back what it changed on screen when the server refuses it. */
  act(fields, undo) {
    const env = { ...fields, id: uuid() };
    this.actions.set(env.id, { env, undo });
    this.lastError = null;
    if (this.connection === 'online') this.publish(env);
    this.changed();
  }

  /** Replaces the text of an own message (the server allows it within its edit window). */
  edit(m, text) {
    const body = { ...m.body, text };
    const before = { body: m.body, edited_at: m.edited_at };
    this.act({ type: 'edit', target: m.id, body }, () => Object.assign(m, before));
    Object.assign(m, { body, edited_at: Date.now() });
  }

  /** Deletes a message for everyone (own messages) or hides it for this user only (`me`). */
  remove(m, scope) {
    const before = { body: m.body, deleted: m.deleted, reactions: m.reactions };
    this.act({ type: 'delete', target: m.id, for: scope }, () => {
      if (scope !== 'me') Object.assign(m, before);
    });
    if (scope === 'me') this.forget(m);
    else Object.assign(m, { body: {}, deleted: true, reactions: {} });
  }

  forget(m) {
    const c = this.convs.get(this.keyOf(m));
    if (c) c.messages = c.messages.filter((x) => x !== m);
  }

  /** Adds this user's reaction with `emoji` to a message, or takes it back when it is there. */
  react(m, emoji) {
    const mine = (m.reactions[emoji] || []).includes(this.me.user_id);
    this.act({ type: 'reaction', target: m.id, emoji, remove: mine },
      () => this.applyReaction(m, this.me.user_id, emoji, !mine));
    this.applyReaction(m, this.me.user_id, emoji, mine);
  }

  applyReaction(m, user, emoji, remove) {
    const users = (m.reactions[emoji] || []).filter((u) => u !== user);
    if (!remove) users.push(user);
    const reactions = { ...m.reactions };
    if (users.length) reactions[emoji] = users;
    else delete reactions[emoji];
    m.reactions = reactions;
  }

  /** The conversation key of a message. */
  keyOf(m) {
    return m.group || (m.from === this.me.user_id ? m.to : m.from);
  }

  // --- blocking ---------------------------------------------------------------------
  async setBlocked(userId, on) {
    await (on ? this.api.block(userId) : this.api.unblock(userId));
    if (on) this.blocked.add(userId);
    else this.blocked.delete(userId);
    this.changed();
  }

  /** Searches the user's messages (GET /search): history messages, newest first. */
  async search(q) {
    const { messages } = await this.api.search(q);
    for (const m of messages) if (m.from !== this.me.user_id) this.profile(m.from);
    return messages;
  }

  // --- receiving ------------------------------------------------------------------
  onEnvelope(env) {
    if (!env || typeof env !== 'object') return;
    switch (env.type) {
      case 'ack': {
        this.actions.delete(env.client_id);
        const m = this.outgoing.get(env.client_id);
        if (m) {
          this.outgoing.delete(env.client_id);
          Object.assign(m, { id: env.id, ts: env.ts, status: 'sent' });
          this.msgById.set(env.id, m);
        }
        break;
      }
      case 'message': {
        // a repeat of a message already shown (replayed, or loaded from history first) still
        // counts as unread until we sent `read` for it
        this.addMessage(env, 'sent');
        this.queueDelivered(env.id); // also a copy of what another device of this user sent: pending here too
        if (env.from !== this.me.user_id) {
          const key = env.group || env.from;
          this.conv(key).live.add(env.id);
          const t = this.typing.get(key); // a message ends its sender's typing
          if (t && t.has(env.from)) this.onTyping({ from: env.from, group: env.group, state: 'stop' });
          if (key === this.openKey) this.markRead(key);
        }
        break;
      }
      case 'edit':
      case 'delete':
      case 'reaction': {
        // message actions (contract extension): confirmed like messages; an edit or a delete for
        // everyone changes the message shown (history carries them too: edited_at, deleted)
        this.queueDelivered(env.id);
        const m = this.msgById.get(env.target);
        if (m && env.type === 'edit') Object.assign(m, { body: env.body, edited_at: env.ts });
        else if (m && env.type === 'delete' && env.for === 'me') this.forget(m);
        else if (m && env.type === 'delete') Object.assign(m, { body: {}, deleted: true, reactions: {} });
        else if (m && env.type === 'reaction') this.applyReaction(m, env.from, env.emoji, !!env.remove);
        break;
      }
      case 'presence':
        this.presence.set(env.user, { state: env.state, last_seen: env.last_seen });
        break;
      case 'typing':
        this.onTyping(env);
        break;
      case 'receipt':
        this.onReceipt(env);
        break;
      case 'event':
        this.onEvent(env);
        break;
      case 'error': {
        const action = env.client_id && this.actions.get(env.client_id);
        if (action) {
          this.actions.delete(env.client_id);
          if (action.undo) action.undo();
        }
        const m = env.client_id && this.outgoing.get(env.client_id);
        if (m) {
          this.outgoing.delete(env.client_id);
          m.status = 'failed';
          m.error = env.reason || env.code;
        }
        this.lastError = `Not sent: ${env.reason || env.code}`;
        break;
      }
      default:
        return;
    }
    this.changed();
  }

  queueDelivered(id) {
    this.pendingDelivered.push(id);
    if (this.pendingDelivered.length > 1) return;
    queueMicrotask(() => {
      const ids = this.pendingDelivered;
      this.pendingDelivered = [];
      this.publish({ type: 'receipt', status: 'delivered', ids });
    });
  }

  onReceipt(env) {
    if (env.from === this.me.user_id) {
      // another device of this user: what it read is read here too
      if (env.status === 'read') this.readElsewhere(env.ids || []);
      return;
    }
    for (const id of env.ids || []) {
      const m = this.msgById.get(id);
      if (!m || m.from !== this.me.user_id) continue;
      m.deliveredBy.add(env.from);
      if (env.status === 'read') m.readBy.add(env.from);
      let status = 'delivered';
      if (m.group) {
        const g = this.groups.get(m.group);
        const others = g ? g.members.map((x) => x.user_id).filter((u) => u !== this.me.user_id) : [];
        if (others.length && others.every((u) => m.readBy.has(u))) status = 'read';
        else if (others.length && !others.every((u) => m.deliveredBy.has(u))) status = 'sent';
      } else if (m.readBy.size) {
        status = 'read';
      }
      if (STATUS_RANK[status] > STATUS_RANK[m.status]) m.status = status;
    }
  }

  putGroup(g) {
    this.groups.set(g.group_id, g);
    for (const mem of g.members) this.profile(mem.user_id);
    this.conv(g.group_id);
  }

  refreshGroup(id) {
    return this.api.group(id).then((g) => { this.putGroup(g); this.changed(); }).catch(() => {});
  }

  /** Forgets a group the user is no longer in (removed, or the group was deleted). */
  dropGroup(id) {
    this.groups.delete(id);
    this.convs.delete(id);
    if (this.openKey === id) this.openKey = null;
  }

  onEvent(env) {
    switch (env.event) {
      case 'group_created':
        if (env.group) this.putGroup(env.group);
        break;
      case 'member_added':
        this.refreshGroup(env.group_id);
        break;
      case 'member_removed':
        if (env.user_id === this.me.user_id) this.dropGroup(env.group_id);
        else this.refreshGroup(env.group_id);
        break;
      case 'group_deleted': // an operator deleted the group (contract extension)
        this.dropGroup(env.group_id);
        break;
      case 'group_renamed': {
        const g = this.groups.get(env.group_id);
        if (g) g.name = env.name;
        break;
      }
      default:
        break;
    }
  }

  readElsewhere(ids) {
    for (const c of this.convs.values()) {
      for (const id of ids) {
        const m = this.msgById.get(id);
        const here = m ? this.keyOf(m) === c.key : c.live.has(id) || c.serverLast === id;
        if (here && (c.readUpTo === null || id > c.readUpTo)) c.readUpTo = id;
      }
    }
  }

  // --- reading ----------------------------------------------------------------------
  /** Opens a conversation (null closes it) and marks what is unread there as read. */
  open(key) {
    if (this.typingKey && this.typingKey !== key) this.stopTyping();
    this.openKey = key;
    if (key) {
      const c = this.conv(key);
      if (c.nextBefore === undefined) this.loadOlder(key).catch(() => {});
      // asked again on opening: the server announces changes only, not that a contact became mutual
      if (!c.isGroup) this.refreshPresence([key]).catch(() => {});
      this.markRead(key);
    }
    this.changed();
  }

  /** Marks the conversation read up to its newest message, when it has unread messages and the page is
   * visible: on the server (POST /conversations/{id}/read, which moves the read marker and sends the
   * senders their `read` receipts), and with a `read` receipt over MQTT for the messages this tab knows,
   * which the server passes on to this user's other devices (the POST does not tell them). */
  markRead(key) {
    const c = this.convs.get(key);
    if (!c || !this.unreadCount(key) || document.visibilityState === 'hidden') return;
    const theirs = c.messages.filter((m) => m.id && m.from !== this.me.user_id).map((m) => m.id);
    const known = [...new Set([c.serverLast, ...c.live, ...theirs])].filter(Boolean);
    const upTo = known.reduce((a, b) => (b > a ? b : a));
    const newly = known.filter((id) => c.readUpTo === null || id > c.readUpTo).sort().slice(-MAX_RECEIPT_IDS);
    c.readUpTo = upTo;
    this.api.markRead(key, upTo).catch((e) => { this.lastError = `Not marked read: ${e.message}`; this.changed(); });
    if (newly.length) this.publish({ type: 'receipt', status: 'read', ids: newly });
    this.changed();
  }

  // --- groups ---------------------------------------------------------------------
  async createGroup(name, members) {
    const g = await this.api.createGroup(name, members);
    this.putGroup(g);
    this.changed();
    return g;
  }

  isAdmin(groupId) {
    const g = this.groups.get(groupId);
    return !!g && g.members.some((m) => m.user_id === this.me.user_id && m.role === 'admin');
  }

  async addMembers(groupId, members) {
    await this.api.addMembers(groupId, members);
    await this.refreshGroup(groupId);
  }

  async removeMember(groupId, userId) {
    await this.api.removeMember(groupId, userId);
    if (userId === this.me.user_id) {
      this.groups.delete(groupId);
      this.convs.delete(groupId);
      if (this.openKey === groupId) this.openKey = null;
      this.changed();
    } else {
      await this.refreshGroup(groupId);
    }
  }

  async renameGroup(groupId, name) {
    const g = await this.api.renameGroup(groupId, name);
    this.putGroup(g);
    this.changed();
  }
}
