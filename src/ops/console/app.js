// @ts-check
// The admin console (served by src/ops/admin.ts). Plain browser module, no build step: the CSP allows
// no inline script or style, so everything is built with createElement/textContent and classes. Subs,
// sids, frontends and causes come from outside (the IdP, the SPA): they only ever reach the DOM as text.

/**
 * @typedef {object} SessionRow
 * @property {string} idHash
 * @property {string} sub
 * @property {string | null} sid
 * @property {string} partition
 * @property {number} createdAt
 * @property {number | null} [renewedAt]
 * @property {number} expiresAt
 */

/**
 * @typedef {object} Health
 * @property {string} version
 * @property {number} uptimeSec
 * @property {number} startedAt
 * @property {string | null} instance
 * @property {{ issuer: string, discovery: string, jwks: string, lastRefreshAt: number | null }} idp
 * @property {{ kind: string, reachable: boolean, sessions: number | null }} store
 * @property {{ api: string, requests: number, errors: number, p95Ms: number | null }[]} apis
 * @property {{ at: number, kind: string, cause: string, frontend: string, count: number }[]} failures
 */

/** @typedef {{ type?: string, title?: string, status?: number, code?: string, detail?: string }} Problem */

const TOKEN_KEY = 'gatehouse-admin-token'
const PAGE_SIZE = 25
const REFRESH_MS = 5000
/**
 * The list of every user's sessions is read again this often only (a user's list at every refresh):
 * without a filter, a SQL store sorts all its live sessions for it.
 */
const ALL_SESSIONS_REFRESH_MS = 30000
/** The admin API's maximum; the page sorts and pages what it gets. */
const LIST_LIMIT = 1000
const EMPTY = '—'

/** A non-2xx answer of the admin API, with its problem+json body when there was one. */
class ApiError extends Error {
  /**
   * @param {number} status
   * @param {Problem} problem
   */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`)
    this.status = status
    this.code = problem.code
  }
}

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new (): T, prototype: T }} type
 * @returns {T}
 */
function byId(id, type) {
  const el = document.getElementById(id)
  if (!(el instanceof type)) throw new Error(`the console page has no #${id}`)
  return el
}

const ui = {
  error: byId('error', HTMLElement),
  message: byId('message', HTMLElement),
  signOut: byId('sign-out', HTMLButtonElement),
  noToken: byId('no-token', HTMLElement),
  signIn: byId('sign-in', HTMLElement),
  signInForm: byId('sign-in-form', HTMLFormElement),
  token: byId('token', HTMLInputElement),
  signInButton: byId('sign-in-button', HTMLButtonElement),
  console: byId('console', HTMLElement),
  healthUpdated: byId('health-updated', HTMLElement),
  idpIssuer: byId('idp-issuer', HTMLElement),
  idpDiscovery: byId('idp-discovery', HTMLElement),
  idpJwks: byId('idp-jwks', HTMLElement),
  idpLastRefresh: byId('idp-last-refresh', HTMLElement),
  storeKind: byId('store-kind', HTMLElement),
  storeReachable: byId('store-reachable', HTMLElement),
  storeSessions: byId('store-sessions', HTMLElement),
  buildVersion: byId('build-version', HTMLElement),
  buildUptime: byId('build-uptime', HTMLElement),
  buildStarted: byId('build-started', HTMLElement),
  buildInstance: byId('build-instance', HTMLElement),
  sessionsSummary: byId('sessions-summary', HTMLElement),
  searchForm: byId('search-form', HTMLFormElement),
  sub: byId('sub', HTMLInputElement),
  clearSearch: byId('clear-search', HTMLButtonElement),
  revokeAll: byId('revoke-all', HTMLElement),
  revokeAllButton: byId('revoke-all-button', HTMLButtonElement),
  revokeAllConfirm: byId('revoke-all-confirm', HTMLButtonElement),
  revokeAllCancel: byId('revoke-all-cancel', HTMLButtonElement),
  sessionsBody: byId('sessions-body', HTMLTableSectionElement),
  prevPage: byId('prev-page', HTMLButtonElement),
  nextPage: byId('next-page', HTMLButtonElement),
  pageInfo: byId('page-info', HTMLElement),
  apisBody: byId('apis-body', HTMLTableSectionElement),
  failuresBody: byId('failures-body', HTMLTableSectionElement),
}

