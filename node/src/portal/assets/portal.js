// The portal's behaviour. Plain ES2020, no framework and no inline code anywhere (the page's
// Content-Security-Policy forbids it): everything hangs off data-* attributes the server renders.
//
//   form[data-api="METHOD /api/v1/..."]  sends its named fields as JSON (data-type on a field:
//       number | bool | list | json | mib (a number of MiB sent as bytes) | holidays (lines
//       "YYYY-MM-DD[..YYYY-MM-DD] name" → [{from, to, name}]); empty fields are left out, or sent as null
//       with data-empty="null"; dotted names nest: grants.monitor, and a number makes a list:
//       hours.0.from; the fields inside a [data-optional] element (one item of a list: a row) are
//       left out while its [data-row-key] field is empty, and the list closes up; an unchecked
//       checkbox with data-null-unless="name" sends that field as null), then does data-then:
//       reload | redirect:/path | show-secret | show-provisioned (a device's token and URLs) |
//       notice | totp. `{field}` in the URL is that field's value, as one path segment (required).
//   button[data-api]                     the same for one click (data-confirm asks first,
//       data-body is the JSON body).
//   form[data-login]                     the sign-in form (asks for the second factor when needed).
//   form[data-import]                    uploads a CSV file and shows the per-row report
//       (data-columns names its three columns, data-shown the button that reloads) and the
//       secrets or tokens it made, once.
//   form[data-put-file="/url/{field}"]   PUTs its file input's file to the URL (`{field}` filled
//       in as for data-api) with ?name= its `name` field or the file's name, then does data-then.
//   form[data-upload]                    uploads its file input's WAV file as the body of a POST to
//       data-upload?kind=…&name=… (the name defaults to the file's), then does data-then; with
//       data-then="greeting", then sends data-mailbox (JSON) with its field named by the form's
//       `use` field set to the new file's id, as data-mailbox-api="METHOD /url", and reloads.
//   select[data-autosubmit]              submits its form as soon as it changes.
//   [data-live]                          the monitor, kept current from the server's event stream.
//   button[data-network]                 the setup wizard's network check.
//
// Data from the server is only ever put into the page as text (textContent), never as HTML.
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const csrf = () => $('meta[name="csrf-token"]')?.content ?? '';

  // A path on this site, or '/'.
  const safePath = (p) =>
    typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') && !p.startsWith('/\\') ? p : '/';

  // One API call: the session cookie, and the CSRF token on every change.
  async function call(method, url, body, contentType = 'application/json') {
    // Marks the request as the portal's script: the API then sends no HTTP Basic challenge with a
    // 401, which would make the browser open its own password dialog.
    const headers = { Accept: 'application/json', 'X-Requested-With': 'pbx-portal' };
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf();
    const init = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = contentType;
      init.body = typeof body === 'string' || body instanceof Blob ? body : JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch {
      return { ok: false, status: 0, data: { error: 'network', message: 'The server could not be reached.' } };
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { message: text };
      }
    }
    const signingIn = url === '/api/v1/session' && method === 'POST';
    if (resp.status === 401 && !signingIn) {
      location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
    } else if (data?.error === 'password_change_required') {
      location.assign('/account/password');
    } else if (data?.error === 'totp_enrolment_required') {
      location.assign('/account/totp');
    }
    return { ok: resp.ok, status: resp.status, data };
  }

  const messageOf = (res) => res.data?.message || `The request failed (HTTP ${res.status}).`;

  // "METHOD /url" → [METHOD, url].
  function spec(s) {
    const i = s.indexOf(' ');
    return [s.slice(0, i).toUpperCase(), s.slice(i + 1).trim()];
  }

  // An element with attributes and text or element children (never HTML).
  function h(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v === null || v === undefined) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  const badge = (kind, text) => h('span', { class: `badge badge-${kind}` }, text);

  // `{name}` in a template → the answer's field.
  const fill = (template, data) => template.replace(/\{(\w+)\}/g, (_, k) => String(data?.[k] ?? ''));

  // ---- Messages ------------------------------------------------------------------------------

  function flash(text, kind = 'bad') {
    const box = $('#flash');
    if (!box) {
      window.alert(text);
      return;
    }
    box.className = `flash flash-${kind}`;
    box.textContent = text;
    box.hidden = false;
    box.scrollIntoView({ block: 'nearest' });
  }

  function clearErrors(form) {
    for (const p of $$('.field-error, .form-error', form)) {
      p.textContent = '';
      p.hidden = true;
    }
    for (const el of $$('[aria-invalid]', form)) el.removeAttribute('aria-invalid');
  }

  // The API says `field: reason` (or `field[2]: reason`, `list[0].field: reason`, or `field must …`):
  // the reason goes under that field when the form has it (`list.0.field`, else `list.field`, else
  // `list`: a form names a list's items by number, or has one field for the whole list), otherwise
  // at the top of the form.
  function showError(form, message) {
    const m = /^([A-Za-z_][\w.]*(?:\[\d+\][\w.]*)*)(:\s*|\s)/.exec(message);
    const names = m
      ? [m[1].replace(/\[(\d+)\]/g, '.$1'), m[1].replace(/\[\d+\]/g, ''), m[1].replace(/\[.*$/, '')]
      : [];
    const slots = $$('.field-error', form);
    const name = names.find((n) => slots.some((p) => p.dataset.for === n));
    const slot = name && slots.find((p) => p.dataset.for === name);
    if (slot) {
      slot.textContent = m[2].startsWith(':') ? message.slice(m[0].length) : message;
      slot.hidden = false;
      const input = form.elements.namedItem(name);
      if (input instanceof Element) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
      return;
    }
    const top = $('.form-error', form);
    if (top) {
      top.textContent = message;
      top.hidden = false;
    } else {
      flash(message);
    }
  }

  function busy(form, on) {
    for (const b of $$('button[type="submit"], input[type="submit"]', form)) b.disabled = on;
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  // ---- Forms → JSON --------------------------------------------------------------------------

  function getPath(obj, name) {
    return name.split('.').reduce((o, k) => (o === undefined ? undefined : o[k]), obj);
  }

  function setPath(obj, name, value) {
    const keys = name.split('.');
    let o = obj;
    keys.slice(0, -1).forEach((k, i) => {
      if (typeof o[k] !== 'object' || o[k] === null) o[k] = /^\d+$/.test(keys[i + 1]) ? [] : {};
      o = o[k];
    });
    o[keys[keys.length - 1]] = value;
  }

  function fieldValue(el) {
    const type = el.dataset.type || 'string';
    if (el.type === 'checkbox') return el.checked;
    const raw = el.value;
    if (raw.trim() === '') return el.dataset.empty === 'null' ? null : undefined;
    switch (type) {
      case 'number':
        return Number(raw);
      case 'mib':
        return Math.round(Number(raw) * 1024 * 1024);
      case 'bool':
        return raw === 'true';
      case 'list':
        return raw.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
      case 'json':
        try {
          return JSON.parse(raw);
        } catch {
          throw new Error(`${el.name}: not valid JSON`);
        }
      case 'holidays':
        return raw.split('\n').map((l) => l.trim()).filter(Boolean).map((line, i) => {
          const m = /^(\d{4}-\d{2}-\d{2})(?:\s*\.\.\s*(\d{4}-\d{2}-\d{2}))?(?:\s+(.*))?$/.exec(line);
          if (!m) throw new Error(`${el.name}: line ${i + 1} is not "YYYY-MM-DD[..YYYY-MM-DD] name"`);
          return { from: m[1], to: m[2] ?? m[1], name: m[3] ?? '' };
        });
      default:
        return raw;
    }
  }

  // Whether `el` is in an optional row of `form` whose key field is empty.
  function inEmptyRow(form, el) {
    const row = el.closest('[data-optional]');
    if (!row || !form.contains(row)) return false;
    const key = $('[data-row-key]', row);
    return key !== null && key.value.trim() === '';
  }

  // `v` with the holes left by skipped rows taken out of its lists.
  function closeUp(v) {
    if (Array.isArray(v)) return v.filter(() => true).map(closeUp);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, closeUp(x)]));
    return v;
  }

  function formBody(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || 'skip' in el.dataset) continue;
      if (['file', 'submit', 'button', 'reset'].includes(el.type)) continue;
      if (inEmptyRow(form, el)) continue;
      if (el.type === 'radio' && !el.checked) continue;
      if (el.type === 'checkbox' && el.dataset.type === 'list') {
        // A group of checkboxes sharing a name: the values of those checked.
        const list = getPath(body, el.name) ?? [];
        if (el.checked) list.push(el.value);
        setPath(body, el.name, list);
        continue;
      }
      const v = fieldValue(el);
      if (v !== undefined) setPath(body, el.name, v);
    }
    // A part of the body that a checkbox turns off: sent as null.
    for (const box of $$('input[type="checkbox"][data-null-unless]', form)) {
      if (!box.checked) setPath(body, box.dataset.nullUnless, null);
    }
    return closeUp(body);
  }

  // ---- What happens after a change succeeded ------------------------------------------------

  // `extra`: [label, text] lines shown under the value (a device's URLs).
  function showOnce(label, value, extra = []) {
    const panel = $('#shown-once');
    if (!panel) {
      window.alert([`${label}: ${value}`, ...extra.map(([k, v]) => `${k}: ${v}`)].join('\n'));
      location.reload();
      return;
    }
    $('#shown-once-label').textContent = label;
    $('#shown-once-value').textContent = value;
    const more = $('#shown-once-extra');
    if (more) {
      more.replaceChildren(...extra.flatMap(([k, v], i) => [
        i > 0 ? h('br') : null, h('span', { class: 'muted' }, `${k}: `), h('code', { class: 'shown-once-url' }, v),
      ].filter(Boolean)));
      more.hidden = extra.length === 0;
    }
    panel.hidden = false;
    $('#shown-once-copy')?.focus();
  }

  function showTotp(d) {
    $('#totp-secret').textContent = d.secret ?? '';
    $('#totp-uri').textContent = d.uri ?? '';
    $('#totp-enrol').hidden = false;
    const start = $('#totp-start');
    if (start) start.hidden = true;
    $('#totp-code')?.focus();
  }

  // The URLs a device answer gives, as lines for the shown-once panel.
  function provisionedUrls(d) {
    const u = d.urls ?? {};
    return [
      ['URL with the token', u.with_token],
      ['URL for HTTP Basic', u.basic],
      ['Basic user', u.basic_user],
      ['Directory (phones that add their file name)', u.directory],
    ].filter(([, v]) => v);
  }

  function after(el, res) {
    const then = el.dataset.then || 'reload';
    const d = res.data ?? {};
    if (then.startsWith('redirect:')) {
      location.assign(safePath(then.slice('redirect:'.length)));
    } else if (then === 'show-secret') {
      const secret = d.generated_secret ?? d.secret ?? d.password;
      if (secret) showOnce(fill(el.dataset.secretLabel || 'Generated secret', d), secret);
      else location.reload();
    } else if (then === 'show-provisioned') {
      if (d.token) showOnce(fill(el.dataset.secretLabel || 'Provisioning token', d), d.token, provisionedUrls(d));
      else location.reload();
    } else if (then === 'notice') {
      flash(fill(el.dataset.notice || 'Done.', d), 'ok');
      if (el instanceof HTMLFormElement && 'resetAfter' in el.dataset) el.reset();
    } else if (then === 'totp') {
      showTotp(d);
    } else {
      location.reload();
    }
  }

  async function submitApi(form) {
    clearErrors(form);
    for (const el of $$('[data-match]', form)) {
      const other = form.elements.namedItem(el.dataset.match);
      if (other && other.value !== el.value) {
        showError(form, `${el.name}: does not match`);
        return;
      }
    }
    let body;
    try {
      body = formBody(form);
    } catch (e) {
      showError(form, e.message);
      return;
    }
    const [method, template] = spec(form.dataset.api);
    let missing = null;
    const url = template.replace(/\{(\w+)\}/g, (_, k) => {
      const v = typeof body[k] === 'string' ? body[k].trim() : '';
      if (!v && !missing) missing = k;
      return encodeURIComponent(v);
    });
    if (missing) {
      showError(form, `${missing}: required`);
      return;
    }
    busy(form, true);
    const res = await call(method, url, method === 'DELETE' ? undefined : body);
    busy(form, false);
    if (!res.ok) showError(form, messageOf(res));
    else after(form, res);
  }

  async function clickApi(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const [method, url] = spec(button.dataset.api);
    button.disabled = true;
    const res = await call(method, url, button.dataset.body);
    button.disabled = false;
    if (!res.ok) flash(messageOf(res));
    else after(button, res);
  }

  // ---- Sign-in -------------------------------------------------------------------------------

  async function login(form) {
    clearErrors(form);
    const totp = $('#login-totp', form);
    const totpField = $('#login-totp-field', form);
    const body = {
      username: form.elements.namedItem('username').value,
      password: form.elements.namedItem('password').value,
      cookie: true,
    };
    if (!totpField.hidden && totp.value.trim()) body.totp_code = totp.value.trim();
    busy(form, true);
    const res = await call('POST', '/api/v1/session', body);
    busy(form, false);
    if (res.ok) {
      const d = res.data ?? {};
      let next = safePath(form.dataset.next || '/');
      if (d.must_change_password) next = '/account/password';
      else if (d.needs_totp) next = '/account/totp';
      location.assign(next);
      return;
    }
    if (res.status === 401 && res.data?.error === 'totp_required') {
      totpField.hidden = false;
      totp.required = true;
      totp.focus();
      showError(form, res.data.message || 'Enter the code from your authenticator app.');
      return;
    }
    showError(form, res.status === 401 ? 'Wrong user name, password or code.' : messageOf(res));
  }

  // ---- CSV import ----------------------------------------------------------------------------

  async function importCsv(form) {
    clearErrors(form);
    const input = $('input[type="file"]', form);
    const file = input?.files?.[0];
    if (!file) {
      showError(form, `${input?.name ?? 'file'}: choose a CSV file`);
      return;
    }
    const text = await file.text();
    busy(form, true);
    const res = await call('POST', form.dataset.import, text, 'text/csv');
    busy(form, false);
    if (!res.ok) {
      showError(form, messageOf(res));
      return;
    }
    const report = $(form.dataset.report || '#import-report');
    const d = res.data ?? {};
    const errors = Array.isArray(d.errors) ? d.errors : [];
    // Extensions report {line, number, message}; contacts {row, field, message}.
    const rows = errors.map((e) => h('tr', {}, h('td', { class: 'num' }, e.line ?? e.row ?? ''), h('td', {}, e.number ?? e.field ?? ''), h('td', {}, e.message ?? '')));
    const [c1, c2, c3] = (form.dataset.columns || 'Line,Number,Problem').split(',');
    const secrets = (Array.isArray(d.extensions) ? d.extensions : []).filter((x) => x.generated_secret);
    // Devices report the token and URLs of each one added.
    const tokens = (Array.isArray(d.devices) ? d.devices : []).filter((x) => x.token);
    report.replaceChildren(
      h('p', { class: 'import-summary', id: 'import-summary' },
        `Created ${d.created ?? 0}; ${errors.length} row${errors.length === 1 ? '' : 's'} refused.`),
      errors.length
        ? h('table', { class: 'data', id: 'import-errors' },
          h('thead', {}, h('tr', {}, h('th', {}, c1), h('th', {}, c2), h('th', {}, c3))),
          h('tbody', {}, ...rows))
        : null,
      secrets.length
        ? h('div', {},
          h('p', { class: 'hint' }, 'Generated SIP secrets, shown once: copy them now.'),
          h('table', { class: 'data', id: 'import-secrets' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Number'), h('th', {}, 'SIP secret'))),
            h('tbody', {}, ...secrets.map((x) => h('tr', {}, h('td', {}, x.number), h('td', {}, h('code', {}, x.generated_secret)))))))
        : null,
      tokens.length
        ? h('div', {},
          h('p', { class: 'hint' }, 'Provisioning tokens, shown once: copy them now.'),
          h('table', { class: 'data', id: 'import-tokens' },
            h('thead', {}, h('tr', {}, h('th', {}, 'MAC'), h('th', {}, 'Token'), h('th', {}, 'URL with the token'))),
            h('tbody', {}, ...tokens.map((x) => h('tr', {}, h('td', { class: 'mono' }, x.mac), h('td', {}, h('code', {}, x.token)), h('td', {}, h('code', {}, x.urls?.with_token ?? '')))))))
        : null,
      (d.created ?? 0) > 0 ? h('button', { type: 'button', class: 'btn', dataset: { reload: '' } }, form.dataset.shown || 'Show the new extensions') : null,
    );
    report.hidden = false;
  }

  // ---- Audio upload --------------------------------------------------------------------------

  async function uploadAudio(form) {
    clearErrors(form);
    const input = $('input[type="file"]', form);
    const file = input?.files?.[0];
    if (!file) {
      showError(form, 'body: choose a WAV file');
      return;
    }
    const kind = form.elements.namedItem('kind')?.value ?? '';
    const typed = form.elements.namedItem('name')?.value.trim() ?? '';
    const name = typed || file.name.replace(/\.wav$/i, '');
    const base = form.dataset.upload;
    const sep = base.includes('?') ? '&' : '?';
    const url = `${base}${sep}kind=${encodeURIComponent(kind)}&name=${encodeURIComponent(name)}`;
    busy(form, true);
    const res = await call('POST', url, file, 'audio/wav');
    busy(form, false);
    if (res.ok && form.dataset.then === 'greeting') useGreeting(form, res.data?.id);
    else if (res.ok) after(form, res);
    else if (res.status === 413) showError(form, 'The file is larger than the server accepts.');
    else showError(form, messageOf(res));
  }

  // Points the mailbox at a greeting just uploaded.
  async function useGreeting(form, id) {
    let body;
    try {
      body = JSON.parse(form.dataset.mailbox || '{}');
    } catch {
      body = {};
    }
    const use = form.elements.namedItem('use')?.value;
    if (use && id) body[use] = id;
    const [method, url] = spec(form.dataset.mailboxApi);
    busy(form, true);
    const res = await call(method, url, body);
    busy(form, false);
    if (res.ok) location.reload();
    else showError(form, messageOf(res));
  }

  // ---- File upload by PUT (firmware) ---------------------------------------------------------

  async function putFile(form) {
    clearErrors(form);
    const input = $('input[type="file"]', form);
    const file = input?.files?.[0];
    if (!file) {
      showError(form, 'body: choose a file');
      return;
    }
    let missing = null;
    const url = form.dataset.putFile.replace(/\{(\w+)\}/g, (_, k) => {
      const v = form.elements.namedItem(k)?.value?.trim() ?? '';
      if (!v && !missing) missing = k;
      return encodeURIComponent(v);
    });
    if (missing) {
      showError(form, `${missing}: required`);
      return;
    }
    const name = form.elements.namedItem('name')?.value.trim() || file.name;
    busy(form, true);
    const res = await call('PUT', `${url}?name=${encodeURIComponent(name)}`, file, 'application/octet-stream');
    busy(form, false);
    if (res.ok) after(form, res);
    else if (res.status === 413) showError(form, 'The file is larger than the server accepts.');
    else showError(form, messageOf(res));
  }

  // ---- Times and durations -------------------------------------------------------------------

  function localTimes(root = document) {
    for (const t of $$('time[data-ms]', root)) {
      const d = new Date(Number(t.dataset.ms));
      if (!Number.isNaN(d.getTime())) t.textContent = d.toLocaleString();
    }
  }

  function fmtDuration(secs) {
    const hh = Math.floor(secs / 3600);
    const mm = Math.floor(secs / 60) % 60;
    const ss = String(secs % 60).padStart(2, '0');
    return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
  }

  function startDurations(root = document) {
    const now = Date.now();
    for (const c of $$('[data-secs]', root)) c.dataset.from = String(now);
  }

  function tick() {
    const now = Date.now();
    for (const c of $$('[data-secs]')) {
      const from = Number(c.dataset.from || now);
      c.textContent = fmtDuration(Number(c.dataset.secs) + Math.floor((now - from) / 1000));
    }
  }

  const timeEl = (ms) => {
    if (!ms) return '—';
    const d = new Date(ms);
    return h('time', { datetime: d.toISOString(), 'data-ms': ms, title: d.toUTCString() }, d.toLocaleString());
  };

  // ---- The live monitor ----------------------------------------------------------------------

  const TRUNK_KIND = { registered: 'ok', reachable: 'ok', unknown: 'muted' };
  const STATE = { idle: ['ok', 'idle'], in_call: ['info', 'in call'], unavailable: ['muted', 'unavailable'] };

  function fillBody(table, rows, cols, empty) {
    const body = $('tbody', table);
    if (!body) return;
    body.replaceChildren(...(rows.length ? rows : [h('tr', { class: 'empty' }, h('td', { colspan: cols }, empty))]));
  }

  function setText(sel, text) {
    const e = $(sel);
    if (e) e.textContent = String(text);
  }

  function renderMonitor(d, canHangUp) {
    setText('#serving-node', d.node_id);
    setText('#serving-version', d.version);
    const c = d.cluster ?? {};
    const members = Array.isArray(c.members) ? c.members : [];
    fillBody($('#nodes-table'), members.map((m) => h('tr', {},
      h('td', {}, m.node_id),
      h('td', {}, m.node_id === c.leader ? badge('info', 'leader') : m.voter ? 'follower' : 'learner'),
      h('td', {}, m.healthy ? badge('ok', 'healthy') : badge('bad', 'unhealthy')),
      h('td', { class: 'num' }, m.lag ?? '—'),
      h('td', { class: 'mono' }, (d.versions ?? {})[m.node_id] ?? '—'),
      h('td', { class: 'mono' }, m.api_addr ?? ''),
    )), 6, 'No members.');
    setText('#vip-address', d.vip ? d.vip.address : 'not configured');
    setText('#vip-owner', d.vip && d.vip.owner !== null && d.vip.owner !== undefined ? `node ${d.vip.owner}` : '—');
    const e = d.extensions ?? {};
    setText('#ext-total', e.total ?? 0);
    setText('#ext-registered', e.registered ?? 0);
    setText('#ext-in-call', e.in_call ?? 0);
    const calls = Array.isArray(d.calls) ? d.calls : [];
    setText('#calls-count', calls.length);
    fillBody($('#calls-table'), calls.map((call) => h('tr', { 'data-call': call.id },
      h('td', {}, call.caller),
      h('td', {}, call.callee),
      h('td', { class: 'num' }, call.node_id),
      h('td', {}, timeEl(call.answered_at || call.started_at)),
      h('td', { class: 'num duration', 'data-secs': call.duration_secs ?? 0 }, fmtDuration(call.duration_secs ?? 0)),
      canHangUp
        ? h('td', { class: 'actions' }, h('button', {
          type: 'button', class: 'btn btn-small btn-danger hangup',
          'data-api': `DELETE /api/v1/calls/${encodeURIComponent(call.id)}`,
          'data-confirm': `Hang up the call ${call.caller} → ${call.callee}?`,
          'data-then': 'reload',
        }, 'Hang up'))
        : null,
    )), canHangUp ? 6 : 5, 'No calls in progress.');
    startDurations($('#calls-table') ?? document);
    const trunks = Array.isArray(d.trunks) ? d.trunks : [];
    fillBody($('#trunks-table'), trunks.map((t) => h('tr', {},
      h('td', {}, t.name),
      h('td', {}, badge(TRUNK_KIND[t.state] ?? 'bad', t.state)),
    )), 2, 'No trunks.');
    if (Array.isArray(d.states)) {
      fillBody($('#states-table'), d.states.map((s) => {
        const [kind, text] = STATE[s.state] ?? ['muted', s.state];
        return h('tr', {}, h('td', {}, s.extension), h('td', {}, s.display_name), h('td', {}, badge(kind, text)));
      }), 3, 'No extensions.');
    }
  }

  function startLive(root) {
    const status = $('#live-status');
    const canHangUp = root.dataset.hangup === 'true';
    const setStatus = (on) => {
      if (!status) return;
      status.className = `badge badge-${on ? 'ok' : 'muted'}`;
      status.textContent = on ? 'live' : 'reconnecting…';
    };
    const connect = () => {
      const es = new EventSource(root.dataset.live);
      es.addEventListener('monitor', (ev) => {
        let d;
        try {
          d = JSON.parse(ev.data);
        } catch {
          return;
        }
        renderMonitor(d, canHangUp);
        setStatus(true);
      });
      es.addEventListener('error', () => {
        setStatus(false);
        if (es.readyState === EventSource.CLOSED) {
          // The stream was refused (signed out, or the node went away): check, then try again.
          setTimeout(async () => {
            const r = await call('GET', '/api/v1/session');
            if (r.ok) connect();
          }, 5000);
        }
      });
    };
    connect();
  }

  // ---- The setup wizard's network check ------------------------------------------------------

  async function networkCheck(button) {
    button.disabled = true;
    const res = await call('GET', button.dataset.network);
    button.disabled = false;
    if (!res.ok) {
      flash(messageOf(res));
      return;
    }
    const d = res.data ?? {};
    const nodes = Array.isArray(d.nodes) ? d.nodes : [];
    fillBody($('#network-table'), nodes.map((n) => h('tr', {},
      h('td', {}, n.node_id),
      h('td', { class: 'mono' }, n.api_addr ?? ''),
      h('td', {}, n.healthy ? badge('ok', 'healthy') : badge('bad', 'unhealthy')),
    )), 3, 'No nodes.');
    const problems = Array.isArray(d.problems) ? d.problems : [];
    const list = $('#network-problems');
    if (list) {
      list.replaceChildren(...problems.map((p) => h('li', {}, p)));
      list.hidden = problems.length === 0;
    }
    const vip = d.vip;
    setText('#setup-vip', vip ? [vip.address, vip.owner !== undefined && vip.owner !== null ? `(owner: node ${vip.owner})` : ''].join(' ').trim() : 'not configured');
    flash(problems.length ? 'Network checked: see the problems listed.' : 'Network checked: all is well.', problems.length ? 'bad' : 'ok');
  }

  // ---- Wiring --------------------------------------------------------------------------------

  document.addEventListener('submit', (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement)) return;
    if ('login' in form.dataset) {
      ev.preventDefault();
      login(form);
    } else if (form.dataset.import) {
      ev.preventDefault();
      importCsv(form);
    } else if (form.dataset.upload) {
      ev.preventDefault();
      uploadAudio(form);
    } else if (form.dataset.putFile) {
      ev.preventDefault();
      putFile(form);
    } else if (form.dataset.api) {
      ev.preventDefault();
      submitApi(form);
    }
  });

  document.addEventListener('change', (ev) => {
    const el = ev.target;
    if (el instanceof HTMLSelectElement && 'autosubmit' in el.dataset) el.form?.requestSubmit();
  });

  document.addEventListener('click', (ev) => {
    const el = ev.target instanceof Element ? ev.target.closest('[data-api], [data-reload], [data-copy], [data-back], [data-network]') : null;
    if (!el || el instanceof HTMLFormElement) return;
    if (el.dataset.api) {
      ev.preventDefault();
      clickApi(el);
    } else if ('reload' in el.dataset) {
      location.reload();
    } else if (el.dataset.copy) {
      navigator.clipboard?.writeText($(el.dataset.copy)?.textContent ?? '');
      el.textContent = 'Copied';
    } else if ('back' in el.dataset && history.length > 1) {
      ev.preventDefault();
      history.back();
    } else if (el.dataset.network) {
      networkCheck(el);
    }
  });

  document.addEventListener('DOMContentLoaded', () => {
    localTimes();
    startDurations();
    setInterval(tick, 1000);
    const live = $('[data-live]');
    if (live && 'EventSource' in window) startLive(live);
  });
})();
