// The page: sign-in, the conversation list and the open conversation, drawn from a ChatSession.
// All user-provided text goes into the DOM as text (textContent), never as HTML.

import { DevicesPage } from './devices.js';
import { el } from './dom.js';
import { Api, ApiError } from './api.js';
import { ChatSession } from './session.js';
import { isAttachment, renderAttachment, setupAttachments } from './attachments.js';

const $ = (id) => document.getElementById(id);
const TOKENS_KEY = 'chatmq:tokens';
const MQTT_KEY = 'chatmq:mqtt-url';
const TICKS = {
  pending: ['🕓', 'Sending'],
  sent: ['✓', 'Sent'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
  failed: ['!', 'Not sent'],
};

/**
 * Where MQTT over WebSocket is: ?mqtt=URL (remembered), else what was used last, else
 * /mqtt on this origin behind a proxy on a default port (nginx), else on this host port 8083
 * (ws_port) for a page over http:, 8084 (wss_port, secure WebSocket) for a page over https:.
 */
function defaultMqttUrl() {
  const fromQuery = new URLSearchParams(location.search).get('mqtt');
  if (fromQuery) {
    localStorage.setItem(MQTT_KEY, fromQuery);
    return fromQuery;
  }
  const remembered = localStorage.getItem(MQTT_KEY);
  if (remembered) return remembered;
  const secure = location.protocol === 'https:';
  const ws = secure ? 'wss:' : 'ws:';
  if (!location.port) return `${ws}//${location.host}/mqtt`;
  return `${ws}//${location.hostname}:${secure ? 8084 : 8083}/mqtt`;
}

function timeOf(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** A few reactions offered in the message menu. */
const EMOJI = ['👍', '❤️', '😂', '😮', '😢'];

/** What a contact's presence reads as: "online", "away", "last seen 14:05" (or on another day), or ''. */
function presenceText(p) {
  if (!p || !p.state) return '';
  if (p.state !== 'offline') return p.state;
  if (!p.last_seen) return 'offline';
  const d = new Date(p.last_seen);
  const today = d.toDateString() === new Date().toDateString();
  return `last seen ${today ? '' : `${d.toLocaleDateString()} `}${timeOf(p.last_seen)}`;
}

function textOf(body, deleted = false) {
  if (deleted) return 'This message was deleted';
  if (isAttachment(body)) return body.text || `File: ${body.name || 'file'}`;
  if (body && typeof body.text === 'string') return body.text;
  return JSON.stringify(body);
}

function showError(id, err) {
  $(id).textContent = err ? (err instanceof ApiError || err instanceof Error ? err.message : String(err)) : '';
}

function storedTokens() {
  try {
    return JSON.parse(localStorage.getItem(TOKENS_KEY));
  } catch {
    return null;
  }
}

const api = new Api('/api/v1', (tokens) => {
  if (tokens) localStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
  else localStorage.removeItem(TOKENS_KEY);
  if (!tokens && session) signedOut();
}, storedTokens);
// another tab refreshed the shared login: its tokens replace ours (whose refresh token it spent)
window.addEventListener('storage', (e) => {
  if (e.key === TOKENS_KEY && e.newValue) api.adopt(storedTokens());
});
let session = null;

// --- sign-in ---------------------------------------------------------------------------
function credentials() {
  return {
    username: $('auth-username').value.trim().toLowerCase(),
    password: $('auth-password').value,
    display: $('auth-display').value.trim(),
  };
}

async function logIn(register) {
  showError('auth-error', null);
  const { username, password, display } = credentials();
  if (!username || password.length < 8) {
    showError('auth-error', 'Enter a username and a password of at least 8 characters.');
    return;
  }
  localStorage.setItem(MQTT_KEY, $('auth-mqtt').value.trim() || defaultMqttUrl());
  try {
    if (register) await api.register(username, password, display || undefined);
    await api.login(username, password);
    await startSession();
  } catch (e) {
    showError('auth-error', e);
  }
}

async function startSession() {
  const me = await api.me();
  session = new ChatSession(api, me, localStorage.getItem(MQTT_KEY) || defaultMqttUrl());
  session.addEventListener('change', render);
  $('auth').hidden = true;
  $('chat').hidden = false;
  $('auth-password').value = '';
  $('whoami').textContent = `Signed in as ${me.display_name || me.username}`;
  render();
  $('contact-input').focus();
  await session.start();
}

// --- the Devices page (devices.js): shown instead of the conversations ------------------------
let devicesPage = null;
function showDevices(on) {
  if (on && !devicesPage) devicesPage = new DevicesPage(api, $('devices-page'));
  if (devicesPage) (on ? devicesPage.show() : devicesPage.hide());
  document.querySelector('.panes').hidden = on;
  $('devices-button').setAttribute('aria-pressed', String(on));
  $('devices-button').textContent = on ? 'Chats' : 'Devices';
}
$('devices-button').addEventListener('click', () => showDevices($('devices-button').getAttribute('aria-pressed') !== 'true'));

function signedOut() {
  showDevices(false);
  if (session) session.stop();
  session = null;
  $('chat').hidden = true;
  $('auth').hidden = false;
  $('auth-username').focus();
}

$('auth-form').addEventListener('submit', (e) => { e.preventDefault(); logIn(false); });
$('register-button').addEventListener('click', () => logIn(true));
$('logout-button').addEventListener('click', () => api.logout());

// --- rendering ---------------------------------------------------------------------------
const CONNECTION_TEXT = { online: 'Online', connecting: 'Connecting…', offline: 'Offline, reconnecting…' };

function render() {
  if (!session) return;
  const conn = $('connection');
  if (conn.dataset.state !== session.connection) {
    conn.dataset.state = session.connection;
    conn.textContent = CONNECTION_TEXT[session.connection];
  }
  const error = session.lastError || '';
  if ($('chat-error').textContent !== error) $('chat-error').textContent = error;
  renderConversationList();
  renderConversation();
}

function renderConversationList() {
  const list = $('conversation-list');
  const items = session.conversationKeys().map((key) => {
    const c = session.convs.get(key);
    const unread = session.unreadCount(key);
    const last = session.lastOf(key);
    const presence = c.isGroup ? null : session.presence.get(key);
    const label = `${session.title(key)}${c.isGroup ? ' (group)' : ''}${unread ? `, ${unread} unread` : ''}`;
    return el('li', {},
      el('button', {
        type: 'button', class: 'conversation', 'data-key': key, 'aria-label': label,
        'aria-current': key === session.openKey ? 'true' : null,
        onclick: () => openConversation(key),
      },
      presence && presence.state
        ? el('span', { class: `dot ${presence.state}`, title: presenceText(presence) }) : null,
      el('span', { class: 'name', text: session.title(key) }),
      c.isGroup ? el('span', { class: 'kind', text: 'group' }) : null,
      unread ? el('span', { class: 'badge', text: String(unread) }) : null,
      el('span', { class: 'preview', text: last ? textOf(last.body, last.deleted) : '' })));
  });
  const focused = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.key;
  list.replaceChildren(...items);
  if (focused) {
    const again = list.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

// --- the message menu: reply, edit, delete, react -------------------------------------------
let menuFor = null; // the server id of the message whose menu is open
let composing = null; // {mode: 'reply'|'edit', message} while replying to or editing a message

function quoteOf(id) {
  const q = session.msgById.get(id);
  const text = q ? `${session.nameOf(q.from)}: ${textOf(q.body, q.deleted)}` : 'an earlier message';
  return el('blockquote', { class: 'quote', text: `↪ ${text}` });
}

function renderReactions(m) {
  const entries = Object.entries(m.reactions || {});
  if (!entries.length) return null;
  return el('span', { class: 'reactions' }, ...entries.map(([emoji, users]) => {
    const mine = users.includes(session.me.user_id);
    const names = users.map((u) => (u === session.me.user_id ? 'you' : session.nameOf(u))).join(', ');
    return el('button', {
      type: 'button', class: `reaction${mine ? ' mine' : ''}`, 'aria-pressed': String(mine),
      'aria-label': `${emoji} ${users.length}: ${names}`, title: names, text: `${emoji} ${users.length}`,
      onclick: () => session.react(m, emoji),
    });
  }));
}

function startComposing(mode, m) {
  composing = { mode, message: m };
  menuFor = null;
  const input = $('composer-input');
  if (mode === 'edit') input.value = textOf(m.body);
  render();
  input.focus();
}

function renderMenu(m, mine) {
  const item = (text, fn, cls = 'secondary small') => el('button', {
    type: 'button', class: cls, text, onclick: () => { menuFor = null; fn(); render(); },
  });
  const canEdit = mine && !m.deleted && typeof (m.body && m.body.text) === 'string';
  return el('div', { class: 'message-menu', role: 'group', 'aria-label': 'Message actions' },
    item('Reply', () => startComposing('reply', m)),
    canEdit ? item('Edit', () => startComposing('edit', m)) : null,
    item('Delete for me', () => session.remove(m, 'me'), 'danger small'),
    mine && !m.deleted ? item('Delete for everyone', () => session.remove(m, 'everyone'), 'danger small') : null,
    ...(m.deleted ? [] : EMOJI.map((emoji) => el('button', {
      type: 'button', class: 'secondary small emoji', 'aria-label': `React ${emoji}`, text: emoji,
      onclick: () => { menuFor = null; session.react(m, emoji); },
    }))));
}

function renderMessage(m, isGroup) {
  const mine = m.from === session.me.user_id;
  const [tick, tickLabel] = mine ? TICKS[m.status] || TICKS.sent : [];
  return el('li', { class: `message ${mine ? 'mine' : 'theirs'}`, 'data-id': m.id || m.client_id },
    isGroup && !mine ? el('span', { class: 'sender', text: session.nameOf(m.from) }) : null,
    m.reply_to && !m.deleted ? quoteOf(m.reply_to) : null,
    el('span', { class: 'text', text: (m.deleted ? textOf(m.body, true) : isAttachment(m.body) ? (m.body.text || '') : textOf(m.body))
      + (m.edited_at && !m.deleted ? ' (edited)' : '') }),
    isAttachment(m.body) && !m.deleted ? renderAttachment(api, m.body) : null,
    el('span', { class: 'meta' },
      el('time', { datetime: new Date(m.ts).toISOString(), text: timeOf(m.ts) }),
      mine ? el('span', { class: `tick ${m.status}`, role: 'img', 'aria-label': tickLabel, title: m.error || tickLabel,
        text: tick }) : null,
      m.id ? el('button', {
        type: 'button', class: 'menu-button', 'aria-label': 'Message menu', 'aria-expanded': String(menuFor === m.id),
        text: '⋯', onclick: () => { menuFor = menuFor === m.id ? null : m.id; render(); },
      }) : null),
    renderReactions(m),
    menuFor === m.id ? renderMenu(m, mine) : null);
}

let renderedKey = null;
let renderedCount = 0;

function renderConversation() {
  const key = session.openKey;
  const box = $('messages');
  document.body.classList.toggle('has-open', !!key);
  $('composer').hidden = !key;
  $('empty-hint').hidden = !!key;
  $('members-button').hidden = !(key && key.startsWith('g'));
  $('block-button').hidden = !key || key.startsWith('g');
  if (composing && (!key || session.keyOf(composing.message) !== key)) composing = null;
  $('composer-context').hidden = !composing;
  if (composing) {
    $('composer-context-text').textContent = composing.mode === 'edit' ? 'Editing your message'
      : `Replying to ${session.nameOf(composing.message.from)}: ${textOf(composing.message.body, composing.message.deleted)}`;
  }
  const typing = key ? session.typingIn(key).map((u) => session.nameOf(u)) : [];
  const typingText = typing.length ? `${typing.join(', ')} ${typing.length > 1 ? 'are' : 'is'} typing…` : '';
  if ($('typing').textContent !== typingText) $('typing').textContent = typingText;
  $('conversation-presence').textContent = key && !key.startsWith('g') ? presenceText(session.presence.get(key)) : '';
  if (key && !key.startsWith('g')) {
    const blocked = session.blocked.has(key);
    $('block-button').textContent = blocked ? 'Unblock' : 'Block';
    $('block-button').setAttribute('aria-label', `${blocked ? 'Unblock' : 'Block'} ${session.title(key)}`);
  }
  if (!key) {
    $('conversation-title').textContent = 'No conversation open';
    $('message-list').replaceChildren();
    $('older-button').hidden = true;
    renderedKey = null;
    return;
  }
  const c = session.convs.get(key);
  $('conversation-title').textContent = session.title(key);
  $('older-button').hidden = !session.hasOlder(key);
  $('older-button').disabled = c.loading;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  $('message-list').replaceChildren(...c.messages.map((m) => renderMessage(m, c.isGroup)));
  if (renderedKey !== key || (atBottom && c.messages.length !== renderedCount)) {
    box.scrollTop = box.scrollHeight;
  } else {
    box.scrollTop = box.scrollHeight - fromBottom; // older messages were added above: keep the view
  }
  renderedKey = key;
  renderedCount = c.messages.length;
  if (dialogGroup === key && $('members-dialog').open) renderMembers();
}

function openConversation(key) {
  menuFor = null;
  session.open(key);
  render(); // now, so that the message box is shown before it takes the focus
  $('composer-input').focus();
}

// --- conversation actions ------------------------------------------------------------------
$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('composer-input');
  const text = input.value.trim();
  if (!text || !session || !session.openKey) return;
  if (composing && composing.mode === 'edit') session.edit(composing.message, text);
  else session.send(session.openKey, text, composing ? composing.message.id : null);
  composing = null;
  input.value = '';
  input.focus();
  render();
});
$('composer-input').addEventListener('input', () => {
  if (session && session.openKey && $('composer-input').value.trim()) session.composing(session.openKey);
});
$('composer-context-cancel').addEventListener('click', () => {
  if (composing && composing.mode === 'edit') $('composer-input').value = '';
  composing = null;
  render();
  $('composer-input').focus();
});
$('block-button').addEventListener('click', async () => {
  const key = session && session.openKey;
  if (!key) return;
  try {
    await session.setBlocked(key, !session.blocked.has(key));
  } catch (err) {
    session.lastError = err.message;
    session.changed();
  }
});

// --- search --------------------------------------------------------------------------------
$('search-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  showError('search-error', null);
  const q = $('search-input').value.trim();
  const list = $('search-results');
  if (!q) { list.hidden = true; return; }
  try {
    const found = await session.search(q);
    list.replaceChildren(...(found.length ? found.map((m) => {
      const key = session.keyOf(m);
      const where = session.title(key);
      const who = m.from === session.me.user_id ? 'You' : session.nameOf(m.from);
      return el('li', {}, el('button', {
        type: 'button', class: 'search-result', 'aria-label': `${where}: ${textOf(m.body)}`,
        onclick: () => openConversation(key),
      }, el('span', { class: 'name', text: where }), el('span', { class: 'preview', text: `${who}: ${textOf(m.body)}` })));
    }) : [el('li', { class: 'hint', text: 'No messages found' })]));
    list.hidden = false;
  } catch (err) {
    list.hidden = true;
    showError('search-error', err);
  }
});
$('composer-input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});
setupAttachments({
  api, composer: $('composer'), canSend: () => !!(session && session.openKey),
  send: (body) => session.send(session.openKey, body),
  fail: (message) => { session.lastError = message; session.changed(); },
});
$('older-button').addEventListener('click', () => session && session.openKey && session.loadOlder(session.openKey));
$('messages').addEventListener('scroll', () => {
  const box = $('messages');
  if (box.scrollTop < 30 && session && session.openKey && session.hasOlder(session.openKey)) {
    session.loadOlder(session.openKey).catch(() => {});
  }
});
$('back-button').addEventListener('click', () => {
  const key = session && session.openKey;
  session.open(null);
  const again = key && document.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (again) again.focus();
});
document.addEventListener('visibilitychange', () => {
  if (session && session.openKey) session.markRead(session.openKey);
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && session && session.openKey && !document.querySelector('dialog[open]')) {
    $('back-button').click();
  }
});

$('contact-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  showError('contact-error', null);
  const input = $('contact-input');
  const names = input.value.split(/[\s,;]+/).filter(Boolean);
  if (!names.length) return;
  try {
    const missing = await session.syncContacts(names);
    if (missing.length) showError('contact-error', `No user named ${missing.join(', ')}`);
    else input.value = '';
  } catch (err) {
    showError('contact-error', err);
  }
});