const state = {
  /** @type {string | null} */
  token: null,
  /** The sub searched for; null lists every user's sessions. */
  /** @type {string | null} */
  filter: null,
  page: 0,
  /** Newest first. */
  /** @type {SessionRow[]} */
  sessions: [],
  /** @type {string | null} */
  sessionsProblem: null,
  /** What the sessions table shows, to leave it (and the focus in it) alone when a refresh changed nothing. */
  renderedKey: '',
  /** Bumped by every sessions request: an answer that is not the latest one is dropped. */
  listSeq: 0,
  /** Bumped at sign-in and sign-out: a refresh loop of an older sign-in stops. */
  generation: 0,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer: undefined,
  ticking: false,
  /** When the sessions were last asked for (ms since the epoch). */
  sessionsLoadedAt: 0,
  /** @type {AbortController} */
  controller: new AbortController(),
  confirming: false,
}

// ---- HTTP ----------------------------------------------------------------------------------------

/**
 * A JSON call of the admin API with the bearer token.
 * @param {'GET' | 'DELETE'} method
 * @param {string} path
 * @returns {Promise<unknown>}
 */
async function api(method, path) {
  const token = state.token
  if (token === null) throw new DOMException('signed out', 'AbortError')
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
    signal: state.controller.signal,
  })
  const body = await readJson(res)
  if (!res.ok) throw new ApiError(res.status, isObject(body) ? /** @type {Problem} */ (body) : {})
  return body
}

/**
 * @param {Response} res
 * @returns {Promise<unknown>}
 */
async function readJson(res) {
  const type = res.headers.get('content-type') ?? ''
  if (!/^application\/(?:problem\+)?json\b/i.test(type)) return undefined
  try {
    return await res.json()
  } catch {
    return undefined
  }
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** @param {unknown} err */
function isAbort(err) {
  return err instanceof DOMException && err.name === 'AbortError'
}

/** @param {unknown} err */
function isUnauthorized(err) {
  return err instanceof ApiError && err.status === 401
}

/** @param {unknown} err */
function isTokenOff(err) {
  return err instanceof ApiError && err.status === 403 && err.code === 'forbidden'
}

/** @param {unknown} err */
function describe(err) {
  if (err instanceof ApiError) return err.message
  if (err instanceof TypeError) return 'cannot reach gatehouse'
  return err instanceof Error ? err.message : String(err)
}

// ---- token storage (sessionStorage only) ----------------------------------------------------------

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY)
  } catch {
    return null
  }
}

/** @param {string} token */
function saveToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token)
  } catch {
    // Storage off (privacy mode): the token then lives in this page only.
  }
}

function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY)
  } catch {
    // nothing stored
  }
}

// ---- views -----------------------------------------------------------------------------------------

/** @param {'no-token' | 'sign-in' | 'console' | 'none'} view */
function show(view) {
  ui.noToken.hidden = view !== 'no-token'
  ui.signIn.hidden = view !== 'sign-in'
  ui.console.hidden = view !== 'console'
  ui.signOut.hidden = view !== 'console'
}

/** @param {string} text */
function showError(text) {
  ui.error.textContent = text
}

function clearError() {
  if (ui.error.textContent !== '') ui.error.textContent = ''
}

/** @param {string} text */
function say(text) {
  ui.message.textContent = text
}

function clearData() {
  state.sessions = []
  state.sessionsProblem = null
  state.renderedKey = ''
  state.page = 0
  state.filter = null
  state.confirming = false
  ui.sub.value = ''
  ui.sessionsBody.replaceChildren()
  ui.apisBody.replaceChildren()
  ui.failuresBody.replaceChildren()
  ui.sessionsSummary.textContent = ''
  ui.pageInfo.textContent = ''
  ui.healthUpdated.textContent = ''
  for (const dd of [
    ui.idpIssuer,
    ui.idpDiscovery,
    ui.idpJwks,
    ui.idpLastRefresh,
    ui.storeKind,
    ui.storeReachable,
    ui.storeSessions,
    ui.buildVersion,
    ui.buildUptime,
    ui.buildStarted,
    ui.buildInstance,
  ]) {
    dd.replaceChildren()
  }
}

