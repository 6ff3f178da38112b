/** The demo SPA: one page and one module script using gatehouse/client. */
export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gatehouse demo</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #222 }
  button { padding: .5rem 1rem; margin-right: .5rem }
  table { border-collapse: collapse; margin: 1rem 0; width: 100% }
  td, th { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; font-family: ui-monospace, monospace; font-size: .9rem; word-break: break-all }
  pre { background: #f6f6f6; padding: 1rem; overflow-x: auto }
  .note { color: #666 }
</style>
</head>
<body>
<h1>gatehouse demo</h1>
<p class="note">This page holds no token. Its only credential is an HttpOnly session cookie it cannot read
(<code>document.cookie</code> here is <code id="doc-cookie"></code>); every call carries the <code>X-CSRF: 1</code> header.</p>
<p id="notice" hidden></p>
<p id="status">Checking the session…</p>
<p>
  <button id="login" hidden>Log in</button>
  <button id="call-api" hidden>Call the API</button>
  <button id="logout" hidden>Log out</button>
</p>
<section id="api" hidden>
  <h2>API answer</h2>
  <p class="note">The demo API runs on its own port. The browser called <code>/api/hello</code> on this origin;
  gatehouse forwarded it with the session's access token, and the API checked that token at the IdP.</p>
  <pre id="api-result"></pre>
</section>
<section id="claims-section" hidden>
  <h2>Your claims (from <code>/bff/user</code>)</h2>
  <table><thead><tr><th>type</th><th>value</th></tr></thead><tbody id="claims"></tbody></table>
</section>
<script type="module" src="/demo.js"></script>
</body>
</html>
`

export const DEMO_SCRIPT = `import { bffFetch, claimValue, getUser, login, logout, onSessionEnd } from '/gatehouse-client.js'

const $ = (id) => document.getElementById(id)
$('doc-cookie').textContent = JSON.stringify(document.cookie)

// Back from logout (gatehouse → IdP end-session → /signout-callback-oidc → here): say so, once.
if (new URLSearchParams(location.search).has('logged-out')) {
  $('notice').textContent = 'You have been logged out.'
  $('notice').hidden = false
  history.replaceState(null, '', '/')
}

async function render() {
  const user = await getUser()
  $('login').hidden = !!user
  $('logout').hidden = !user
  $('call-api').hidden = !user
  $('claims-section').hidden = !user
  if (user) $('notice').hidden = true
  if (!user) {
    $('status').textContent = 'You are not logged in.'
    return
  }
  $('status').textContent = 'Logged in as ' + (claimValue(user, 'name') ?? claimValue(user, 'sub')) + '.'
  // Told at once when this session ends elsewhere (another tab, the IdP, an administrator).
  onSessionEnd((reason) => {
    render().then(() => { $('status').textContent = 'Your session ended (' + reason + '). You are not logged in.' })
  })
  const rows = $('claims')
  rows.replaceChildren()
  for (const claim of user) {
    const tr = document.createElement('tr')
    for (const text of [claim.type, String(claim.value)]) {
      const td = document.createElement('td')
      td.textContent = text
      tr.append(td)
    }
    rows.append(tr)
  }
}

$('login').addEventListener('click', () => login('/'))
$('logout').addEventListener('click', () => logout('/?logged-out'))
$('call-api').addEventListener('click', async () => {
  const res = await bffFetch('/api/hello')
  $('api').hidden = false
  $('api-result').textContent = res.status + ' ' + res.statusText + '\\n' + JSON.stringify(await res.json(), null, 2)
})

render().catch((err) => { $('status').textContent = 'Error: ' + err.message })
`