// --- groups ----------------------------------------------------------------------------------
for (const button of document.querySelectorAll('dialog [data-close]')) {
  button.addEventListener('click', () => button.closest('dialog').close());
}

$('new-group-button').addEventListener('click', () => {
  showError('group-error', null);
  $('group-name').value = '';
  const boxes = session.contacts().map((id) => el('div', { class: 'check' },
    el('input', { type: 'checkbox', id: `cand-${id}`, value: id }),
    el('label', { for: `cand-${id}`, text: session.nameOf(id) })));
  $('group-candidates').replaceChildren(...(boxes.length ? boxes : [el('p', { class: 'hint', text: 'Add contacts first.' })]));
  $('group-dialog').showModal();
  $('group-name').focus();
});

$('group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('group-name').value.trim();
  if (!name) { showError('group-error', 'Give the group a name.'); return; }
  const members = [...$('group-candidates').querySelectorAll('input:checked')].map((i) => i.value);
  try {
    const g = await session.createGroup(name, members);
    $('group-dialog').close();
    openConversation(g.group_id);
  } catch (err) {
    showError('group-error', err);
  }
});

let dialogGroup = null;

function renderMembers() {
  const g = session.groups.get(dialogGroup);
  if (!g) { $('members-dialog').close(); return; }
  const admin = session.isAdmin(dialogGroup);
  $('members-dialog-title').textContent = `Members of ${g.name}`;
  $('rename-form').hidden = !admin;
  $('add-member-form').hidden = !admin;
  $('member-list').replaceChildren(...g.members.map((m) => {
    const name = m.user_id === session.me.user_id ? `${session.nameOf(m.user_id)} (you)` : session.nameOf(m.user_id);
    return el('li', {},
      el('span', { text: name }),
      m.role === 'admin' ? el('span', { class: 'kind', text: 'admin' }) : null,
      admin && m.user_id !== session.me.user_id
        ? el('button', { type: 'button', class: 'danger small', 'aria-label': `Remove ${session.nameOf(m.user_id)}`,
          text: 'Remove', onclick: () => memberAction(() => session.removeMember(dialogGroup, m.user_id)) })
        : null);
  }));
  const inGroup = new Set(g.members.map((m) => m.user_id));
  const options = session.contacts().filter((id) => !inGroup.has(id))
    .map((id) => el('option', { value: id, text: session.nameOf(id) }));
  $('add-member-select').replaceChildren(...options);
  $('add-member-form').querySelector('button').disabled = !options.length;
}