function showNoToken() {
  stopSession()
  forgetToken()
  clearData()
  clearError()
  say('')
  show('no-token')
}

/** Ends the signed-in state: no token, no refresh loop, no request in flight. */
function stopSession() {
  state.token = null
  state.generation++
  clearTimeout(state.timer)
  state.timer = undefined
  state.controller.abort()
  state.controller = new AbortController()
}

/** @param {string} error */
function signedOut(error) {
  stopSession()
  forgetToken()
  clearData()
  show('sign-in')
  if (error) showError(error)
  else clearError()
}

/** A 401 on any call after sign-in: the token was changed on the server. */
function tokenRejected() {
  signedOut('The admin token is no longer accepted. Sign in again.')
  say('')
  ui.token.focus()
}

// ---- sign in / out -----------------------------------------------------------------------------------

/**
 * @param {string} token
 * @param {boolean} typed the operator typed it (rather than it being restored from sessionStorage)
 */
async function signIn(token, typed) {
  if (/[^\x20-\x7e\x80-\xff]/.test(token)) {
    signedOut('The admin token contains characters that cannot be sent in an HTTP header.')
    return
  }
  stopSession()
  state.token = token
  const generation = state.generation
  ui.signInButton.disabled = true
  say('Signing in…')
  /** @type {unknown} */
  let health
  try {
    // The health call needs the token like every admin call: it is what checks it.
    health = await api('GET', '/admin/health')
  } catch (err) {
    if (generation !== state.generation || isAbort(err)) return
    if (isUnauthorized(err)) {
      signedOut(
        typed
          ? 'Sign-in failed: the admin token was not accepted.'
          : 'The saved admin token is no longer accepted. Sign in again.',
      )
      say('')
      ui.token.select()
      ui.token.focus()
      return
    }
    if (isTokenOff(err)) return showNoToken()
    // Any other failure says nothing about the token: go on, the refresh loop retries.
    showError(`Could not load the health status: ${describe(err)}`)
  } finally {
    ui.signInButton.disabled = false
  }
  if (generation !== state.generation) return
  saveToken(token)
  ui.token.value = ''
  if (health !== undefined) {
    clearError()
    renderHealth(health)
  }
  show('console')
  say('Signed in.')
  if (typed) ui.sub.focus()
  await loadSessions()
  schedule(generation)
}

function signOut() {
  signedOut('')
  say('Signed out.')
  ui.token.focus()
}

// ---- refresh loop --------------------------------------------------------------------------------------

/** @param {number} generation */
function schedule(generation) {
  clearTimeout(state.timer)
  state.timer = undefined
  if (generation !== state.generation || state.token === null || document.visibilityState !== 'visible') return
  state.timer = setTimeout(() => void tick(generation), REFRESH_MS)
}

/** @param {number} generation */
async function tick(generation) {
  state.timer = undefined
  if (state.ticking || generation !== state.generation) return
  state.ticking = true
  try {
    const sessionsDue = state.filter !== null || Date.now() - state.sessionsLoadedAt >= ALL_SESSIONS_REFRESH_MS
    await Promise.all([loadHealth(), sessionsDue ? loadSessions() : undefined])
  } finally {
    state.ticking = false
  }
  schedule(generation)
}

function onVisibilityChange() {
  if (state.token === null) return
  if (document.visibilityState === 'visible') void tick(state.generation)
  else {
    clearTimeout(state.timer)
    state.timer = undefined
  }
}

// ---- health ---------------------------------------------------------------------------------------------

