// Miyamoto's web console: plain JavaScript, no dependencies, no build step (see
// package ui's doc). It reads and changes everything through the node's HTTP API,
// with the API token kept in this tab's sessionStorage. Every value that comes
// from the API is written as text (textContent), never as HTML: task URLs, names
// and worker answers are anyone's input.
'use strict';

(() => {
  const TOKEN_KEY = 'miyamoto.apiToken';
  const STATES = ['scheduled', 'claimed', 'succeeded', 'dead', 'unknown', 'cancelled'];
  const FINAL = new Set(['succeeded', 'dead', 'unknown', 'cancelled']);
  const REFRESH_MS = 3000;
  const PAGE = 50;

  const $ = (sel) => document.querySelector(sel);

  // el builds an element: attributes (class, href, data-*, ...), then children,
  // strings becoming text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- the API ----

  // AuthRequired is thrown by api() when the node refused the token: the login
  // form is showing, and the view that asked stops.
  class AuthRequired extends Error {}

  // apiURL resolves an API path against the console's own: /ui/ -> /, so the
  // console works behind a proxy that mounts the node under a prefix.
  const apiURL = (path) => new URL('../' + path, location.href).toString();

  // api calls the node and returns {status, ok, data}; data is the parsed JSON
  // answer (or {error} when the node could not be reached).
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(apiURL(path), init);
    } catch (e) {
      return { status: 0, ok: false, data: { error: 'the node did not answer (' + e.message + ')' } };
    }
    const text = await resp.text();
    let data;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = { error: text.slice(0, 500) };
    }
    if (resp.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(token ? 'The node refused that token.' : '');
      throw new AuthRequired();
    }
    return { status: resp.status, ok: resp.ok, data };
  }

  const q = encodeURIComponent;

  // ---- messages ----

  function showMessage(kind, ...parts) {
    const m = $('#msg');
    m.className = kind;
    m.replaceChildren(...parts, el('button', { type: 'button', class: 'close', 'aria-label': 'close', onclick: clearMessage }, '×'));
    m.hidden = false;
  }

  function clearMessage() {
    $('#msg').hidden = true;
    $('#msg').replaceChildren();
  }

  // showFailure tells what a refused or failed request answered.
  function showFailure(what, r) {
    const d = r.data || {};
    const why = d.error || d.reason || d.status || 'no answer';
    showMessage('error', `${what}: ${r.status ? r.status + ' ' : ''}${why}`);
  }

  // ---- login ----

  function showLogin(note) {
    generation++; // stop the running view
    $('#view').replaceChildren();
    $('#view').hidden = true;
    $('#crumbs').replaceChildren();
    $('#node').textContent = '';
    $('#health').hidden = true;
    $('#signout').hidden = true;
    clearMessage();
    $('#login').hidden = false;
    $('#login-error').textContent = note || '';
    $('#token').focus();
  }

  $('#login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('#token').value.trim();
    if (!token) {
      $('#login-error').textContent = 'Enter the token.';
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('#token').value = '';
    $('#login').hidden = true;
    route();
  });

  $('#signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('Signed out.');
  });

  // ---- formatting ----

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  // fmtTime shows Unix seconds as local time, with the distance from now.
  function fmtTime(sec) {
    const d = new Date(sec * 1000);
    const abs = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return el('time', { datetime: d.toISOString(), title: `${abs} (${relative(sec)})` }, abs);
  }

  function relative(sec) {
    const s = sec - Date.now() / 1000;
    const a = Math.abs(s);
    const n = a < 60 ? `${a.toFixed(0)} s` : a < 3600 ? `${(a / 60).toFixed(0)} min` : a < 86400 ? `${(a / 3600).toFixed(1)} h` : `${(a / 86400).toFixed(1)} d`;
    return s >= 0 ? 'in ' + n : n + ' ago';
  }

  // isTimeKey tells the fields that hold Unix seconds (eta, next_eta, start,
  // started_at, ...), so that they are shown as times.
  const isTimeKey = (k) => /(^|_)(eta|at|start|started|end|ended|finished|created|due|time|heard)$/.test(k);

  // value renders any JSON value: times as times, null as "unset", a field
  // missing from one row of a list as "–", objects and arrays compactly. Unknown fields the API adds later show this way too.
  function value(k, v) {
    if (v === undefined) return el('span', { class: 'muted' }, '–'); // not in this row
    if (v === null || v === '') return el('span', { class: 'muted' }, 'unset');
    if (typeof v === 'number' && isTimeKey(k) && v > 1e8) return fmtTime(v);
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    if (Array.isArray(v)) {
      if (v.every((x) => typeof x !== 'object' || x === null)) return v.join(', ');
      return el('code', {}, JSON.stringify(v));
    }
    if (typeof v === 'object') return el('code', {}, JSON.stringify(v));
    return String(v);
  }

  // flatten turns {"retry": {"min_backoff": "1s"}} into [["retry.min_backoff", "1s"]].
  function flatten(obj, prefix = '') {
    const out = [];
    for (const [k, v] of Object.entries(obj || {})) {
      if (v && typeof v === 'object' && !Array.isArray(v)) out.push(...flatten(v, prefix + k + '.'));
      else out.push([prefix + k, v]);
    }
    return out;
  }

  const badge = (text, kind) => el('span', { class: 'badge ' + (kind || text) }, text);

  function kvTable(id, rows) {
    return el('table', { id, class: 'kv' }, el('tbody', {}, rows.map(([k, v]) =>
      el('tr', { dataset: { key: k } }, el('th', {}, k), el('td', {}, value(k.split('.').pop(), v))))));
  }

  // table builds a table with a header row; rows are arrays of cells.
  function table(id, headers, rows) {
    return el('table', { id },
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
      el('tbody', {}, rows));
  }

  // keep replaces the element with the given id inside parent by fresh, unless
  // the data it shows did not change (so that a refresh does not move what the
  // user is about to click).
  function keep(parent, id, data, build) {
    const key = JSON.stringify(data);
    const old = parent.querySelector('#' + id);
    if (old && old.dataset.key === key) return;
    const fresh = build();
    fresh.id = id;
    fresh.dataset.key = key;
    if (old) old.replaceWith(fresh);
    else parent.append(fresh);
  }

  // partialNote says which members did not answer a cluster-wide listing.
  function partialNote(d) {
    if (!d || !d.partial) return null;
    const who = Array.isArray(d.missing) && d.missing.length ? ': no answer from ' + d.missing.join(', ') : '';
    return el('p', { class: 'partial' }, badge('partial', 'warn'), ` Some members did not answer in time${who}; tasks only they hold are missing.`);
  }

  // ---- live rates, from successive counts ----

  const samples = new Map(); // queue -> {t, total, finished, rates}

  function sum(counts, pred) {
    let n = 0;
    for (const [s, c] of Object.entries(counts || {})) if (pred(s)) n += c;
    return n;
  }

  // rates compares a queue's counts with the previous ones: tasks enqueued per
  // second (growth of the total) and finished per second. Counts can drop (a
  // finished task is forgotten after the dedup window); a rate never goes below 0.
  function rates(name, counts) {
    const now = Date.now();
    const total = sum(counts, () => true);
    const finished = sum(counts, (s) => FINAL.has(s));
    const prev = samples.get(name);
    if (prev && now - prev.t < 1000) return prev.rates;
    let r = null;
    if (prev) {
      const dt = (now - prev.t) / 1000;
      r = { in: Math.max(0, (total - prev.total) / dt), done: Math.max(0, (finished - prev.finished) / dt) };
    }
    samples.set(name, { t: now, total, finished, rates: r });
    return r;
  }

  const fmtRate = (x) => (x === null || x === undefined ? '–' : x < 10 ? x.toFixed(1) : x.toFixed(0));

  function queueRow(qv, link) {
    const counts = qv.counts || {};
    const r = rates(qv.name, counts);
    const known = new Set(['name', 'settings', 'effective', 'paused', 'version', 'counts', 'partial', 'missing']);
    const extra = Object.entries(qv).filter(([k]) => !known.has(k));
    return el('tr', { dataset: { queue: qv.name } },
      el('td', {}, link ? el('a', { href: '#/queue/' + q(qv.name) }, qv.name) : qv.name),
      el('td', { class: 'status' }, qv.paused ? badge('paused') : badge('active')),
      STATES.map((s) => el('td', { class: 'num', dataset: { state: s } }, qv.counts ? String(counts[s] || 0) : '–')),
      el('td', { class: 'num', dataset: { state: 'total' } }, qv.counts ? String(sum(counts, () => true)) : '–'),
      el('td', { class: 'num rate', dataset: { rate: 'in' } }, fmtRate(r && r.in)),
      el('td', { class: 'num rate', dataset: { rate: 'done' } }, fmtRate(r && r.done)),
      el('td', { class: 'notes' },
        qv.partial ? badge('partial', 'warn') : null,
        qv.missing && qv.missing.length ? ' no answer from ' + qv.missing.join(', ') : null,
        extra.map(([k, v]) => el('span', { class: 'extra' }, k + ': ', value(k, v)))));
  }

  const queueHeaders = (first) => [first, 'status', ...STATES, 'total', 'in/s', 'done/s', 'notes'];

  // ---- header: this node and its health ----

  async function refreshHeader() {
    const h = await api('GET', 'healthz');
    if (!$('#login').hidden) return h; // the token was refused meanwhile: show nothing
    const b = $('#health');
    const st = h.ok ? 'ok' : (h.data.status || 'unavailable');
    b.className = 'badge ' + (h.ok ? 'healthy' : 'unhealthy');
    b.textContent = h.ok ? 'healthy' : `${st}${h.data.reason ? ': ' + h.data.reason : ''}`;
    b.title = h.ok ? 'this node takes tasks (/healthz 200)' : 'this node takes no task now (/healthz ' + h.status + ')';
    b.hidden = false;
    $('#signout').hidden = !sessionStorage.getItem(TOKEN_KEY);
    return h;
  }

  function crumbs(...parts) {
    $('#crumbs').replaceChildren(...parts.map((p) => el('span', { class: 'crumb' }, p)));
  }

  // ---- views ----
  // A view has mount(container), building its frame once, and refresh(),
  // loading its data; the loop below calls refresh every few seconds.

  function overview() {
    let root;
    return {
      mount(container) {
        crumbs();
        root = el('div', { class: 'overview' },
          el('section', { id: 'cluster-section' }, el('h2', {}, 'Cluster'), el('div', { id: 'cluster-info' })),
          el('section', { id: 'queues-section' }, el('h2', {}, 'Queues'), el('div', { id: 'queues-info' })));
        container.replaceChildren(root);
      },
      async refresh() {
        const [health] = await Promise.all([refreshHeader(), loadCluster(root.querySelector('#cluster-info'))]);
        // The health of this node goes in the members table too.
        const self = root.querySelector('#members tr.self td[data-col=health]');
        if (self) self.replaceChildren(health.ok ? badge('healthy') : badge((health.data.status || 'unavailable') + (health.data.reason ? ': ' + health.data.reason : ''), 'unhealthy'));
        await loadQueues(root.querySelector('#queues-info'));
      },
    };
  }

  async function loadCluster(box) {
    const r = await api('GET', 'v1/cluster');
    if (!r.ok) {
      showFailure('cluster', r);
      return;
    }
    const c = r.data;
    $('#node').textContent = c.self ? 'node ' + c.self : '';
    const members = c.members || [];
    const known = ['id', 'addr', 'self', 'reachable'];
    const extraCols = [...new Set(members.flatMap((m) => Object.keys(m)).filter((k) => !known.includes(k)))];
    const summary = Object.entries(c).filter(([k]) => k !== 'members');
    const reachable = members.filter((m) => m.reachable || m.self).length;
    keep(box, 'cluster-view', { c }, () => el('div', {},
      el('p', { class: 'summary' },
        `${members.length} members, ${reachable} reachable from this node; `,
        summary.map(([k, v], i) => [i ? ', ' : '', k + ' ', el('strong', {}, value(k, v))])),
      table('members', ['member', 'peer address', 'health', ...extraCols], members.map((m) =>
        el('tr', { class: m.self ? 'self' : '', dataset: { id: m.id } },
          el('td', {}, m.id, m.self ? el('span', { class: 'muted' }, ' (this node)') : null),
          el('td', {}, m.addr || ''),
          el('td', { dataset: { col: 'health' } }, m.self ? '' : m.reachable ? badge('reachable', 'healthy') : badge('unreachable', 'unhealthy')),
          extraCols.map((k) => el('td', {}, value(k, m[k]))))))));
  }

  async function loadQueues(box) {
    const r = await api('GET', 'v1/queues');
    if (!r.ok) {
      keep(box, 'queues-view', { err: r.data }, () => el('p', { class: 'error-text' }, `The queues could not be listed: ${r.status} ${r.data.error || ''}`));
      return;
    }
    const list = (r.data.queues || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    // Rebuilt on every refresh: the rates change even when the counts do not.
    const fresh = el('div', { id: 'queues-view' },
      partialNote(r.data),
      list.length === 0
        ? el('p', { class: 'muted' }, 'No queue yet: a queue is created by the first task posted to it.')
        : table('queues', queueHeaders('queue'), list.map((qv) => queueRow(qv, true))));
    const old = box.querySelector('#queues-view');
    if (old) old.replaceWith(fresh);
    else box.append(fresh);
  }

  function queueView(name, params) {
    let root;
    const state = STATES.includes(params.get('state')) ? params.get('state') : '';
    const cursors = []; // the `after` of each page before this one
    let after = '';
    const refreshSoon = () => current && current.refresh().catch(ignoreAuth);
    const change = (verb, done) => async (ev) => {
      const b = ev.currentTarget;
      b.disabled = true;
      try {
        const r = await api('POST', `v1/queues/${q(name)}/${verb}`);
        if (r.ok) done(r.data);
        else if (r.status === 503 && r.data.queue) showMessage('warn', `${verb}: not every member answered in time; the change keeps spreading (${r.data.error})`);
        else showFailure(verb, r);
      } catch (e) {
        ignoreAuth(e);
      } finally {
        b.disabled = false;
      }
      refreshSoon();
    };
    return {
      mount(container) {
        crumbs(el('a', { href: '#/' }, 'queues'), name);
        const purge = armedButton('purge', 'Purge', 'Confirm: cancel every task', change('purge', (d) => {
          const n = d.purged ?? d.cancelled ?? d.count;
          showMessage('info', `Queue ${name} purged` + (n !== undefined ? `: ${n} tasks cancelled.` : ': every task created before now is cancelled.'));
        }));
        root = el('div', { class: 'queue' },
          el('h1', {}, 'Queue ', el('span', { id: 'queue-name' }, name), ' ', el('span', { id: 'queue-status' })),
          el('div', { class: 'actions' },
            el('button', { type: 'button', id: 'pause', onclick: change('pause', () => showMessage('info', `Queue ${name} paused on every member.`)) }, 'Pause'),
            el('button', { type: 'button', id: 'resume', onclick: change('resume', () => showMessage('info', `Queue ${name} resumed.`)) }, 'Resume'),
            purge),
          el('section', {}, el('h2', {}, 'Counts and rates'), el('div', { id: 'queue-counts' })),
          el('section', {}, el('h2', {}, 'Settings'), el('div', { id: 'queue-settings' })),
          el('section', {}, el('h2', {}, 'Tasks'),
            el('nav', { id: 'states', class: 'tabs' },
              ['', ...STATES].map((s) => el('a', {
                href: `#/queue/${q(name)}` + (s ? '?state=' + s : ''),
                class: s === state ? 'tab current' : 'tab', dataset: { state: s || 'all' },
              }, s || 'all'))),
            el('div', { id: 'queue-tasks' }),
            el('div', { class: 'pager' },
              el('button', { type: 'button', id: 'first-page', onclick: () => { cursors.length = 0; after = ''; refreshSoon(); } }, '« first'),
              el('button', { type: 'button', id: 'next-page', onclick: (ev) => { cursors.push(after); after = ev.currentTarget.dataset.next; refreshSoon(); } }, 'next »'))));
        container.replaceChildren(root);
      },
      async refresh() {
        await refreshHeader();
        const [set, all, tasks] = await Promise.all([
          api('GET', `v1/queues/${q(name)}`),
          api('GET', 'v1/queues'),
          api('GET', `v1/queues/${q(name)}/tasks?limit=${PAGE}` + (state ? '&state=' + state : '') + (after ? '&after=' + q(after) : '')),
        ]);
        if (!set.ok) showFailure('settings', set);
        else {
          const s = set.data;
          const status = root.querySelector('#queue-status');
          status.replaceChildren(s.paused ? badge('paused') : badge('active'));
          status.dataset.paused = String(!!s.paused);
          // Every setting as the queue runs (effective; "unset" for a limit that is
          // off), then which of them a client set.
          const explicit = flatten(s.settings).map(([k]) => k);
          const rows = flatten(s.effective || s.settings);
          rows.push(['set by clients', explicit.length ? explicit.join(', ') : 'none (defaults)']);
          for (const [k, v] of Object.entries(s)) if (!['name', 'settings', 'effective', 'paused'].includes(k)) rows.push([k, v]);
          keep(root.querySelector('#queue-settings'), 'settings', s, () => kvTable('settings', rows));
        }
        const qv = all.ok ? (all.data.queues || []).find((x) => x.name === name) : null;
        const countsBox = root.querySelector('#queue-counts');
        countsBox.replaceChildren(el('div', {},
          all.ok ? partialNote(all.data) : el('p', { class: 'error-text' }, `The counts could not be read: ${all.status} ${all.data.error || ''}`),
          table('counts', queueHeaders('queue'), qv ? [queueRow(qv, false)] : [])));
        const box = root.querySelector('#queue-tasks');
        if (!tasks.ok) {
          keep(box, 'tasks-view', { err: tasks.data }, () => el('p', { class: 'error-text' }, `The tasks could not be listed: ${tasks.status} ${tasks.data.error || ''}`));
        } else {
          keep(box, 'tasks-view', tasks.data, () => taskList(tasks.data));
        }
        const next = root.querySelector('#next-page');
        next.hidden = !(tasks.ok && tasks.data.next);
        next.dataset.next = (tasks.ok && tasks.data.next) || '';
        root.querySelector('#first-page').hidden = cursors.length === 0 && !after;
      },
    };
  }

  // why tells, in a few words, why a task failed last: an error the API names,
  // or the last answer's status code.
  function why(t) {
    for (const k of ['last_error', 'error', 'dead_reason', 'reason']) if (t[k]) return typeof t[k] === 'string' ? t[k] : JSON.stringify(t[k]);
    if (t.last_status) return 'HTTP ' + t.last_status;
    return '';
  }

  function taskList(d) {
    const tasks = d.tasks || [];
    return el('div', {},
      partialNote(d),
      tasks.length === 0 ? el('p', { class: 'muted', id: 'no-tasks' }, 'No task in this state.') :
        table('tasks', ['task', 'state', 'attempts', 'retries', 'last answer', 'eta', 'next eta', ''], tasks.map((t) =>
          el('tr', { dataset: { id: t.id, state: t.state } },
            el('td', { class: 'id' }, el('a', { href: '#/task/' + q(t.id) }, t.id), t.name ? el('div', { class: 'muted' }, t.name) : null),
            el('td', {}, badge(t.state)),
            el('td', { class: 'num' }, Array.isArray(t.attempts) ? String(t.attempts.length) : value('attempts', t.attempts)),
            el('td', { class: 'num' }, value('retries', t.retries)),
            el('td', {}, why(t)),
            el('td', {}, value('eta', t.eta)),
            el('td', {}, t.next_eta ? value('next_eta', t.next_eta) : ''),
            el('td', {}, t.state === 'dead' ? requeueButton(t.id) : null)))));
  }

  function requeueButton(id) {
    return el('button', {
      type: 'button', class: 'requeue', dataset: { id }, onclick: async (ev) => {
        const b = ev.currentTarget;
        b.disabled = true;
        try {
          const r = await api('POST', `v1/tasks/${q(id)}/retry`);
          if (r.ok) {
            showMessage('info', `Task ${id} re-queued as `, el('a', { id: 'requeued-id', href: '#/task/' + q(r.data.id) }, r.data.id), '.');
          } else showFailure('re-queue', r);
        } catch (e) {
          ignoreAuth(e);
        } finally {
          b.disabled = false;
        }
        if (current) current.refresh().catch(ignoreAuth);
      },
    }, 'Re-queue');
  }

  // armedButton asks for a second click before an action that cannot be undone.
  function armedButton(id, label, confirmLabel, action) {
    let timer = null;
    const b = el('button', { type: 'button', id, class: 'danger' }, label);
    b.addEventListener('click', (ev) => {
      if (!timer) {
        b.textContent = confirmLabel;
        b.classList.add('armed');
        timer = setTimeout(() => { timer = null; b.textContent = label; b.classList.remove('armed'); }, 5000);
        return;
      }
      clearTimeout(timer);
      timer = null;
      b.textContent = label;
      b.classList.remove('armed');
      action(ev);
    });
    return b;
  }

  function taskView(id) {
    let root;
    return {
      mount(container) {
        crumbs(el('a', { href: '#/' }, 'queues'), el('span', { id: 'crumb-queue' }), 'task ' + id);
        root = el('div', { class: 'task' },
          el('h1', {}, 'Task ', el('span', { class: 'id' }, id), ' ', el('span', { id: 'task-state' })),
          el('div', { class: 'actions', id: 'task-actions' }),
          el('div', { id: 'task-body' }));
        container.replaceChildren(root);
      },
      async refresh() {
        await refreshHeader();
        const r = await api('GET', `v1/tasks/${q(id)}`);
        if (!r.ok) {
          keep(root.querySelector('#task-body'), 'task-fields', { err: r.data }, () =>
            el('p', { class: 'error-text' }, r.status === 404 ? 'No such task (or it was forgotten after the dedup window).' : `${r.status} ${r.data.error || ''}`));
          return;
        }
        const t = r.data;
        $('#crumb-queue').replaceChildren(el('a', { href: '#/queue/' + q(t.queue) }, t.queue));
        root.querySelector('#task-state').replaceChildren(badge(t.state));
        keep(root.querySelector('#task-actions'), 'task-buttons', { state: t.state }, () => el('div', {},
          t.state === 'dead' ? requeueButton(t.id) : null,
          FINAL.has(t.state) ? null : armedButton('cancel', 'Cancel', 'Confirm: cancel this task', async () => {
            const c = await api('DELETE', `v1/tasks/${q(id)}`).catch(ignoreAuth);
            if (!c) return;
            if (c.ok) showMessage('info', `Task ${id} cancelled.`);
            else showFailure('cancel', c);
            current && current.refresh().catch(ignoreAuth);
          })));
        // Scalars and small lists as a table; lists of objects (an attempt history)
        // as tables of their own, whatever the API calls them.
        const fields = [];
        const lists = [];
        for (const [k, v] of Object.entries(t)) {
          if (Array.isArray(v) && v.some((x) => x && typeof x === 'object')) lists.push([k, v]);
          else if (v && typeof v === 'object' && !Array.isArray(v)) fields.push(...flatten(v, k + '.'));
          else fields.push([k, v]);
        }
        keep(root.querySelector('#task-body'), 'task-fields', t, () => el('div', {},
          el('section', {}, el('h2', {}, 'Status'), kvTable('task', fields)),
          lists.map(([k, v]) => {
            const cols = [...new Set(v.flatMap((x) => Object.keys(x || {})))];
            return el('section', {}, el('h2', {}, k.replace(/_/g, ' ')),
              table('list-' + k, cols, v.map((x) => el('tr', {}, cols.map((c) => el('td', { class: typeof x[c] === 'string' && x[c].length > 60 ? 'long' : '' }, value(c, x[c])))))));
          })));
      },
    };
  }

  // ---- routing and the refresh loop ----

  let generation = 0;
  let current = null;

  function ignoreAuth(e) {
    if (!(e instanceof AuthRequired)) showMessage('error', String(e && e.message ? e.message : e));
  }

  function parseHash() {
    const h = location.hash.replace(/^#\/?/, '');
    const [path, query] = h.split('?');
    let parts;
    try {
      parts = path.split('/').map(decodeURIComponent);
    } catch {
      parts = [];
    }
    return { parts, params: new URLSearchParams(query || '') };
  }

  function route() {
    const gen = ++generation;
    const { parts, params } = parseHash();
    let view;
    if (parts[0] === 'queue' && parts[1]) view = queueView(parts[1], params);
    else if (parts[0] === 'task' && parts[1]) view = taskView(parts[1]);
    else view = overview();
    current = view;
    $('#login').hidden = true;
    const box = $('#view');
    box.hidden = false;
    view.mount(box);
    loop(view, gen);
  }

  // loop refreshes the view every few seconds while it is shown, the page is
  // visible and "live" is on; one refresh at a time.
  async function loop(view, gen) {
    while (gen === generation) {
      try {
        await view.refresh();
      } catch (e) {
        if (e instanceof AuthRequired) return;
        showMessage('error', String(e && e.message ? e.message : e));
      }
      await sleep(REFRESH_MS);
      while (gen === generation && (!$('#live').checked || document.hidden)) await sleep(500);
    }
  }

  window.addEventListener('hashchange', () => {
    clearMessage();
    route();
  });
  route();
})();