async function memberAction(fn) {
  showError('members-error', null);
  try {
    await fn();
    if (session.groups.has(dialogGroup)) renderMembers();
    else $('members-dialog').close();
  } catch (err) {
    showError('members-error', err);
  }
}

$('members-button').addEventListener('click', () => {
  dialogGroup = session.openKey;
  showError('members-error', null);
  $('rename-input').value = session.title(dialogGroup);
  renderMembers();
  $('members-dialog').showModal();
});
$('add-member-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $('add-member-select').value;
  if (id) memberAction(() => session.addMembers(dialogGroup, [id]));
});
$('rename-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('rename-input').value.trim();
  if (name) memberAction(() => session.renameGroup(dialogGroup, name));
});
$('leave-button').addEventListener('click', () => memberAction(() => session.removeMember(dialogGroup, session.me.user_id)));

// --- start ---------------------------------------------------------------------------------
$('auth-mqtt').value = defaultMqttUrl();
const stored = localStorage.getItem(TOKENS_KEY);
if (stored) {
  // signed in before: refresh the tokens (the access token may have expired) and go on
  api.tokens = JSON.parse(stored);
  api.refresh().then(startSession).catch(() => {
    localStorage.removeItem(TOKENS_KEY);
    $('auth-username').focus();
  });
} else {
  $('auth-username').focus();
}