async function loadHealth() {
  const generation = state.generation
  try {
    const health = await api('GET', '/admin/health')
    if (generation !== state.generation) return
    clearError()
    renderHealth(health)
  } catch (err) {
    if (generation !== state.generation || isAbort(err)) return
    if (isUnauthorized(err)) return tokenRejected()
    if (isTokenOff(err)) return showNoToken()
    showError(`Could not load the health status (${time(Date.now())}): ${describe(err)}`)
  }
}

/** @param {unknown} body */
function renderHealth(body) {
  if (!isObject(body)) return
  const h = /** @type {Health} */ (body)
  const idp = isObject(h.idp) ? h.idp : undefined
  const store = isObject(h.store) ? h.store : undefined

  setText(ui.idpIssuer, idp ? text(idp.issuer) : EMPTY)
  setBadge(ui.idpDiscovery, idp?.discovery)
  setBadge(ui.idpJwks, idp?.jwks)
  setText(ui.idpLastRefresh, idp && typeof idp.lastRefreshAt === 'number' ? whenAgo(idp.lastRefreshAt) : 'never')

  setText(ui.storeKind, store ? text(store.kind) : EMPTY)
  if (store && typeof store.reachable === 'boolean') setBadge(ui.storeReachable, store.reachable ? 'yes' : 'no')
  else setBadge(ui.storeReachable, undefined)
  setText(ui.storeSessions, store && typeof store.sessions === 'number' ? count(store.sessions) : EMPTY)

  setText(ui.buildVersion, text(h.version))
  setText(ui.buildUptime, typeof h.uptimeSec === 'number' ? duration(h.uptimeSec) : EMPTY)
  setText(ui.buildStarted, typeof h.startedAt === 'number' ? dateTime(h.startedAt) : EMPTY)
  setText(ui.buildInstance, text(h.instance))

  const apis = Array.isArray(h.apis) ? h.apis.filter(isObject) : []
  ui.apisBody.replaceChildren(
    ...(apis.length === 0
      ? [emptyRow(4, 'No remote APIs are configured.')]
      : apis.map((a) =>
          row([
            cell('th', text(a.api), 'mono', 'row'),
            cell('td', count(a.requests), 'num'),
            cell('td', count(a.errors), a.errors > 0 ? 'num bad' : 'num'),
            cell('td', typeof a.p95Ms === 'number' ? `${a.p95Ms.toFixed(1)} ms` : EMPTY, 'num'),
          ]),
        )),
  )

  const failures = Array.isArray(h.failures) ? h.failures.filter(isObject).slice(0, 50) : []
  ui.failuresBody.replaceChildren(
    ...(failures.length === 0
      ? [emptyRow(5, 'No login or refresh failures.')]
      : failures.map((f) =>
          row([
            timeCell(f.at),
            cell('td', text(f.kind)),
            cell('td', text(f.cause), 'mono'),
            cell('td', text(f.frontend)),
            cell('td', text(typeof f.count === 'number' ? String(f.count) : '1'), 'num'),
          ]),
        )),
  )
  setText(ui.healthUpdated, `Updated ${time(Date.now())}`)
}

/**
 * A status word shown as text (the colour only repeats it).
 * @param {HTMLElement} el
 * @param {unknown} value
 */
function setBadge(el, value) {
  const word = typeof value === 'string' && value !== '' ? value : 'unknown'
  const tone = word === 'ok' || word === 'yes' ? 'good' : word === 'failing' || word === 'no' ? 'bad' : 'neutral'
  let badge = el.firstElementChild
  if (!(badge instanceof HTMLSpanElement)) {
    badge = document.createElement('span')
    el.replaceChildren(badge)
  }
  badge.className = `badge ${tone}`
  if (badge.textContent !== word) badge.textContent = word
}

// ---- sessions -----------------------------------------------------------------------------------------

