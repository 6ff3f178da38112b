import { useCallback, useEffect, useState } from 'react'
import { bffFetch, claimValue, getUser, login, logout, onSessionEnd, type Claim } from 'gatehouse-bff/client'

/** The path the "Call the API" button asks by default: the demo API's /hello behind gatehouse's /api. */
const DEFAULT_API_PATH = import.meta.env.VITE_API_PATH ?? '/api/hello'

type UserState =
  | { status: 'loading' }
  | { status: 'anonymous' }
  | { status: 'signed-in'; claims: Claim[] }
  | { status: 'error'; message: string }

interface ApiAnswer {
  status: number
  statusText: string
  body: string
}

export function App() {
  const [user, setUser] = useState<UserState>({ status: 'loading' })
  const [endedReason, setEndedReason] = useState<string | null>(null)

  useEffect(() => {
    let cancelled = false
    getUser().then(
      (claims) => !cancelled && setUser(claims ? { status: 'signed-in', claims } : { status: 'anonymous' }),
      (err: unknown) =>
        !cancelled && setUser({ status: 'error', message: err instanceof Error ? err.message : String(err) }),
    )
    return () => {
      cancelled = true
    }
  }, [])

  // While signed in, listen for the end of the session: a logout in another tab, a back-channel
  // logout from the IdP, `gatehouse sessions revoke`, expiry. onSessionEnd returns its own cleanup.
  const signedIn = user.status === 'signed-in'
  useEffect(() => {
    if (!signedIn) return
    return onSessionEnd((reason) => {
      setEndedReason(reason)
      setUser({ status: 'anonymous' })
    })
  }, [signedIn])

  return (
    <main>
      <header>
        <h1>gatehouse · React example</h1>
        <nav>
          {user.status === 'signed-in' ? (
            <button type="button" onClick={() => void logout('/')}>
              Log out
            </button>
          ) : (
            <button type="button" onClick={() => login()} disabled={user.status === 'loading'}>
              Log in
            </button>
          )}
        </nav>
      </header>

      {endedReason !== null && (
        <div className="banner" role="alert">
          {describeEnd(endedReason)}{' '}
          <button type="button" onClick={() => login()}>
            Log in again
          </button>
        </div>
      )}

      {user.status === 'loading' && <p>Checking your session…</p>}
      {user.status === 'error' && <p className="error">Could not ask gatehouse for the user: {user.message}</p>}
      {user.status === 'anonymous' && endedReason === null && <p>You are not logged in.</p>}
      {user.status === 'signed-in' && <Profile claims={user.claims} />}

      <ApiCaller />
    </main>
  )
}

/** Words for the reasons gatehouse sends with a session end ("ended" when it only saw the session gone). */
function describeEnd(reason: string): string {
  switch (reason) {
    case 'logout':
      return 'You logged out in another tab.'
    case 'backchannel':
      return 'You were signed out at the identity provider.'
    case 'revoked':
      return 'Your session was revoked.'
    case 'expired':
      return 'Your session expired.'
    case 'refresh_refused':
      return 'Your sign-in is no longer valid.'
    default:
      return `Your session has ended (${reason}).`
  }
}

function Profile({ claims }: { claims: Claim[] }) {
  const name = claimValue(claims, 'name') ?? claimValue(claims, 'preferred_username') ?? claimValue(claims, 'sub')
  return (
    <section>
      <p>
        Logged in as <strong>{String(name)}</strong>.
      </p>
      <h2>Your claims</h2>
      <p className="hint">
        From <code>GET /bff/user</code>. The browser holds no token — only an HttpOnly cookie it cannot read (
        <code>document.cookie</code> is <code>{JSON.stringify(document.cookie)}</code>).
      </p>
      <table id="claims">
        <thead>
          <tr>
            <th>type</th>
            <th>value</th>
          </tr>
        </thead>
        <tbody>
          {claims.map((claim, i) => (
            <tr key={`${claim.type}-${i}`}>
              <td>{claim.type}</td>
              <td>{typeof claim.value === 'string' ? claim.value : JSON.stringify(claim.value)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  )
}

function ApiCaller() {
  const [path, setPath] = useState(DEFAULT_API_PATH)
  const [busy, setBusy] = useState(false)
  const [answer, setAnswer] = useState<ApiAnswer | { error: string } | null>(null)

  const call = useCallback(async () => {
    setBusy(true)
    try {
      // bffFetch adds X-CSRF: 1 and sends the same-origin cookie; gatehouse swaps it for the access token.
      const res = await bffFetch(path)
      const text = await res.text()
      let body = text
      try {
        body = JSON.stringify(JSON.parse(text), null, 2)
      } catch {
        // not JSON: show it as it came
      }
      setAnswer({ status: res.status, statusText: res.statusText, body })
    } catch (err) {
      setAnswer({ error: err instanceof Error ? err.message : String(err) })
    } finally {
      setBusy(false)
    }
  }, [path])

  return (
    <section>
      <h2>Call a protected API through gatehouse</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault()
          void call()
        }}
      >
        <label>
          Path <input value={path} onChange={(e) => setPath(e.target.value)} size={30} />
        </label>{' '}
        <button type="submit" disabled={busy}>
          Call the API
        </button>
      </form>
      {answer !== null && (
        <pre id="api-result">
          {'error' in answer ? `failed: ${answer.error}` : `${answer.status} ${answer.statusText}\n${answer.body}`}
        </pre>
      )}
    </section>
  )
}
