// emq dashboard. Plain JavaScript, no dependencies: every view is drawn from
// emq-web's JSON API (/api/...), which reads the router's admin socket.
// Data from the router is put in the page as text (never as HTML).
'use strict';

const REFRESH_MS = 2000;
let overview = null;   // the latest /api/overview
let timer = null;

// h('td', {class: 'num'}, 'text', child...) -> element
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function table(headings, rows, numeric) {
  const head = h('tr', {}, headings.map((t, i) =>
    h('th', { class: numeric && numeric.includes(i) ? 'num' : null }, t)));
  const body = rows.map(r => h('tr', {}, r.map((c, i) =>
    (c instanceof Node && c.tagName === 'TD') ? c
      : h('td', { class: numeric && numeric.includes(i) ? 'num' : null }, c ?? '-'))));
  return h('table', {}, h('thead', {}, head), h('tbody', {}, body));
}

function seconds(s) {
  if (s === null || s === undefined) return '-';
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + ' ms';
  return s.toFixed(s < 10 ? 2 : 0) + ' s';
}

function when(unix) {
  if (!unix) return '-';
  const d = new Date(unix * 1000);
  return d.toLocaleString();
}

function ago(unix) {
  if (!unix) return '-';
  const s = Date.now() / 1000 - unix;
  return s < 60 ? s.toFixed(0) + ' s ago' : s < 3600 ? (s / 60).toFixed(0) + ' min ago'
    : (s / 3600).toFixed(1) + ' h ago';
}

function notice(text, bad) {
  const el = document.getElementById('notice');
  el.textContent = text;
  el.style.background = bad ? '#c4320a' : '#1d2330';
  el.className = 'show';
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { el.className = ''; }, 4000);
}

async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  const body = await r.json().catch(() => ({ error: 'not JSON (HTTP ' + r.status + ')' }));
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

// An action: one POST, one admin command on the router.
async function act(url, what) {
  try {
    const r = await fetch(url, { method: 'POST', headers: { 'X-EMQ-Request': '1' } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
    notice(what + ': done' + (body.retried !== undefined ? ' (' + body.retried + ' queued)' : '')
      + (body.purged !== undefined ? ' (' + body.purged + ' deleted)' : ''));
    return body;
  } catch (e) {
    notice(what + ': ' + e.message, true);
    return null;
  } finally {
    refresh();
  }
}

// A legend's colour sample: SVG attributes, as the page's CSP allows no
// inline styles.
function swatch(color) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', 12); svg.setAttribute('height', 8);
  const r = document.createElementNS(ns, 'rect');
  r.setAttribute('y', 3); r.setAttribute('width', 10); r.setAttribute('height', 3);
  r.setAttribute('fill', color);
  svg.append(r);
  return svg;
}

// A line plot in SVG: series [{name, color, points: [[t, v]...]}].
function plot(title, series, unit) {
  const W = 470, H = 160, L = 50, R = 16, B = 20, T = 8;
  const all = series.flatMap(s => s.points).filter(p => p[1] !== null);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', W); svg.setAttribute('height', H);
  svg.setAttribute('role', 'img'); svg.setAttribute('aria-label', title);
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  // The window: the history there is, from one minute up to ten.
  const t1 = Date.now() / 1000;
  const first = Math.min(...series.flatMap(s => s.points.map(p => p[0])), t1);
  const span = Math.min(600, Math.max(60, Math.ceil((t1 - first) / 60) * 60));
  const t0 = t1 - span;
  const vmax = Math.max(unit === 's' ? 0.001 : 1, ...all.map(p => p[1])) * 1.1;
  const x = t => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = v => H - B - (H - B - T) * v / vmax;
  for (let i = 0; i <= 4; i++) {
    const v = vmax * i / 4;
    el('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#e4e7ec' });
    el('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#667085' },
       unit === 's' ? seconds(v) : v.toFixed(v < 10 ? 1 : 0));
  }
  const tick = span <= 60 ? 10 : span <= 180 ? 30 : span <= 300 ? 60 : 120;
  for (let s = 0; s <= span; s += tick)
    el('text', { x: x(t1 - s), y: H - 6, 'text-anchor': s ? 'middle' : 'end', 'font-size': 10,
                 fill: '#667085' }, s ? '-' + (s % 60 ? s + 's' : s / 60 + 'm') : 'now');
  for (const s of series) {
    const pts = s.points.filter(p => p[1] !== null && p[0] >= t0);
    if (pts.length < 1) continue;
    el('polyline', { points: pts.map(p => x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join(' '),
                     fill: 'none', stroke: s.color, 'stroke-width': 1.6, class: 'series' });
  }
  return h('div', { class: 'plot' }, h('h3', {}, title), svg,
    h('div', { class: 'legend' }, series.map(s => h('span', {}, swatch(s.color), s.name))));
}