async function loadSessions() {
  state.sessionsLoadedAt = Date.now()
  const seq = ++state.listSeq
  const generation = state.generation
  const query = new URLSearchParams({ limit: String(LIST_LIMIT) })
  if (state.filter !== null) query.set('sub', state.filter)
  try {
    const body = await api('GET', `/admin/sessions?${query}`)
    if (seq !== state.listSeq || generation !== state.generation) return
    const list = isObject(body) && Array.isArray(body.sessions) ? body.sessions.filter(isObject) : []
    state.sessions = /** @type {SessionRow[]} */ (list).sort(
      (a, b) => b.createdAt - a.createdAt || (a.idHash < b.idHash ? -1 : a.idHash > b.idHash ? 1 : 0),
    )
    state.sessionsProblem = null
  } catch (err) {
    if (seq !== state.listSeq || generation !== state.generation || isAbort(err)) return
    if (isUnauthorized(err)) return tokenRejected()
    if (isTokenOff(err)) return showNoToken()
    if (!(err instanceof ApiError)) {
      // Network trouble: keep what is shown and say so; the next refresh tries again.
      showError(`Could not load the sessions (${time(Date.now())}): ${describe(err)}`)
      return
    }
    state.sessions = []
    state.sessionsProblem = describe(err)
  }
  renderSessions()
}

function renderSessions() {
  const total = state.sessions.length
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE))
  state.page = Math.min(Math.max(0, state.page), pages - 1)
  const shown = state.sessions.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE)

  const key = JSON.stringify([
    state.filter,
    state.page,
    state.sessionsProblem,
    shown.map((s) => [s.idHash, s.sub, s.sid, s.partition, s.createdAt, s.renewedAt, s.expiresAt]),
  ])
  if (key !== state.renderedKey) {
    state.renderedKey = key
    const focused = focusedRevoke()
    ui.sessionsBody.replaceChildren(
      ...(shown.length === 0
        ? [emptyRow(7, state.sessionsProblem ?? noSessionsText())]
        : shown.map((s, i) => sessionRow(s, i))),
    )
    if (focused !== undefined)
      revokeButtons()
        .find((b) => b.dataset.idHash === focused)
        ?.focus()
  }

  setText(ui.sessionsSummary, summaryText(total))
  setText(ui.pageInfo, `Page ${state.page + 1} of ${pages}`)
  ui.prevPage.disabled = state.page === 0
  ui.nextPage.disabled = state.page >= pages - 1

  ui.clearSearch.hidden = state.filter === null
  ui.revokeAll.hidden = state.filter === null
  if (state.filter !== null && total === 0 && state.confirming) state.confirming = false
  ui.revokeAllButton.hidden = state.confirming
  ui.revokeAllButton.disabled = total === 0
  ui.revokeAllConfirm.hidden = !state.confirming
  ui.revokeAllCancel.hidden = !state.confirming
  if (state.confirming && state.filter !== null)
    setText(ui.revokeAllConfirm, `Confirm: revoke ${plural(total, 'session')} of ${state.filter}`)
}

function noSessionsText() {
  return state.filter === null ? 'No live sessions.' : `No live sessions of ${state.filter}.`
}

/** @param {number} total */
function summaryText(total) {
  if (state.sessionsProblem !== null) return ''
  const of = state.filter === null ? '' : ` of ${state.filter}`
  const capped =
    total >= LIST_LIMIT ? ` (the list stops at ${count(LIST_LIMIT)}: search by user (sub) to see others)` : ''
  return `${plural(total, 'live session')}${of}${capped}`
}

/**
 * @param {SessionRow} s
 * @param {number} index
 */
function sessionRow(s, index) {
  const descriptionId = `session-${index}-description`
  const description = document.createElement('span')
  description.id = descriptionId
  description.hidden = true
  description.textContent = `Session of ${text(s.sub)}, created ${dateTime(s.createdAt)}`

  // The accessible name stays exactly "Revoke"; which session it ends is its description.
  const button = document.createElement('button')
  button.type = 'button'
  button.className = 'danger small'
  button.textContent = 'Revoke'
  button.dataset.idHash = String(s.idHash)
  button.setAttribute('aria-describedby', descriptionId)

  const actions = cell('td', '')
  actions.append(button, description)

  const sid = cell('td', s.sid === null || s.sid === undefined || s.sid === '' ? EMPTY : text(s.sid), 'mono')
  return row([
    cell('th', text(s.sub), 'mono', 'row'),
    sid,
    cell('td', text(s.partition)),
    timeCell(s.createdAt),
    typeof s.renewedAt === 'number' ? timeCell(s.renewedAt) : cell('td', EMPTY),
    timeCell(s.expiresAt),
    actions,
  ])
}

/** @returns {HTMLButtonElement[]} */
function revokeButtons() {
  return Array.from(ui.sessionsBody.querySelectorAll('button')).filter((b) => b.dataset.idHash !== undefined)
}

/** The idHash of the Revoke button that has the focus, to give it back after the table is rebuilt. */
function focusedRevoke() {
  const active = document.activeElement
  return active instanceof HTMLButtonElement && ui.sessionsBody.contains(active) ? active.dataset.idHash : undefined
}

/** @param {HTMLButtonElement} button */
async function revokeOne(button) {
  const idHash = button.dataset.idHash
  if (idHash === undefined || state.token === null) return
  const position = revokeButtons().indexOf(button)
  const generation = state.generation
  button.disabled = true
  try {
    await api('DELETE', `/admin/sessions/${encodeURIComponent(idHash)}`)
    say('Session revoked.')
  } catch (err) {
    if (generation !== state.generation || isAbort(err)) return
    if (isUnauthorized(err)) return tokenRejected()
    if (isTokenOff(err)) return showNoToken()
    if (err instanceof ApiError && err.status === 404) say('That session had already ended.')
    else {
      button.disabled = false
      showError(`Could not revoke the session: ${describe(err)}`)
      return
    }
  }
  await loadSessions()
  if (generation !== state.generation) return
  // The row is gone: put the focus on the row that took its place, so keyboard users keep their spot.
  const buttons = revokeButtons()
  const next = buttons[Math.min(position, buttons.length - 1)]
  if (next) next.focus()
  else ui.sub.focus()
  void loadHealth()
}

async function revokeAllConfirmed() {
  const sub = state.filter
  if (sub === null || state.token === null) return
  const generation = state.generation
  ui.revokeAllConfirm.disabled = true
  try {
    const body = await api('DELETE', `/admin/sessions?${new URLSearchParams({ sub })}`)
    const revoked = isObject(body) && typeof body.revoked === 'number' ? body.revoked : 0
    say(`${plural(revoked, 'session')} revoked`)
  } catch (err) {
    if (generation !== state.generation || isAbort(err)) return
    if (isUnauthorized(err)) return tokenRejected()
    if (isTokenOff(err)) return showNoToken()
    showError(`Could not revoke the sessions of ${sub}: ${describe(err)}`)
  } finally {
    ui.revokeAllConfirm.disabled = false
  }
  state.confirming = false
  await loadSessions()
  if (generation !== state.generation) return
  ui.sub.focus()
  void loadHealth()
}

/** @param {string | null} filter */
function search(filter) {
  state.filter = filter
  state.page = 0
  state.confirming = false
  state.sessions = []
  state.sessionsProblem = null
  renderSessions()
  void loadSessions()
}

// ---- DOM helpers -----------------------------------------------------------------------------------

/**
 * @param {'td' | 'th'} tag
 * @param {string} content
 * @param {string} [className]
 * @param {'row'} [scope]
 */
function cell(tag, content, className, scope) {
  const el = document.createElement(tag)
  el.textContent = content
  if (className) el.className = className
  if (scope) el.scope = scope
  return el
}

/** @param {unknown} ms */
function timeCell(ms) {
  const td = document.createElement('td')
  if (typeof ms !== 'number' || !Number.isFinite(ms)) {
    td.textContent = EMPTY
    return td
  }
  const el = document.createElement('time')
  el.dateTime = new Date(ms).toISOString()
  el.textContent = dateTime(ms)
  td.append(el)
  return td
}

/** @param {HTMLTableCellElement[]} cells */
function row(cells) {
  const tr = document.createElement('tr')
  tr.append(...cells)
  return tr
}

/**
 * @param {number} columns
 * @param {string} content
 */
function emptyRow(columns, content) {
  const td = cell('td', content, 'empty')
  td.colSpan = columns
  return row([td])
}