const views = {
  overview(root) {
    const st = overview.status || {};
    const hist = overview.history || [];
    // The cards' rates: the mean of the last 5 samples (a burst is not 0).
    const recent = hist.slice(-5);
    const mean = k => recent.reduce((a, p) => a + (p[k] || 0), 0) / Math.max(1, recent.length);
    const last = { done: mean('done'), failed: mean('failed') };
    const queues = Object.values(st.queues || {});
    const sum = k => queues.reduce((a, q) => a + (q[k] || 0), 0);
    const card = (n, l) => h('div', { class: 'card' }, h('div', { class: 'n' }, n),
                             h('div', { class: 'l' }, l));
    root.append(h('div', { class: 'cards' },
      card((last.done || 0).toFixed(1), 'done / s'),
      card((last.failed || 0).toFixed(1), 'failed / s'),
      card(sum('waiting'), 'waiting'), card(sum('inflight'), 'running'),
      card(sum('scheduled'), 'scheduled'), card(sum('retrying'), 'retrying'),
      card((st.store || {}).dead ?? '-', 'dead'),
      card(st.job_managers ?? '-', 'job managers'),
      card(sum('processed'), 'processed'), card(sum('failed'), 'failed for good')));
    const pts = k => hist.map(p => [p.t, p[k]]);
    root.append(h('h2', {}, 'Recent history (up to 10 minutes)'), h('div', { class: 'plots' },
      plot('Throughput (jobs/s)', [
        { name: 'done', color: '#12805c', points: pts('done') },
        { name: 'failed', color: '#c4320a', points: pts('failed') }]),
      plot('Latency', [
        { name: 'wait p50', color: '#2f5bd3', points: pts('wait_p50') },
        { name: 'wait p95', color: '#8aa4ec', points: pts('wait_p95') },
        { name: 'run p50', color: '#b54708', points: pts('run_p50') },
        { name: 'run p95', color: '#f5b36b', points: pts('run_p95') }], 's'),
      plot('Backlog', [
        { name: 'waiting', color: '#6938ef', points: pts('waiting') },
        { name: 'running', color: '#12805c', points: pts('running') }])));
    const proc = ((st.metrics || {}).process) || {};
    root.append(h('h2', {}, 'Router'), h('dl', {},
      h('dt', {}, 'admin socket'), h('dd', {}, overview.admin),
      h('dt', {}, 'store'), h('dd', {}, (st.store || {}).kind + ' ' + ((st.store || {}).path || '')
        + ((st.store || {}).failing ? ' — FAILING: new jobs refused' : '')),
      h('dt', {}, 'memory'), h('dd', {}, proc.rss_bytes ? (proc.rss_bytes / 1048576).toFixed(1) + ' MiB' : '-'),
      h('dt', {}, 'CPU'), h('dd', {}, proc.cpu_seconds !== undefined ? proc.cpu_seconds.toFixed(1) + ' s' : '-'),
      h('dt', {}, 'started'), h('dd', {}, when(proc.start_time))));
  },

  queues(root) {
    const st = overview.status || {};
    const rows = Object.entries(st.queues || {}).sort().map(([name, q]) => [
      name, q.paused ? 'paused' : 'active', q.waiting, q.inflight, q.scheduled, q.retrying,
      q.dead, q.processed, q.failed, q.hwm, q.servers,
      h('td', {}, queueButtons(name, q.paused))]);
    root.append(h('h2', {}, 'Queues'),
      rows.length ? table(['queue', 'state', 'waiting', 'running', 'scheduled', 'retrying', 'dead',
        'processed', 'failed', 'hwm', 'job managers', ''], rows, [2, 3, 4, 5, 6, 7, 8, 9, 10])
        : h('p', { class: 'muted' }, 'no queues yet'));
  },

  jobmanagers(root) {
    const jms = (overview.workers || {}).connected_workers || {};
    const rows = [], workers = [];
    for (const [id, jm] of Object.entries(jms)) {
      const stats = jm.stats || {};
      const quiet = !!jm.quiet, can = !!(overview.capabilities || {}).jobmanager_quiet;
      rows.push([id, (jm.queues || []).map(q => q[1] + ' (' + q[0] + ')').join(', '),
        jm.available_slots, jm.inflight, jm.processed, stats.workers ?? '-',
        stats.idle_workers ?? '-', quiet ? 'quiet' : (stats.state || '-'), ago(jm.hb),
        h('td', {}, can ? h('button', { class: quiet ? 'unquiet' : 'quiet', 'data-jobmanager': id,
          onclick: () => act('/api/jobmanager/' + (quiet ? 'resume' : 'quiet') + '?id='
            + encodeURIComponent(id), (quiet ? 'resume ' : 'quiet ') + id) },
          quiet ? 'Resume' : 'Quiet') : null)]);
      for (const [msgid, job] of Object.entries(stats.jobs_in_flight || {}))
        workers.push([job.pid, id, job.queue,
          h('td', { class: 'mono' }, h('a', { href: '#/job/' + encodeURIComponent(msgid) }, msgid)),
          job.started ? seconds(Date.now() / 1000 - job.started) : '-',
          job.rss_kb !== undefined ? (job.rss_kb / 1024).toFixed(1) + ' MiB' : '-',
          job.cpu_s !== undefined ? job.cpu_s.toFixed(2) + ' s' : '-']);
    }
    root.append(h('h2', {}, 'Job managers'),
      rows.length ? table(['job manager', 'queues', 'free slots', 'in flight', 'processed',
        'workers', 'idle', 'state', 'last heartbeat', ''], rows, [2, 3, 4, 5, 6])
        : h('p', { class: 'muted' }, 'no job manager connected'),
      h('h2', {}, 'Busy workers'),
      workers.length ? table(['pid', 'job manager', 'queue', 'job', 'running for', 'RSS', 'CPU'],
        workers, [0, 5, 6]) : h('p', { class: 'muted' }, 'every worker is idle'));
  },

  async jobs(root) {
    const st = overview.status || {};
    const counts = Object.entries(st.queues || {}).filter(([, q]) => q.scheduled || q.retrying)
      .map(([name, q]) => [name, q.scheduled, q.retrying]);
    root.append(h('h2', {}, 'Scheduled and retrying'),
      counts.length ? table(['queue', 'scheduled', 'retrying'], counts, [1, 2])
        : h('p', { class: 'muted' }, 'none'));
    // The jobs themselves, when the router lists them (its job admin).
    if ((overview.capabilities || {}).job_admin)
      for (const state of ['scheduled', 'waiting', 'running']) {
        let page;
        try { page = await getJSON('/api/jobs?state=' + state + '&limit=50'); } catch (e) {
          root.append(h('p', { class: 'muted' }, state + ' jobs: ' + e.message)); continue;
        }
        const jobs = page.jobs || [];
        if (!jobs.length) continue;
        root.append(h('h2', {}, state[0].toUpperCase() + state.slice(1) + ' jobs ('
          + (page.total ?? jobs.length) + (page.total > jobs.length ? ', first ' + jobs.length : '') + ')'),
          table(['msgid', 'queue', 'attempt', state === 'scheduled' ? 'runs at' : 'since', ''],
            jobs.map(j => [
              h('td', { class: 'mono' }, h('a', { href: '#/job/' + encodeURIComponent(j.msgid) }, j.msgid)),
              j.queue, j.attempt ?? '-',
              when(state === 'scheduled' ? j.run_at : (j.started_at || j.created_at)),
              h('td', {}, h('button', { class: 'cancel danger', 'data-msgid': j.msgid,
                onclick: () => act('/api/cancel?id=' + encodeURIComponent(j.msgid), 'cancel ' + j.msgid) },
                'Cancel'))]), [2]));
      }
    root.append(
      h('p', {}, 'Cancel a waiting, scheduled or retrying job: ',
        h('input', { id: 'cancel-id', placeholder: 'msgid', size: 40, class: 'mono' }), ' ',
        h('button', { class: 'danger', id: 'cancel-button', onclick: () => {
          const id = document.getElementById('cancel-id').value.trim();
          if (id) act('/api/cancel?id=' + encodeURIComponent(id), 'cancel ' + id);
        } }, 'Cancel')));
    let dead;
    try { dead = await getJSON('/api/dead'); } catch (e) {
      root.append(h('p', { class: 'muted' }, 'dead jobs: ' + e.message)); return;
    }
    const rows = (dead.dead || []).map(d => [
      h('td', { class: 'mono' }, h('a', { href: '#/job/' + encodeURIComponent(d.msgid) }, d.msgid)),
      d.queue, d.attempts, d.status, h('td', { class: 'err' }, d.error || ''), ago(d.ended_at),
      h('td', {}, h('button', { class: 'retry', 'data-msgid': d.msgid,
        onclick: () => act('/api/dead/retry?id=' + encodeURIComponent(d.msgid), 'retry ' + d.msgid) },
        'Retry'), ' ',
        h('button', { class: 'delete danger', 'data-msgid': d.msgid,
          onclick: () => act('/api/dead/delete?id=' + encodeURIComponent(d.msgid), 'delete ' + d.msgid) },
        'Delete'))]);
    root.append(h('h2', {}, 'Dead jobs (' + (dead.total ?? rows.length) + ')'),
      rows.length ? h('div', {},
        h('p', {}, h('button', { id: 'retry-all', onclick: () => act('/api/dead/retry?id=*', 'retry all') },
          'Retry all'), ' ',
          h('button', { class: 'danger', id: 'purge-all', onclick: () => {
            if (confirm('Delete every dead job?')) act('/api/dead/purge', 'delete all dead jobs');
          } }, 'Delete all')),
        table(['msgid', 'queue', 'attempts', 'status', 'error', 'ended', ''], rows, [2]))
        : h('p', { class: 'muted' }, 'no dead jobs'));
  },

  async job(root, id) {
    root.append(h('h2', {}, 'Job ', h('span', { class: 'mono' }, id)));
    let job;
    try { job = await getJSON('/api/job?id=' + encodeURIComponent(id)); } catch (e) {
      root.append(h('p', { class: 'muted' }, e.message)); return;
    }
    const rows = [['state', job.state || 'unknown']];
    // What the router's job admin shows, when it has it.
    for (const k of ['queue', 'attempt', 'retries_left', 'headers', 'epoch'])
      if (job[k] !== undefined && job[k] !== '') rows.push([k.replace('_', ' '), job[k]]);
    if (job.created_at) rows.push(['submitted', when(job.created_at)]);
    if (job.run_at) rows.push(['runs at', when(job.run_at)]);
    if (job.jobmanager) rows.push(['job manager', job.jobmanager]);
    if (job.worker) rows.push(['worker pid', job.worker.pid], ['queue', job.worker.queue],
      ['started', when(job.worker.started)]);
    if (job.dead) rows.push(['queue', job.dead.queue], ['attempts', job.dead.attempts],
      ['error', job.dead.error], ['created', when(job.dead.created_at)], ['ended', when(job.dead.ended_at)]);
    if (job.outcome) rows.push(['outcome', job.outcome.status], ['usage', job.outcome.usage || '-'],
      job.outcome.error !== undefined ? ['error', job.outcome.error]
        : ['value', JSON.stringify(job.outcome.value)]);
    root.append(h('dl', { id: 'job-detail' }, rows.flatMap(([k, v]) =>
      [h('dt', {}, k), h('dd', {}, h('pre', {}, String(v ?? '-')))])));
    if (Array.isArray(job.history) && job.history.length)
      root.append(h('h2', {}, 'History'), table(['when', 'event', 'detail'],
        job.history.map(e => [when(e.at), e.event,
          Object.entries(e).filter(([k]) => k !== 'at' && k !== 'event')
            .map(([k, v]) => k + '=' + (typeof v === 'object' ? JSON.stringify(v) : v)).join(' ')])));
    const buttons = [];
    if (job.state === 'dead')
      buttons.push(h('button', { class: 'retry', onclick: () =>
        act('/api/dead/retry?id=' + encodeURIComponent(id), 'retry ' + id) }, 'Retry'), ' ',
        h('button', { class: 'danger', onclick: () =>
          act('/api/dead/delete?id=' + encodeURIComponent(id), 'delete ' + id) }, 'Delete'));
    if (job.state === 'running' || job.state === 'waiting')
      buttons.push(h('button', { class: 'danger', onclick: () =>
        act('/api/cancel?id=' + encodeURIComponent(id), 'cancel ' + id) }, 'Cancel'));
    root.append(h('p', {}, buttons));
  },

  schedules(root) {
    const connected = (overview.schedulers || {}).connected_schedulers || {};
    let chosen = null, leader = null;
    const members = Object.entries(connected).map(([identity, s]) => {
      const st = s.stats || {};
      if (st.leader) { chosen = st; leader = st.id; } else if (!chosen && st.schedules) chosen = st;
      return [st.id || identity, st.mode || '-', st.leader ? 'leader' : 'standby', ago(s.hb)];
    });
    root.append(h('h2', {}, 'Schedulers'),
      members.length ? table(['scheduler', 'mode', 'role', 'last heartbeat'], members)
        : h('p', { class: 'muted' }, 'no scheduler connected'),
      h('p', {}, 'leader: ', h('b', { id: 'leader' }, leader || 'none')));
    const rows = ((chosen || {}).schedules || []).map(s => [s.name, s.spec, s.queue,
      when(s.next_fire), when(s.last_fire), s.last_outcome || '-',
      s.runs_left < 0 ? '-' : s.runs_left]);
    root.append(h('h2', {}, 'Schedules'),
      rows.length ? table(['name', 'spec', 'queue', 'next fire', 'last fire', 'last outcome',
        'runs left'], rows, [6]) : h('p', { class: 'muted' }, 'no schedules'));
  },
};