/**
 * Writes only on change, so that status regions are not re-announced by every refresh.
 * @param {HTMLElement} el
 * @param {string} value
 */
function setText(el, value) {
  if (el.textContent !== value) el.textContent = value
}

/** @param {unknown} value */
function text(value) {
  return value === null || value === undefined || value === '' ? EMPTY : String(value)
}

/** @param {unknown} n */
function count(n) {
  return typeof n === 'number' ? n.toLocaleString() : EMPTY
}

/**
 * @param {number} n
 * @param {string} noun
 */
function plural(n, noun) {
  return `${n.toLocaleString()} ${noun}${n === 1 ? '' : 's'}`
}

/** @param {number} ms */
function dateTime(ms) {
  return new Date(ms).toLocaleString()
}

/** @param {number} ms */
function time(ms) {
  return new Date(ms).toLocaleTimeString()
}

/** @param {number} ms */
function whenAgo(ms) {
  return `${dateTime(ms)} (${relative(ms)})`
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })

/** @param {number} ms */
function relative(ms) {
  const seconds = Math.round((ms - Date.now()) / 1000)
  const abs = Math.abs(seconds)
  if (abs < 60) return relativeFormat.format(seconds, 'second')
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), 'minute')
  if (abs < 86400) return relativeFormat.format(Math.round(seconds / 3600), 'hour')
  return relativeFormat.format(Math.round(seconds / 86400), 'day')
}

/** @param {number} totalSeconds */
function duration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds))
  const days = Math.floor(s / 86400)
  const hours = Math.floor((s % 86400) / 3600)
  const minutes = Math.floor((s % 3600) / 60)
  const seconds = s % 60
  if (days > 0) return `${days} d ${hours} h`
  if (hours > 0) return `${hours} h ${minutes} min`
  if (minutes > 0) return `${minutes} min ${seconds} s`
  return `${seconds} s`
}

// ---- start -----------------------------------------------------------------------------------------

ui.signInForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const token = ui.token.value
  if (token === '') {
    showError('Enter the admin token.')
    ui.token.focus()
    return
  }
  void signIn(token, true)
})

ui.signOut.addEventListener('click', signOut)

ui.searchForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const sub = ui.sub.value.trim()
  search(sub === '' ? null : sub)
})

ui.clearSearch.addEventListener('click', () => {
  ui.sub.value = ''
  search(null)
  ui.sub.focus()
})

ui.prevPage.addEventListener('click', () => {
  state.page--
  renderSessions()
  if (ui.prevPage.disabled) ui.nextPage.focus()
})

ui.nextPage.addEventListener('click', () => {
  state.page++
  renderSessions()
  if (ui.nextPage.disabled) ui.prevPage.focus()
})

ui.sessionsBody.addEventListener('click', (event) => {
  const target = event.target
  if (!(target instanceof Element)) return
  const button = target.closest('button')
  if (button && button.dataset.idHash !== undefined && !button.disabled) void revokeOne(button)
})

ui.revokeAllButton.addEventListener('click', () => {
  if (state.filter === null) return
  state.confirming = true
  renderSessions()
  ui.revokeAllConfirm.focus()
})

ui.revokeAllCancel.addEventListener('click', () => {
  state.confirming = false
  renderSessions()
  ui.revokeAllButton.focus()
})

ui.revokeAllConfirm.addEventListener('click', () => void revokeAllConfirmed())

document.addEventListener('visibilitychange', onVisibilityChange)

async function start() {
  show('none')
  /** @type {unknown} */
  let info
  try {
    const res = await fetch('/admin/console', {
      headers: { accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    })
    info = await readJson(res)
    if (!res.ok) throw new ApiError(res.status, isObject(info) ? /** @type {Problem} */ (info) : {})
  } catch (err) {
    say('')
    showError(`The admin console cannot start: ${describe(err)}. Reload the page to try again.`)
    return
  }
  if (isObject(info) && info.tokenConfigured === false) return showNoToken()
  const saved = readToken()
  if (saved) return signIn(saved, false)
  say('')
  show('sign-in')
}

void start()