// Queue pause / resume / purge need the router's queue admin commands
// (QUEUE_PAUSE, QUEUE_RESUME, QUEUE_PURGE); shown disabled without them.
function queueButtons(name, paused) {
  const can = !!(overview.capabilities || {}).queue_admin;
  const title = can ? null : 'this router has no queue admin commands';
  const b = (label, action, cls, off) => h('button', {
    class: action + (cls ? ' ' + cls : ''), disabled: !can || off, title, 'data-queue': name,
    onclick: () => {
      if (action === 'purge' && !confirm('Cancel every waiting job of ' + name + '?')) return;
      act('/api/queue/' + action + '?name=' + encodeURIComponent(name), action + ' ' + name);
    },
  }, label);
  return [b('Pause', 'pause', null, paused), ' ', b('Resume', 'resume', null, !paused), ' ',
          b('Purge', 'purge', 'danger')];
}

function route() {
  const parts = (location.hash || '#/overview').slice(2).split('/');
  const name = views[parts[0]] ? parts[0] : 'overview';
  return { name, arg: parts[1] ? decodeURIComponent(parts.slice(1).join('/')) : null };
}

let drawing = false;
async function refresh() {
  // Do not redraw under someone typing a msgid.
  if (drawing || (document.activeElement && document.activeElement.tagName === 'INPUT')) return;
  drawing = true;
  try {
    overview = await getJSON('/api/overview');
    const pill = document.getElementById('router-state');
    pill.textContent = overview.up ? 'router up' : 'router not answering';
    pill.className = 'pill ' + (overview.up ? 'up' : 'down');
    const { name, arg } = route();
    document.querySelectorAll('nav a').forEach(a =>
      a.classList.toggle('active', a.dataset.view === name));
    const next = h('div', { id: 'view-' + name });
    await views[name](next, arg);
    const root = document.getElementById('view');
    root.replaceChildren(next);
    root.dataset.view = name;
    root.dataset.loaded = String(Date.now());
  } catch (e) {
    const pill = document.getElementById('router-state');
    pill.textContent = 'emq-web: ' + e.message;
    pill.className = 'pill down';
  } finally {
    drawing = false;
  }
}

window.addEventListener('hashchange', refresh);
window.addEventListener('DOMContentLoaded', () => {
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
});
